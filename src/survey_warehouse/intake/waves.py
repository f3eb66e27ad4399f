"""Wave specs: how each year's survey export is read (format, encoding, header row, column -> field mapping)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from survey_warehouse.errors import WaveSpecError
from survey_warehouse.intake.codebook import (
    PLACEHOLDER,
    REQUIRED_STRUCTURAL_FIELDS,
    STRUCTURAL_FIELDS,
    Codebook,
    is_placeholder,
)
from survey_warehouse.intake.matching import shown
from survey_warehouse.intake.values import (
    DATE_ORDERS,
    DECIMAL_SEPARATORS,
    DEFAULT_TIME_ZONE,
    DURATION_CLOCKS,
    VALUE_FIELDS,
    ValueRules,
    check_time_zone,
)
from survey_warehouse.settings import Paths

WORKBOOK_FORMATS = ("xlsx", "xlsb", "xls", "ods")  # spreadsheets, read with calamine
FORMATS = ("csv", *WORKBOOK_FORMATS, "sav")
REQUIRED_KEYS = ("wave_year", "file", "format", "columns", "cities_surveyed", "field_period", "questionnaire_version")
OPTIONAL_KEYS = (
    "encoding",
    "delimiter",
    "sheet",
    "header_row",
    "user_missing",
    "accept_removals",
    "owner_email",
    "withdrawn",
    "time_zone",
    "date_order",
    "decimal_separator",
    "duration_clock",
    "keep_unreadable",
)
# name@domain.tld: one @, no spaces, a dot in the domain
EMAIL_ADDRESS = re.compile(r"[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>.]+")


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
    # How submission and response times are read (survey_warehouse.intake.values): the time zone the wave's times
    # are kept in, the order of a date's day, month and year, the decimal separator of its numbers (None: the
    # file's values decide), how a response time of two parts (12:30) is read, m:ss or h:mm (None: it is refused
    # as ambiguous).
    time_zone: str = DEFAULT_TIME_ZONE
    date_order: str | None = None
    decimal_separator: str | None = None
    duration_clock: str | None = None
    # Fields (submitted_at, response_minutes) whose values that cannot be read are kept as delivered, with a
    # warning, instead of quarantining their rows.
    keep_unreadable: tuple[str, ...] = ()
    # SPSS .sav: codes that mean "no answer", by variable (its name or header; "*": every variable), beside the
    # user-missing values the file itself declares
    user_missing: dict[str, tuple[str | float, ...]] = field(default_factory=dict)
    # Respondents (by the reference the removal guard prints) or cities (municipality codes) that a re-delivery
    # may drop: a genuine withdrawal, recorded with the load.
    accept_removals: tuple[str, ...] = ()
    # Who hears of the wave's failed runs, its publications and a wave that is overdue (not part of reading
    # the file, so not of the fingerprint).
    owner_email: tuple[str, ...] = ()
    # Why the wave is withdrawn from the published marts (None: it is not). Not part of reading the file either.
    withdrawn: str | None = None
    spec_path: Path | None = field(default=None, compare=False)

    @classmethod
    def from_file(cls, path: Path, root: Path) -> WaveSpec:
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise WaveSpecError(f"{path}: not a readable YAML file ({exc})") from exc
        if not isinstance(raw, dict):
            raise WaveSpecError(f"{path}: expected keys such as {list(REQUIRED_KEYS)}")
        missing = [k for k in REQUIRED_KEYS if k not in raw]
        if missing:
            raise WaveSpecError(f"{path}: missing keys {missing}")
        unknown = sorted(set(raw) - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS))
        if unknown:
            raise WaveSpecError(f"{path}: unknown keys {unknown}; the keys are {[*REQUIRED_KEYS, *OPTIONAL_KEYS]}")
        if not isinstance(raw["columns"], dict) or not raw["columns"]:
            raise WaveSpecError(f"{path}: 'columns' must map each delivered header to a field")
        if raw["format"] not in FORMATS:
            raise WaveSpecError(f"{path}: format must be one of {FORMATS}, not {raw['format']!r}")
        period = raw["field_period"]
        if not isinstance(period, dict) or not {"start", "end"} <= set(period):
            raise WaveSpecError(f"{path}: field_period needs start and end dates")
        year = _check_types(raw, path)
        cities = [str(c).zfill(3) for c in raw["cities_surveyed"] or []]
        if not cities:
            raise WaveSpecError(f"{path}: cities_surveyed lists no city; list the municipality codes surveyed")
        twice = sorted({c for c in cities if cities.count(c) > 1})
        if twice:
            raise WaveSpecError(f"{path}: cities_surveyed lists {twice} more than once")
        delimiter = str(raw.get("delimiter", ","))
        if len(delimiter) != 1 or delimiter in '"\r\n':
            raise WaveSpecError(
                f"{path}: delimiter must be one character (not a quote or a line break), not {shown(delimiter)}"
            )
        header_row = whole_number(raw.get("header_row", 1))
        if header_row is None or header_row < 1:
            raise WaveSpecError(
                f"{path}: header_row must be a row number (1 = the first row), not {shown(str(raw['header_row']))}"
            )
        if raw["format"] in WORKBOOK_FORMATS and not raw.get("sheet"):
            raise WaveSpecError(
                f"{path}: an {raw['format']} wave needs 'sheet', the name of the sheet with the answers"
            )
        encoding = str(raw.get("encoding", "utf-8"))
        try:
            "".encode(encoding)
        except LookupError:
            raise WaveSpecError(
                f"{path}: unknown encoding {shown(encoding)} (e.g. utf-8, utf-8-sig, cp1252, utf-16)"
            ) from None
        withdrawn = raw.get("withdrawn")
        if withdrawn is not None and (not isinstance(withdrawn, str) or not withdrawn.strip()):
            raise WaveSpecError(
                f"{path}: 'withdrawn' says why the wave is withdrawn from the marts, as text "
                '(withdrawn: "the survey tool mixed up two cities\' answers"); remove the key to publish the wave'
            )
        time_zone, date_order, decimal_separator, duration_clock = _value_rules(raw, path)
        file = Path(str(raw["file"]))
        return cls(
            wave_year=year,
            file=file if file.is_absolute() else root / file,
            format=raw["format"],
            columns={str(k).strip(): str(v).strip() for k, v in raw["columns"].items()},
            cities_surveyed=tuple(cities),
            questionnaire_version=str(raw["questionnaire_version"]),
            field_period_start=_date(period["start"], path),
            field_period_end=_date(period["end"], path),
            encoding=encoding,
            delimiter=delimiter,
            sheet=raw.get("sheet"),
            header_row=header_row,
            time_zone=time_zone,
            date_order=date_order,
            decimal_separator=decimal_separator,
            duration_clock=duration_clock,
            keep_unreadable=_keep_unreadable(raw, path),
            user_missing=_user_missing(raw.get("user_missing"), path),
            accept_removals=tuple(str(v).strip() for v in raw.get("accept_removals") or ()),
            owner_email=owner_emails(raw.get("owner_email"), path),
            withdrawn=withdrawn.strip() if withdrawn else None,
            spec_path=path,
        )

    @property
    def name(self) -> str:
        return str(self.spec_path or f"the wave spec of {self.wave_year}")

    def fields(self) -> dict[str, str]:
        """Field id -> the delivered header it is read from."""
        return {f: column for column, f in self.columns.items()}

    def questions(self) -> list[str]:
        return [f for f in self.columns.values() if f not in STRUCTURAL_FIELDS]

    def value_rules(self) -> ValueRules:
        """How the wave's submission and response times are read."""
        return ValueRules(
            wave_year=self.wave_year,
            field_period_start=self.field_period_start,
            field_period_end=self.field_period_end,
            time_zone=self.time_zone,
            date_order=self.date_order,
            decimal_separator=self.decimal_separator,
            duration_clock=self.duration_clock,
        )

    def fingerprint(self) -> str:
        """What reading the file depends on, for telling a changed spec from an unchanged one."""
        data = {k: v for k, v in self.__dict__.items() if k not in ("spec_path", "owner_email", "withdrawn")}
        data["file"] = self.file.name
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()

    def as_json(self) -> str:
        return json.dumps(
            {
                "file": self.file.name,
                "format": self.format,
                "encoding": self.encoding,
                "delimiter": self.delimiter,
                "sheet": self.sheet,
                "header_row": self.header_row,
                "time_zone": self.time_zone,
                "date_order": self.date_order,
                "decimal_separator": self.decimal_separator,
                "duration_clock": self.duration_clock,
                "keep_unreadable": list(self.keep_unreadable),
                "columns": self.columns,
                **({"user_missing": self.user_missing} if self.user_missing else {}),
                "accept_removals": list(self.accept_removals),
            },
            ensure_ascii=False,
        )

    def check(self, codebook: Codebook) -> None:
        """Every column maps to a structural field or to a question the codebook declares for this wave."""
        declared = codebook.questions_for(self.wave_year)
        seeds = "dbt_project/seeds"
        left = [f"{self.name}: {k}" for k, v in self.columns.items() if is_placeholder(v) or is_placeholder(k)]
        left += [f"{self.name}: questionnaire_version"] if is_placeholder(self.questionnaire_version) else []
        left += [f"{self.name}: cities_surveyed"] if any(is_placeholder(c) for c in self.cities_surveyed) else []
        left += [f"{seeds}/{where}" for where in codebook.open_decisions(self.wave_year)]
        if left:
            raise WaveSpecError(
                f"{self.name}: the wave's draft still has {len(left)} decision(s) left to a person (a value starting "
                f"with {PLACEHOLDER!r}): {'; '.join(left[:5])}{' ...' if len(left) > 5 else ''}. Answer them "  # noqa: PLR2004
                "(`wave draft` lists them) before loading the wave"
            )
        for column, field_id in self.columns.items():
            if field_id in STRUCTURAL_FIELDS or field_id in declared:
                continue
            elsewhere = sorted(w for (w, q) in codebook.questions if q == field_id)
            hint = f"it is declared for {elsewhere}, not for {self.wave_year}" if elsewhere else "no wave declares it"
            raise WaveSpecError(
                f"{self.name}: column {shown(column)} is mapped to {field_id!r}, which is neither a respondent "
                f"field ({', '.join(STRUCTURAL_FIELDS)}) nor a question of the {self.wave_year} questionnaire "
                f"({hint}). Declare it: add a row for ({self.wave_year}, {field_id}) to "
                f"{seeds}/codebook_questions.csv and its answer labels to {seeds}/codebook_answers.csv"
            )
        mapped = list(self.columns.values())
        twice = sorted({f for f in mapped if mapped.count(f) > 1})
        if twice:
            raise WaveSpecError(f"{self.name}: {twice} mapped from more than one column; map each field once")
        required = [*REQUIRED_STRUCTURAL_FIELDS, *(q for q, question in declared.items() if question.is_required)]
        absent = [f for f in required if f not in mapped]
        if absent:
            raise WaveSpecError(f"{self.name}: required fields not mapped to any column: {absent}")
        for field_id in mapped:
            if (
                field_id in declared
                and field_id != "respondent_role"
                and not declared[field_id].is_scale
                and not codebook.labels_for(self.wave_year, field_id)
            ):
                raise WaveSpecError(
                    f"{self.name}: question {field_id!r} has no answer labels for {self.wave_year} "
                    f"in {seeds}/codebook_answers.csv"
                )
        unknown = [c for c in self.cities_surveyed if c not in codebook.municipality_codes]
        if unknown:
            raise WaveSpecError(f"{self.name}: cities_surveyed has codes that are not in {seeds}/cities.csv: {unknown}")


def owner_emails(value: Any, path: Path) -> tuple[str, ...]:
    """`owner_email`: one address, or a list of them."""
    if value is None:
        return ()
    values = value if isinstance(value, list) else [value]
    bad = [v for v in values if not isinstance(v, str) or not EMAIL_ADDRESS.fullmatch(v.strip())]
    if bad or not values:
        raise WaveSpecError(
            f"{path}: owner_email must be an e-mail address (e.g. owner_email: kysely@example.fi) or a list of "
            f"them, not {shown(bad[0] if bad else value)}"
        )
    return tuple(v.strip() for v in values)


def _value_rules(raw: dict, path: Path) -> tuple[str, str | None, str | None, str | None]:
    """time_zone, date_order, decimal_separator and duration_clock, checked."""
    time_zone = str(raw.get("time_zone") or DEFAULT_TIME_ZONE)
    wrong = check_time_zone(time_zone)
    if wrong:
        raise WaveSpecError(f"{path}: time_zone: {wrong}")
    order = raw.get("date_order")
    if order is not None and str(order).upper() not in DATE_ORDERS:
        raise WaveSpecError(
            f"{path}: date_order is the order of a date's day, month and year, one of {', '.join(DATE_ORDERS)} "
            f"(DMY: 04/03/2019 is 4 March), not {shown(str(order))}"
        )
    separator = raw.get("decimal_separator")
    if separator is not None and str(separator) not in DECIMAL_SEPARATORS:
        raise WaveSpecError(
            f'{path}: decimal_separator is "." or ",", the character between a number\'s whole part and its '
            f"decimals, not {shown(str(separator))}"
        )
    clock = raw.get("duration_clock")
    if clock is not None and str(clock).strip().lower() not in DURATION_CLOCKS:
        raise WaveSpecError(
            f"{path}: duration_clock says how a response time of two parts such as 12:30 is read, m:ss (minutes "
            f"and seconds) or h:mm (hours and minutes), not {shown(str(clock))}"
        )
    return (
        time_zone,
        str(order).upper() if order is not None else None,
        str(separator) if separator else None,
        str(clock).strip().lower() if clock is not None else None,
    )


def _keep_unreadable(raw: dict, path: Path) -> tuple[str, ...]:
    fields = tuple(str(f).strip() for f in raw.get("keep_unreadable") or ())
    other = [f for f in fields if f not in VALUE_FIELDS]
    if other:
        raise WaveSpecError(
            f"{path}: keep_unreadable lists fields whose unreadable values are kept with a warning, of "
            f"{', '.join(VALUE_FIELDS)}; not {', '.join(shown(f) for f in other)}"
        )
    return fields


def _user_missing(value: Any, path: Path) -> dict[str, tuple[str | float, ...]]:
    """`user_missing`: a list of codes for every variable, or a mapping of variable -> codes."""
    if value is None:
        return {}
    mapping = {"*": value} if isinstance(value, list) else value
    example = "user_missing: {q1: [9, 99]} or user_missing: [-1, 99] (every variable)"
    if not isinstance(mapping, dict) or not mapping:
        raise WaveSpecError(f"{path}: user_missing lists the codes that mean no answer ({example})")
    found: dict[str, tuple[str | float, ...]] = {}
    for key, given in mapping.items():
        codes = given if isinstance(given, list) else [given]
        if any(isinstance(c, bool) or not isinstance(c, int | float | str) for c in codes):
            raise WaveSpecError(f"{path}: user_missing of {shown(str(key))} must be codes ({example})")
        found[str(key).strip()] = tuple(c if isinstance(c, str) else float(c) for c in codes)
    return found


def whole_number(value: Any) -> int | None:
    """A key's whole number as a spec gives it: a number (3), or a number in quotes ("3"), as deleting `TODO: ` from
    a draft's `"TODO: 3"` leaves it; None for anything else (a fraction, a word, true)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*[0-9]+\s*", value):
        return int(value)
    return None


def _date(value: Any, path: Path) -> dt.date:
    """A date as a spec gives it: a YAML date (2021-03-08), or one in quotes ("2021-03-08"), as deleting `TODO: `
    from a draft's `"TODO: 2021-03-08"` leaves it."""
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise WaveSpecError(f"{path}: {shown(value)} is not a date (YYYY-MM-DD)") from None


def _check_types(raw: dict, path: Path) -> int:
    """The keys whose type a spec can get wrong without YAML noticing; the wave year."""
    year = whole_number(raw["wave_year"])
    if year is None:
        raise WaveSpecError(f"{path}: wave_year must be a year such as 2019, not {shown(str(raw['wave_year']))}")
    for key in ("cities_surveyed", "accept_removals", "keep_unreadable"):
        if raw.get(key) is not None and not isinstance(raw[key], list):
            example = '["091", "049"]'
            raise WaveSpecError(f"{path}: {key} must be a list ({key}: {example}), not {shown(str(raw[key]))}")
    return year


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
