"""The warehouse's own errors: one family, so callers can tell a bad delivery or setting from a bug."""

from __future__ import annotations

from pathlib import Path


class SurveyWarehouseError(Exception):
    """Base of every error the warehouse raises on purpose. The message says what is wrong and what to do."""


class WaveSpecError(SurveyWarehouseError):
    """A wave spec (config/waves/YYYY.yml) is missing, inconsistent, or names something the codebook lacks."""


class CodebookError(SurveyWarehouseError):
    """The codebook seeds contradict themselves (e.g. one label mapped to two codes)."""


class WaveFileError(SurveyWarehouseError):
    """A delivered wave file cannot be loaded at all. The message names the file, the row and the column (and e.g. a
    byte's offset); it never quotes the file's text, which is respondents' names, addresses and answers."""

    def __init__(self, file: Path, message: str, row: int | None = None, column: str | None = None):
        self.file, self.row, self.column, self.reason = Path(file), row, column, message
        where = f"{file}" + (f", row {row}" if row is not None else "") + (f", column {column}" if column else "")
        super().__init__(f"{where}: {message}")


class SuiteError(SurveyWarehouseError):
    """An expectation suite in expectations/ refers to a parameter or a template that does not exist."""


class QualityGateFailed(SurveyWarehouseError):
    """A quality gate failed: the message lists each failed expectation, its column and examples with rows."""


class WarehouseBusy(SurveyWarehouseError):
    """Another process is writing the DuckDB warehouse (DuckDB allows one writer at a time)."""


class NothingToPublish(SurveyWarehouseError):
    """A step found no state to work on (e.g. an unknown load id or no publication yet)."""
