"""Wave specs: how each year's survey export is read (format, encoding, header row, column -> field mapping)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from survey_warehouse.settings import Paths

# Fields every wave must map: without them a respondent cannot be placed in a city or counted.
REQUIRED_FIELDS = ("respondent_email", "city", "respondent_role", "lead")
KNOWN_FIELDS = (
    "respondent_name", "respondent_email", "city", "respondent_role", "submitted_at", "response_minutes",
    "lead", "cooperation", "it_involvement_stage", "business_digital_skills",
)


class WaveSpecError(ValueError):
    """A wave spec (config/waves/YYYY.yml) is missing or inconsistent."""


@dataclass(frozen=True)
class WaveSpec:
    wave_year: int
    file: Path
    format: str
    columns: dict[str, str]
    cities_surveyed: tuple[str, ...]
    questionnaire_version: str
    field_period_start: dt.date
    field_period_end: dt.date
    encoding: str = "utf-8"
    delimiter: str = ","
    sheet: str | None = None
    header_row: int = 1
    spec_path: Path | None = field(default=None, compare=False)

    @classmethod
    def from_file(cls, path: Path, root: Path) -> WaveSpec:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        missing = [k for k in ("wave_year", "file", "format", "columns", "cities_surveyed", "field_period",
                               "questionnaire_version") if k not in raw]
        if missing:
            raise WaveSpecError(f"{path}: missing keys {missing}")
        columns = {str(k): str(v) for k, v in raw["columns"].items()}
        unknown = sorted(set(columns.values()) - set(KNOWN_FIELDS))
        if unknown:
            raise WaveSpecError(f"{path}: unknown field ids {unknown}; known fields are {list(KNOWN_FIELDS)}")
        absent = [f for f in REQUIRED_FIELDS if f not in columns.values()]
        if absent:
            raise WaveSpecError(f"{path}: required fields not mapped to any column: {absent}")
        if raw["format"] not in ("csv", "xlsx"):
            raise WaveSpecError(f"{path}: format must be csv or xlsx, not {raw['format']!r}")
        file = Path(raw["file"])
        return cls(
            wave_year=int(raw["wave_year"]),
            file=file if file.is_absolute() else root / file,
            format=raw["format"],
            columns=columns,
            cities_surveyed=tuple(str(c).zfill(3) for c in raw["cities_surveyed"]),
            questionnaire_version=str(raw["questionnaire_version"]),
            field_period_start=raw["field_period"]["start"],
            field_period_end=raw["field_period"]["end"],
            encoding=raw.get("encoding", "utf-8"),
            delimiter=raw.get("delimiter", ","),
            sheet=raw.get("sheet"),
            header_row=int(raw.get("header_row", 1)),
            spec_path=path,
        )


def find_wave_spec(wave_year: int, paths: Paths) -> WaveSpec | None:
    """The spec for a wave year, or None when no wave was run that year (e.g. 2017)."""
    path = paths.waves_config / f"{wave_year}.yml"
    if not path.exists():
        return None
    spec = WaveSpec.from_file(path, paths.root)
    if spec.wave_year != wave_year:
        raise WaveSpecError(f"{path}: says wave_year {spec.wave_year}, but the file name says {wave_year}")
    return spec


def list_wave_years(paths: Paths) -> list[int]:
    return sorted(int(p.stem) for p in paths.waves_config.glob("*.yml") if p.stem.isdigit())
