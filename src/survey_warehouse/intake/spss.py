"""SPSS .sav (and compressed .zsav) deliveries, read with pyreadstat: their metadata, and their cases into the grid.

An SPSS file holds, beside each answer's code, a dictionary: each variable's name (`q1`), its label (the question's
wording), its value labels (1 = "Täysin eri mieltä") and its user-missing values (SPSS missing values and ranges,
such as 9 = "no answer"). The grid holds what the survey tool's CSV export would hold:

- the header is the variables' names; a variable that the wave spec's `columns` name by its label instead (the
  question's wording, as a CSV export's header has it) has its label as its header;
- a cell is its value's label; a value with no label in its variable's set is kept as the code's text ("7"), so the
  codebook's check of the answers quarantines it (`unknown_answer`) rather than anything dropping it;
- a user-missing value (declared in the file, or in the spec's `user_missing`) is a missing answer: the cell is
  empty, as it would be in the CSV export;
- each variable with value labels gets a column `<header> [code]` right of the others, holding the codes as
  delivered (also those of user-missing values): nothing of the file is lost, and the codes stay beside the labels;
- each column's variable label is its question's wording (raw.survey_columns.question_text);
- rows are the cases' numbers (1 = the first case); a case with nothing in it is not data.

`read_sav_metadata` reads the dictionary alone (no cases), for matching a new wave's questions and answers by their
labels.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from survey_warehouse.errors import WaveFileError
from survey_warehouse.intake.grid import Grid, arrow_into, check_header, drop_temp
from survey_warehouse.intake.matching import match_key, shown
from survey_warehouse.intake.values import clock_text
from survey_warehouse.intake.verdict import container_of, ole2_kind, zip_kind
from survey_warehouse.intake.waves import WaveSpec

SAV_SIGNATURES = (b"$FL2", b"$FL3")  # .sav, and .zsav (compressed)
CODE_SUFFIX = " [code]"
EXACT_INTEGERS = 2**53
SAV_CHUNK_CASES = 20_000  # cases read and made text at a time
READER_WORDS = 120  # a reader's message up to this long is quoted


@dataclass(frozen=True)
class SavVariable:
    name: str
    label: str | None  # the question's wording
    value_labels: dict[Any, str]  # code -> label (a number's code as float, a text variable's as text)
    user_missing: tuple[tuple[Any, Any], ...]  # (low, high) ranges; a single value is (v, v)
    kind: str  # "number" or "text"
    spss_format: str  # as SPSS shows it: F8.2, A20, DATETIME20, ...

    def is_user_missing(self, value: Any) -> bool:
        return value is not None and any(_within(value, low, high) for low, high in self.user_missing)


@dataclass(frozen=True)
class SavMetadata:
    path: Path
    variables: list[SavVariable]
    cases: int  # as the file's header records it (-1: not recorded)
    file_label: str | None = None
    encoding: str | None = None
    notes: list[str] = field(default_factory=list)

    def variable(self, name: str) -> SavVariable:
        return next(v for v in self.variables if v.name == name)


def _within(value: Any, low: Any, high: Any) -> bool:
    try:
        return bool(low <= value <= high)
    except TypeError:  # a text value against a numeric range, or the other way round
        return False


def read_sav_metadata(path: Path) -> SavMetadata:
    """The file's dictionary without its cases: each variable's name, label, value labels and user-missing values.
    Raises WaveFileError (naming the file) when the file is not an SPSS file or is damaged."""
    import pyreadstat

    _check_container(path)
    try:
        _empty, meta = pyreadstat.read_sav(str(path), metadataonly=True, user_missing=True)
    except Exception as exc:  # pyreadstat's ReadstatError and others
        raise WaveFileError(
            path,
            f"{DICTIONARY_VERDICTS.get(_damage_kind(exc), UNREADABLE_DICTIONARY)} ({_damage(exc)}); ask for the "
            "file again",
        ) from None
    return _metadata(path, meta)


def _metadata(path: Path, meta: Any) -> SavMetadata:
    labels = meta.column_labels or [None] * len(meta.column_names)
    variables = []
    for name, label in zip(meta.column_names, labels, strict=True):
        ranges = [(r["lo"], r["hi"]) for r in (meta.missing_ranges or {}).get(name, [])]
        ranges += [(v, v) for v in (meta.missing_user_values or {}).get(name, [])]
        kind = "text" if meta.readstat_variable_types.get(name) == "string" else "number"
        variables.append(
            SavVariable(
                name=name,
                label=label or None,
                value_labels=dict((meta.variable_value_labels or {}).get(name, {})),
                user_missing=tuple(ranges),
                kind=kind,
                spss_format=meta.original_variable_types.get(name, ""),
            )
        )
    return SavMetadata(
        path,
        variables,
        cases=meta.number_rows if meta.number_rows is not None else -1,
        file_label=meta.file_label or None,
        encoding=meta.file_encoding or None,
    )


# What the reader's errors (ReadStat's: a fixed text for each kind of error) say about a file
CUT_OFF, ENDS_EARLY, DAMAGED, DAMAGED_TEXT = "cut off", "ends early", "damaged", "damaged text"
READER_KINDS = {
    "File did not contain the expected number of rows": CUT_OFF,  # the cases end before the header's count
    "Unable to read from file": ENDS_EARLY,  # a read past the file's end: cut off, or a damaged length
    "Invalid file, or file has unsupported features": DAMAGED,  # what no SPSS file holds
    "Unable to convert string to the requested encoding": DAMAGED_TEXT,  # bytes that are no text
}
DICTIONARY = "dictionary (its variables' names and labels)"
CHANGED = "the bytes were changed in transfer or storage"
DICTIONARY_VERDICTS = {
    ENDS_EARLY: f"the SPSS file ends before its {DICTIONARY} does: it was cut off in transfer, or a length recorded "
    "in it is damaged",
    DAMAGED: f"the SPSS file's {DICTIONARY} is damaged: it holds what no SPSS file does ({CHANGED}, or the file is "
    "not really an SPSS file)",
    DAMAGED_TEXT: f"the SPSS file's {DICTIONARY} is damaged: a name or label in it is no text in the encoding the "
    f"file records ({CHANGED})",
}
UNREADABLE_DICTIONARY = f"the SPSS file's {DICTIONARY} cannot be read"


def _damage_kind(exc: BaseException | None) -> str:
    """What the reader's error says about the file: CUT_OFF, ENDS_EARLY, DAMAGED, DAMAGED_TEXT, or "" (unknown)."""
    text = str(exc) if exc is not None else ""
    return next((kind for words, kind in READER_KINDS.items() if words in text), "")


def _damage(exc: Exception) -> str:
    """The reader's kind of error and its own words (pyreadstat's say what is wrong with the file, never a cell)."""
    text = str(exc).strip()
    short = text and len(text) < READER_WORDS and "\n" not in text
    return f"{type(exc).__name__}: {text}" if short else type(exc).__name__


def _check_container(path: Path) -> None:
    with open(path, "rb") as f:
        head = f.read(8192)
    if head.startswith(SAV_SIGNATURES):
        return
    kind = container_of(head)
    what = zip_kind(path) if kind == "zip" else ole2_kind(path) if kind == "ole2" else kind
    raise WaveFileError(
        path,
        f"is {what or 'a text file (CSV or similar)'}, not an SPSS .sav file, although the wave spec says "
        "format: sav; set the format the file has in the spec, or ask for the SPSS export",
    )


def _cell(value: Any) -> str | None:
    """A value as text: a whole number without a decimal point, a date or time in ISO form."""
    if value is None:
        return None
    if isinstance(value, float):
        if math.isnan(value):  # system-missing
            return None
        return str(int(value)) if value.is_integer() and abs(value) < EXACT_INTEGERS else repr(value)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    text = str(value)
    return text if text.strip() != "" else None


# SPSS keeps dates, date-times and durations as seconds (dates since 14 October 1582); by the variable's format:
SPSS_EPOCH = dt.datetime(1582, 10, 14)  # noqa: DTZ001 (SPSS's times carry no zone)
DATE_FORMATS = frozenset({"DATE", "ADATE", "EDATE", "SDATE", "JDATE", "QYR", "MOYR", "WKYR"})
DATETIME_FORMATS = frozenset({"DATETIME", "YMDHMS"})
DURATION_FORMATS = frozenset({"TIME", "DTIME", "MTIME"})


def _text_of(spss_format: str) -> Callable[[Any], str | None]:
    """How a variable's value becomes text, by its SPSS format: a date as 2018-03-31, a date-time in ISO form with
    its fraction of a second, a duration (TIME, DTIME) as every reader writes one (values.clock_text: total hours,
    signed); any other value as _cell does."""
    kind = re.match(r"[A-Z]*", spss_format.upper())
    name = kind.group(0) if kind else ""
    if name in DATE_FORMATS:
        return lambda v: _seconds_to(v, lambda t: t.date().isoformat())
    if name in DATETIME_FORMATS:
        return lambda v: _seconds_to(v, lambda t: t.isoformat())
    if name in DURATION_FORMATS:
        return _duration
    return _cell


def _seconds_to(value: Any, shown_as: Callable[[dt.datetime], str]) -> str | None:
    if not isinstance(value, int | float) or isinstance(value, bool) or math.isnan(value):
        return _cell(value)
    return shown_as(SPSS_EPOCH + dt.timedelta(seconds=float(value)))


def _duration(value: Any) -> str | None:
    if not isinstance(value, int | float) or isinstance(value, bool) or math.isnan(value):
        return _cell(value)
    return clock_text(round(float(value) * 1_000_000))


def _headers(spec: WaveSpec, metadata: SavMetadata) -> list[str]:
    """Each variable's header: its name, or its label where the spec maps the variable by its label."""
    names = {match_key(v.name) for v in metadata.variables}
    by_label = {match_key(c) for c in spec.columns} - names
    return [v.label if v.label is not None and match_key(v.label) in by_label else v.name for v in metadata.variables]


def _refuse_unknown_variables(spec: WaveSpec, metadata: SavMetadata) -> None:
    """A mapped column that is neither a variable's name nor its label: named, with the variable it most resembles
    (by name or label), since an SPSS file's header is not what its CSV export's would be."""
    import difflib

    by_key = {match_key(n) or "": v for v in metadata.variables for n in (v.name, v.label) if n}
    for column in spec.columns:
        key = match_key(column) or ""
        if key in by_key and key:
            continue
        close = difflib.get_close_matches(key, list(by_key), n=1, cutoff=0.6)
        hint = (
            f"the closest is variable {by_key[close[0]].name}"
            + (f" labelled {shown(by_key[close[0]].label)}" if by_key[close[0]].label else "")
            + ": if it is this question, map it by its name or its label in 'columns'"
            if close
            else "map a variable by its name or its label in 'columns', or ask for a file with the agreed questions"
        )
        raise WaveFileError(
            spec.file,
            f"mapped column {shown(column)} is neither a variable's name nor its label in the SPSS file; {hint}",
            column=shown(column),
        )


EVERY_VARIABLE = "*"
VARIABLES_NAMED = 12  # a message lists this many of a file's variables


def _spec_names(variable: SavVariable, header: str) -> tuple[str, str]:
    """What the spec's user_missing may name a variable by (compared by their match keys): its name, its header."""
    return variable.name, header


def _refuse_unknown_user_missing(spec: WaveSpec, metadata: SavMetadata, headers: list[str]) -> None:
    """A key of the spec's user_missing that names no variable (by its name or header) would declare nothing: named,
    with the variable it most resembles and the file's variables, before anything is read."""
    import difflib

    known: dict[str, str] = {}
    for variable, header in zip(metadata.variables, headers, strict=True):
        for name in _spec_names(variable, header):
            known.setdefault(match_key(name) or "", name)
    for key in spec.user_missing:
        if key == EVERY_VARIABLE or (match_key(key) or "") in known:
            continue
        close = difflib.get_close_matches(match_key(key) or "", list(known), n=1, cutoff=0.6)
        names = [v.name for v in metadata.variables]
        listed = ", ".join(names[:VARIABLES_NAMED]) + (
            f", ... ({len(names):,} in all)" if len(names) > VARIABLES_NAMED else ""
        )
        raise WaveFileError(
            spec.file,
            f"user_missing in {spec.name} names {shown(key)}, which is neither a variable's name nor its header in "
            f"the SPSS file, so it would declare nothing; "
            + (f"the closest is {shown(known[close[0]])}; " if close else "")
            + f'its variables are {listed}: name a variable by its name or header in user_missing (or "*" for '
            "every variable)",
            column=shown(key),
        )


def _spec_missing(spec: WaveSpec, variable: SavVariable, header: str) -> tuple[tuple[Any, Any], ...]:
    """The user-missing codes the spec declares for a variable (by its name or its header), or for every one."""
    declared = spec.user_missing
    values: list[Any] = []
    for key, codes in declared.items():
        if key == EVERY_VARIABLE or match_key(key) in {match_key(n) for n in _spec_names(variable, header)}:
            values += codes
    if variable.kind == "number":
        numbers = []
        for value in values:
            try:
                numbers.append(float(value))
            except ValueError:
                continue
        return tuple((v, v) for v in numbers)
    texts = [_cell(v) if isinstance(v, float) else str(v) for v in values]  # 99 (read as 99.0 from YAML) is "99"
    return tuple((t, t) for t in texts if t is not None)


def _texts(values: list[Any], text_of: Callable[[Any], str | None]) -> Any:
    """A column's values as an Arrow array of text: each distinct value made text once (a column of codes has a few;
    a column of names or times as many as rows)."""
    import pyarrow as pa

    try:
        encoded = pa.array(values).dictionary_encode()
    except (pa.ArrowException, TypeError, ValueError):  # values of mixed kinds: one at a time
        return pa.array([text_of(v) for v in values], pa.string())
    texts = pa.array([text_of(v) for v in encoded.dictionary.to_pylist()], pa.string())
    return texts.take(encoded.indices)


SAV_HEADER_BYTES = 176


def cases_beyond_header(path: Path, cases: int) -> int:
    """How many whole cases an uncompressed .sav holds after the `cases` its header counts (0 when none, or when
    the file is compressed, whose size says nothing of its cases): a damaged case count would otherwise read part
    of the file as all of it. The dictionary's records are walked to find where the data begins."""
    import struct

    try:
        with open(path, "rb") as f:
            header = f.read(SAV_HEADER_BYTES)
            if len(header) < SAV_HEADER_BYTES or header[:4] != b"$FL2":
                return 0
            order = "<" if struct.unpack("<i", header[64:68])[0] in (2, 3) else ">"
            if struct.unpack(f"{order}i", header[72:76])[0] != 0:  # compressed: no fixed size per case
                return 0

            def number() -> int:
                data = f.read(4)
                if len(data) < 4:  # noqa: PLR2004
                    raise EOFError
                return int(struct.unpack(f"{order}i", data)[0])

            slots = 0
            while (kind := number()) != 999:  # noqa: PLR2004 (the dictionary's last record)
                if kind == 2:  # noqa: PLR2004 (a variable, or the continuation of a long string)
                    slots += 1
                    _type, has_label, missing = number(), number(), number()
                    f.seek(16, 1)  # print and write formats, name
                    if has_label:
                        f.seek((number() + 3) // 4 * 4, 1)
                    f.seek(abs(missing) * 8, 1)
                elif kind == 3:  # noqa: PLR2004 (value labels)
                    for _ in range(number()):
                        f.seek(8, 1)
                        length = f.read(1)[0]
                        f.seek((length + 1 + 7) // 8 * 8 - 1, 1)
                elif kind == 4:  # noqa: PLR2004 (the variables the labels are for)
                    f.seek(number() * 4, 1)
                elif kind == 6:  # noqa: PLR2004 (documents)
                    f.seek(number() * 80, 1)
                elif kind == 7:  # noqa: PLR2004 (an extension)
                    _subtype, size, count = number(), number(), number()
                    f.seek(size * count, 1)
                else:
                    return 0
            number()  # filler
            start = f.tell()
            size = f.seek(0, 2)
    except (OSError, EOFError, IndexError, struct.error):
        return 0
    case_bytes = slots * 8
    return max((size - start) // case_bytes - cases, 0) if case_bytes else 0


def read_sav(spec: WaveSpec, con: duckdb.DuckDBPyConnection, head: bytes) -> Grid:
    """The cases of the spec's .sav into `grid` (labels, and codes beside them), a chunk of cases at a time, or a
    verdict in words."""
    import pyarrow as pa
    import pyreadstat

    del head  # the container is judged here from the file itself
    metadata = read_sav_metadata(spec.file)
    headers = _headers(spec, metadata)
    _refuse_unknown_variables(spec, metadata)
    _refuse_unknown_user_missing(spec, metadata, headers)
    header = check_header(spec, headers)
    converters = []
    for variable, column_header in zip(metadata.variables, headers, strict=True):
        missing = variable.user_missing + _spec_missing(spec, variable, column_header)

        text_of = _text_of(variable.spss_format)

        def label_of(
            value: Any,
            labels: dict = variable.value_labels,
            missing: tuple = missing,
            text_of: Callable[[Any], str | None] = text_of,
        ) -> str | None:
            if value is None or (isinstance(value, str) and value.strip() == ""):
                return None
            if any(_within(value, low, high) for low, high in missing):
                return None  # user-missing: no answer, as in the tool's CSV export
            labelled = labels.get(value)
            return labelled if labelled is not None and labelled.strip() else text_of(value)

        # the codes beside: of a variable with value labels, and of one with user-missing codes (a missing answer's
        # code is kept there, not lost)
        converters.append((variable.name, label_of, bool(variable.value_labels) or bool(missing)))
    coded = [(name, column) for (name, _f, has), column in zip(converters, headers, strict=True) if has]
    header = [*header, *(f"{column}{CODE_SUFFIX}" for _name, column in coded)]
    width = len(header)
    read = 0
    while True:
        try:
            data, _meta = pyreadstat.read_sav(  # times and dates as SPSS stores them (seconds): see _text_of
                str(spec.file),
                user_missing=True,
                output_format="dict",
                row_offset=read,
                row_limit=SAV_CHUNK_CASES,
                disable_datetime_conversion=True,
            )
        except Exception as exc:
            raise _cases_unreadable(spec, metadata, exc) from None
        count = len(data[converters[0][0]]) if converters and data else 0
        cells = [_texts(data[name], label_of) for name, label_of, _has in converters]
        cells += [_texts(data[name], _cell) for name, _header in coded]
        columns = {
            "source_row_number": pa.array(range(read + 1, read + count + 1), pa.int32()),
            "cell_count": pa.array([width] * count, pa.int32()),
            **{f"c{i}": column for i, column in enumerate(cells, start=1)},
        }
        if read == 0:
            drop_temp(con, "grid")
        arrow_into(con, "grid", pa.table(columns), replace=read == 0)
        read += count
        if count < SAV_CHUNK_CASES:
            break
    if 0 <= metadata.cases != read:
        raise _cases_unreadable(spec, metadata, None)
    more = cases_beyond_header(spec.file, read)
    if more:
        raise WaveFileError(
            spec.file,
            f"the SPSS file's header says it holds {read} case(s), but its data goes on for {more} more: the header "
            "is damaged, and only part of the answers would be read; ask for the file again",
        )
    blank = " and ".join(f"c{i} is null" for i in range(1, width + 1))
    con.execute(f"delete from grid where {blank}")  # a case with nothing in it carries nothing
    con.execute(
        "create or replace temp table grid_extra (source_row_number integer, column_position integer, "
        "cell_value varchar)"
    )
    rows = con.execute("select count(*) from grid").fetchall()[0][0]
    if rows == 0:
        raise WaveFileError(
            spec.file, "the SPSS file has its variables but no answers (no case); ask for the full export"
        )
    questions = [v.label for v in metadata.variables]
    label_of_name = {v.name: v.label for v in metadata.variables}
    labelled = [label_of_name[name] for name, _column in coded]  # the [code] columns, in their order
    return Grid(header, 0, rows, reader="pyreadstat (SPSS .sav)", question_texts=[*questions, *labelled])


def _cases_unreadable(spec: WaveSpec, metadata: SavMetadata, exc: Exception | None) -> WaveFileError:
    """The file's dictionary was read but not all its cases: the first case that cannot be read, and what the
    reader says of it: the file ends before the number of cases its header records (cut off in transfer), or the
    case's bytes are damaged (the file is as long as it was)."""
    import pyreadstat

    if metadata.cases <= 0:
        return WaveFileError(
            spec.file,
            f"the SPSS file's answers cannot be read ({_damage(exc) if exc else 'no case'}); ask for the file again",
        )
    readable, unreadable = 0, metadata.cases
    while unreadable - readable > 1:  # the number of cases that can be read, by halving
        middle = (readable + unreadable) // 2
        try:
            data, _meta = pyreadstat.read_sav(str(spec.file), row_limit=middle, output_format="dict", user_missing=True)
        except Exception:
            unreadable = middle
            continue
        cases = len(next(iter(data.values()), []))
        readable, unreadable = (middle, unreadable) if cases == middle else (readable, middle)
    said = f" ({_damage(exc)})" if exc else ""
    kind = _damage_kind(exc) if exc else CUT_OFF
    if kind == CUT_OFF:
        how = "it was cut off in transfer, and what is missing cannot be known; ask for the complete file"
        what = "ends before its last cases"
    elif kind == ENDS_EARLY:
        how = "it was cut off in transfer, or a length recorded in it is damaged; ask for the complete file"
        what = f"ends, or is damaged, at case {readable + 1:,}"
    else:
        text = "a value of this case is no text in the encoding the file records: " if kind == DAMAGED_TEXT else ""
        how = f"{text}{CHANGED}, and what they held cannot be known; ask for the file again"
        what = f"is damaged at case {readable + 1:,}"
    return WaveFileError(
        spec.file,
        f"the SPSS file {what}: its header records {metadata.cases:,} cases, but only {readable:,} can be read{said}; "
        + how,
        row=readable + 1,
    )
