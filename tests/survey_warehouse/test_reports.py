"""Gate reports: what a failed expectation says (column, count, examples with the file's rows), kept as JSON."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd

from survey_warehouse.quality import Failure, GateReport

UNKNOWN_CITY = Failure(
    suite="raw_wave",
    expectation="expect_column_values_to_be_in_set",
    column="city",
    unexpected_count=2,
    examples=["Jyva\u0308skyla\u0308", "Lahtis"],
    rows=[12, 40],
)
TOO_FEW = Failure("raw_load", "expect_table_row_count_to_be_between", None, None, [31], [])
SHARE = Failure("raw_load", "expect_column_values_to_be_between", "quarantined_share", 1, [0.051], [pd.NA])


def test_a_failure_names_column_count_and_rows() -> None:
    assert UNKNOWN_CITY.describe() == (
        "raw_wave: expect_column_values_to_be_in_set on column 'city': 2 unexpected value(s), "
        "e.g. 'Jyva\\u0308skyla\\u0308' (row 12), 'Lahtis' (row 40)"  # combining marks shown, not hidden
    )
    assert TOO_FEW.describe() == "raw_load: expect_table_row_count_to_be_between, e.g. 31"
    # a value of the load as a whole has no file row
    assert SHARE.describe().endswith("on column 'quarantined_share': 1 unexpected value(s), e.g. 0.051")
    assert dataclasses.replace(SHARE, rows=["<NA>"]).describe() == SHARE.describe()  # as read back from JSON


def test_the_message_counts_failed_expectations() -> None:
    failed = GateReport("raw_wave", "2019-load", success=False, evaluated=40, failures=[UNKNOWN_CITY, TOO_FEW])
    lines = failed.message().splitlines()
    assert lines[0] == "raw_wave gate on 2019-load: FAILED (2 of 40 expectations)"
    assert lines[1:] == [f"  - {UNKNOWN_CITY.describe()}", f"  - {TOO_FEW.describe()}"]
    assert GateReport("marts", "run-1", True, 25, []).message() == "marts gate on run-1: passed (25 expectations)"


def test_a_report_reads_back_as_written(tmp_path: Path) -> None:
    report = GateReport("raw_wave", "2019-load", False, 40, [UNKNOWN_CITY, TOO_FEW])
    path = tmp_path / "reports" / "raw_wave" / "2019-load.json"
    report.write(path)
    assert GateReport.read(path) == report
    stored = json.loads(path.read_text(encoding="utf-8"))
    assert stored["message"] == report.message()
    assert "Jyva\u0308skyla\u0308" in path.read_text(encoding="utf-8")  # kept as text, not as \u escapes
