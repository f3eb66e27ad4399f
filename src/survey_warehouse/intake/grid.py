"""A delivered wave file's cells as a grid in DuckDB: every cell as text, with its row.

What the file is has been judged from its bytes first (survey_warehouse.intake.verdict): a file that is not the
text or workbook its spec says is refused before anything parses it.

A CSV file that is regular (every row as wide as the header, no blank lines) is read by DuckDB's parallel reader;
any other is read by Python's csv module, which can name the row of each irregularity. Spreadsheets (.xlsx, .xlsb,
.xls, .ods) are read with calamine (survey_warehouse.intake.workbook; DuckDB's own Excel reader is an extension
downloaded at run time), SPSS .sav files with pyreadstat (survey_warehouse.intake.spss). Either way the result is
the same temporary table `grid`: source_row_number, cell_count and c1..cN (N = the header's width), cells as text,
empty cells null. Cells right of the header of a longer row go to `grid_extra`.

One idea in about 600 lines: reading a file into the grid, with what goes wrong while reading told in words (a
separator hint, a header below a title block, answers above the header, an unterminated quote, stray quotes, a
damaged workbook); each of those needs the reader's own view of the rows, so they stay beside it.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import difflib
import io
import itertools
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from survey_warehouse.errors import WaveFileError
from survey_warehouse.intake.matching import looks_like_email, match_key, shown
from survey_warehouse.intake.verdict import (
    MOJIBAKE,
    bom_conflict,
    column_at,
    encoding_that_reads,
    garbled,
    is_utf8,
    refuse_non_text,
    scan_bytes,
    scan_text,
    spot_offset,
)
from survey_warehouse.intake.waves import WORKBOOK_FORMATS, WaveSpec

CHUNK_ROWS = 50_000


def arrow_into(con: duckdb.DuckDBPyConnection, table: str, rows: Any, replace: bool = False) -> None:
    """An Arrow table into a DuckDB temporary table: created (replace=True) or appended to."""
    con.complete()  # DuckDB 2 registers nothing while an earlier result is only partly fetched
    con.register("_arrow_rows", rows)
    try:
        if replace:
            con.execute(f"create or replace temp table {table} as select * from _arrow_rows")
        else:
            con.execute(f"insert into {table} select * from _arrow_rows")
    finally:
        con.unregister("_arrow_rows")


@contextlib.contextmanager
def arrow_view(con: duckdb.DuckDBPyConnection, name: str, rows: Any) -> Iterator[None]:
    """An Arrow table queried in place under `name` for the duration (no copy into DuckDB's memory)."""
    con.complete()
    con.register(name, rows)
    try:
        yield
    finally:
        con.unregister(name)


def drop_temp(con: duckdb.DuckDBPyConnection, *names: str) -> None:
    """Drop temporary tables or views of the loader, whichever each is."""
    con.complete()
    for name in names:
        kinds = con.execute(
            "select 'view' from duckdb_views() where temporary and view_name = ? union all "
            "select 'table' from duckdb_tables() where temporary and table_name = ?",
            [name, name],
        ).fetchall()
        for (kind,) in kinds:
            con.execute(f"drop {kind} if exists temp.{name}")


def max_cell_bytes() -> int:
    """The largest cell the loader accepts (SURVEY_MAX_CELL_BYTES, default 16 MiB): above it a file is refused."""
    return int(os.environ.get("SURVEY_MAX_CELL_BYTES", str(16 << 20)))


@dataclass
class Grid:
    """The delivered file as the temporary table `grid` in a DuckDB connection."""

    header: list[str]
    header_row: int
    rows: int  # data rows (blank rows are not data)
    reader: str  # how the file was read, for the load registry
    extra_cells: int = 0
    ends_with_newline: bool = True  # a text file whose last line is cut off may be incomplete
    notes: list[str] = field(default_factory=list)
    question_texts: list[str | None] | None = None  # each column's question as the file words it (SPSS labels)

    @property
    def questions(self) -> list[str | None]:
        """Each header column's question as the file words it, None where it does not."""
        return list(self.question_texts or [None] * len(self.header))

    @property
    def width(self) -> int:
        return len(self.header)


def read_grid(spec: WaveSpec, con: duckdb.DuckDBPyConnection, scratch: Path) -> Grid:
    """Read the wave's file into the temporary tables `grid` and `grid_extra`, or raise WaveFileError."""
    path = spec.file
    if not path.exists():
        raise WaveFileError(path, "file not found; check 'file' in the wave spec")
    if path.is_dir():
        raise WaveFileError(path, "is a folder, not a file; point 'file' in the wave spec at the export itself")
    size = path.stat().st_size
    if size == 0:
        raise WaveFileError(path, "the file is empty (0 bytes); ask for the export again")
    with open(path, "rb") as f:
        head = f.read(8192)
    if spec.format in WORKBOOK_FORMATS:
        from survey_warehouse.intake.workbook import read_workbook

        return read_workbook(spec, con, head)
    if spec.format == "sav":
        from survey_warehouse.intake.spss import read_sav

        return read_sav(spec, con, head)
    refuse_non_text(spec, head)
    return _read_csv(spec, con, scratch)


# ------------------------------------------------------------------------------------------ CSV


def _read_csv(spec: WaveSpec, con: duckdb.DuckDBPyConnection, scratch: Path) -> Grid:
    path = spec.file
    with open(path, "rb") as f:
        head = f.read(8192)
    other = bom_conflict(spec, head)
    if other:
        raise WaveFileError(
            path,
            f"the file is {other.upper().replace('-SIG', '')} text, but the wave spec says "
            f"encoding: {spec.encoding}; set encoding: {other} in the spec",
        )
    utf8 = codecs.lookup(spec.encoding).name in ("utf-8", "utf-8-sig", "ascii")
    stats = scan_bytes(path) if utf8 else scan_text(spec, scratch)
    try:
        if stats.nul is not None:
            first = f"at byte {spot_offset(stats.nul)} of the file" if stats.nul.offset is not None else "on this row"
            raise WaveFileError(
                path,
                f"the file holds {stats.nuls} NUL (zero) bytes, the first {first}: it is damaged (e.g. a block "
                "of zeros from an interrupted copy); ask for the file again",
                row=stats.nul.row,
                column=column_at(spec, stats.nul.prefix),
            )
        if not utf8 and is_utf8(path):
            raise WaveFileError(
                path,
                f"the file is UTF-8 text, but the wave spec says encoding: {spec.encoding}, "
                "which would turn 'ä' into 'Ã¤': set encoding: utf-8-sig in the spec",
            )
        if stats.mojibake is not None:
            raise WaveFileError(
                path,
                f"the text is garbled the way UTF-8 read as Windows-1252 is ({garbled(stats.mojibake)}): the "
                "export was converted twice; ask for a clean export",
                row=stats.mojibake.row,
                column=column_at(spec, stats.mojibake.prefix),
            )
        text_path = stats.transcoded or path
        text_encoding = "utf-8-sig"
        hint = _separator_hint(text_path)
        spec, notes = _honour_separator_hint(spec, text_path, hint)
        try:
            header, header_lines = _csv_header(spec, text_path, text_encoding)
        except UnicodeDecodeError:
            scan_text(spec, scratch)  # names the row and the encoding that would read the file
            raise
        if stats.quotes % 2:
            _unterminated_quote(spec, text_path, text_encoding, header)
        # DuckDB's reader takes a regular file; not one with Excel's hint line (with a byte order mark before a
        # quoted `"sep=,"` it skips every row), and its result is not taken when it found no row in a file with
        # lines below the header
        regular = header_lines == spec.header_row and stats.blank_lines == 0 and hint is None
        grid = _duckdb_grid(spec, con, text_path, header, spec.header_row) if regular else None
        if grid is not None and grid.rows == 0 and stats.lines > header_lines:
            grid = None
        if grid is None:
            if utf8:
                scan_text(spec, scratch)  # DuckDB refused the file: a byte that is not UTF-8 is named here
            grid = _python_grid(spec, con, text_path, text_encoding, header)
        grid.ends_with_newline = stats.ends_with_newline
        grid.notes.extend([*notes, *_answers_above_the_header(spec, text_path, header)])
        _cut_off(spec, con, grid)
        _stray_quotes(spec, con, header)
        return grid
    finally:
        if stats.transcoded is not None:
            stats.transcoded.unlink(missing_ok=True)


# Excel's delimiter hint: a first line `sep=;` that Excel reads and hides ("CSV for Excel" exports write it)
SEPARATOR_HINT = re.compile(r'\ufeff?"?sep=(.)"?[,;\t|]*\r?\n?', re.IGNORECASE)
# how far down a file a header is looked for when it is not on the row the wave spec names
HEADER_SEARCH_ROWS = 30
TITLE_LINES_SHOWN = 5  # a title block above the header is quoted in the message up to this many lines


def _separator_hint(text_path: Path) -> str | None:
    """The delimiter Excel's `sep=` first line names, or None."""
    with open(text_path, encoding="utf-8-sig", errors="replace", newline="") as f:
        first = f.readline(64)
    found = SEPARATOR_HINT.fullmatch(first)
    return found.group(1) if found else None


def _honour_separator_hint(spec: WaveSpec, text_path: Path, hint: str | None) -> tuple[WaveSpec, list[str]]:
    """A file that starts with Excel's `sep=` line is read with the delimiter it names, and its header is the row
    below it (or the spec's header_row where the spec already counts the hint); each departure from the spec is
    said in a note. A hint the file contradicts (with it the header lacks the mapped columns, with the spec's
    delimiter it has them) is not followed. Rows keep their numbers in the file as text, the hint being row 1."""
    if hint is None:
        return spec, []
    import dataclasses

    wanted = {match_key(c) for c in spec.columns}

    def header_row_with(delimiter: str) -> int | None:
        rows = _first_rows(dataclasses.replace(spec, delimiter=delimiter), text_path, spec.header_row + 1)
        for row in (spec.header_row, spec.header_row + 1):
            if len(rows) >= row and wanted <= {match_key(c) for c in rows[row - 1]}:
                return row
        return None

    hinted = f"the first line is Excel's delimiter hint 'sep={hint}'"
    found = header_row_with(hint)
    if found is None and hint != spec.delimiter and header_row_with(spec.delimiter) is not None:
        found = header_row_with(spec.delimiter)
        note = (
            f"{spec.file.name}: {hinted}, but the file is not written with {hint!r}: read with the "
            f"{spec.delimiter!r} of {spec.name}"
        )
        return dataclasses.replace(spec, header_row=found or spec.header_row + 1), [note]
    if found is None:  # neither reads the header: the spec's delimiter, so that the message speaks of the spec
        return dataclasses.replace(spec, header_row=spec.header_row + 1), []
    notes = []
    if hint != spec.delimiter:
        notes.append(
            f"{spec.file.name}: {hinted}, so the file was read with {hint!r}, not the {spec.delimiter!r} of "
            f"{spec.name}; set delimiter: {hint!r} there"
        )
    if found != spec.header_row:
        notes.append(
            f"{spec.file.name}: {hinted} (Excel hides it), so the header is row {found} of the file; row numbers "
            "count the hint as row 1"
        )
    return dataclasses.replace(spec, delimiter=hint, header_row=found), notes


def _first_rows(spec: WaveSpec, text_path: Path, count: int, encoding: str = "utf-8-sig") -> list[list[str]]:
    """The file's first `count` rows as CSV cells (fewer when it is shorter or stops parsing)."""
    rows: list[list[str]] = []
    with open(text_path, encoding=encoding, errors="replace", newline="") as f:
        reader = _csv_reader(f, spec)
        with contextlib.suppress(csv.Error):
            for cells in itertools.islice(reader, count):
                rows.append([c.strip() for c in cells])
    return rows


def _header_elsewhere(spec: WaveSpec) -> str | None:
    """When the header is not on the row the spec names: the row within the first HEADER_SEARCH_ROWS that holds
    every mapped column, and the lines above it (a title block; never a respondent's row), for the message."""
    if spec.format != "csv" or not spec.columns:
        return None
    wanted = {match_key(c) for c in spec.columns}
    try:
        rows = _first_rows(spec, spec.file, HEADER_SEARCH_ROWS, spec.encoding)
    except (OSError, UnicodeError, LookupError):
        return None
    found = next((i for i, cells in enumerate(rows, start=1) if wanted <= {match_key(c) for c in cells}), None)
    if found is None or found == spec.header_row:
        return None
    answers = [i for i, cells in enumerate(rows[: found - 1], start=1) if _looks_like_answers(cells, rows[found - 1])]
    if answers:  # never quoted, and no header_row that would leave them out
        return (
            f"Row {found} of the file holds every mapped column, but {_rows_named(answers)} above it look like "
            "answers (an e-mail address, or about as many cells as the header): the file may be two exports "
            "joined, or its header row renamed; ask for a clean export"
        )
    above = [" ".join(c for c in cells if c) for cells in rows[: found - 1]]
    shown_above = "; ".join(f"row {i}: {shown(line[:60]) if line else '(empty)'}" for i, line in enumerate(above, 1))
    return f"Row {found} of the file holds every mapped column: set header_row: {found} in {spec.name}" + (
        f" (above it: {shown_above})" if found > 1 and len(above) <= TITLE_LINES_SHOWN else ""
    )


def _looks_like_answers(cells: list[str], header: list[str]) -> bool:
    """A row that is a respondent's, not a title or another header: an e-mail address, or at least half as many
    cells as the header, most of them not the header's own names."""
    filled = [c for c in cells if c.strip()]
    if any(looks_like_email(c) for c in filled):
        return True
    names = {match_key(h) for h in header}
    return len(filled) >= max(2, len(header) // 2) and sum(match_key(c) in names for c in filled) < len(filled) / 2


def _rows_named(numbers: list[int]) -> str:
    return f"row {numbers[0]}" if len(numbers) == 1 else f"rows {numbers[0]}-{numbers[-1]}"


def _answers_above_the_header(spec: WaveSpec, text_path: Path, header: list[str]) -> list[str]:
    """A note when rows above the header look like answers: they are not loaded (a header_row set too far down)."""
    if spec.header_row <= 1:
        return []
    rows = _first_rows(spec, text_path, spec.header_row - 1)
    answers = [i for i, cells in enumerate(rows, start=1) if _looks_like_answers(cells, header)]
    if not answers:
        return []
    return [
        f"{spec.file.name}: {_rows_named(answers)} above the header (header_row: {spec.header_row} in {spec.name}) "
        "look like answers and are not loaded: check header_row, or ask for a clean export"
    ]


def _cut_off(spec: WaveSpec, con: duckdb.DuckDBPyConnection, grid: Grid) -> None:
    """A file whose last line ends without a line break inside a row that is too short was cut off in transfer:
    what is missing cannot be known, so the whole file is refused."""
    if grid.ends_with_newline or grid.rows == 0:
        return
    last = con.execute(
        "select source_row_number, cell_count from grid order by source_row_number desc limit 1"
    ).fetchall()
    if last and last[0][1] < grid.width:
        row, cells = last[0]
        raise WaveFileError(
            spec.file,
            f"the file ends in the middle of this row ({cells} of {grid.width} cells, no "
            "line break at the end): it was cut off in transfer, and what is missing "
            "cannot be known; ask for the complete file",
            row=row,
            column=shown(grid.header[max(cells - 1, 0)]),
        )


def _csv_reader(f: Any, spec: WaveSpec) -> Any:  # csv's reader: iterates rows, counts line_num
    csv.field_size_limit(max_cell_bytes())
    return csv.reader(f, delimiter=spec.delimiter, quotechar='"', doublequote=True, strict=False)


def _csv_header(spec: WaveSpec, text_path: Path, encoding: str) -> tuple[list[str], int]:
    """The header row's cells and the number of physical lines up to its end."""
    with open(text_path, encoding=encoding, newline="") as f:
        reader = _csv_reader(f, spec)
        try:
            for number, cells in enumerate(reader, start=1):
                if number == spec.header_row:
                    return check_header(spec, [c.strip() for c in cells]), reader.line_num
        except csv.Error as exc:
            raise WaveFileError(spec.file, f"the header cannot be read as CSV ({exc})", row=spec.header_row) from None
    raise WaveFileError(
        spec.file,
        f"the file ends before the header row {spec.header_row}; check 'header_row' in the wave spec",
        row=spec.header_row,
    )


def check_header(spec: WaveSpec, header: list[str]) -> list[str]:
    """The mapped columns are in the header, each once (compared by match key)."""
    keys = [match_key(h) for h in header]
    for column in spec.columns:
        key = match_key(column)
        positions = [i + 1 for i, k in enumerate(keys) if k == key]
        if len(positions) > 1:
            raise WaveFileError(
                spec.file,
                f"the header has {len(positions)} columns named {shown(column)} (columns "
                f"{', '.join(map(str, positions))}): the file does not say which one "
                "holds the answers; ask for a corrected export",
                row=spec.header_row,
                column=shown(column),
            )
        if not positions:
            raise WaveFileError(
                spec.file,
                f"mapped column {shown(column)} is not in the header. {_missing_column_hint(spec, column, header)}",
                row=spec.header_row,
                column=shown(column),
            )
    return header


def _missing_column_hint(spec: WaveSpec, column: str, header: list[str]) -> str:
    return _header_elsewhere(spec) or _header_row_hint(spec, column, header)


def _header_row_hint(spec: WaveSpec, column: str, header: list[str]) -> str:
    if any(looks_like_email(h) for h in header):  # its cells are a respondent's: none is quoted
        return (
            f"Row {spec.header_row} holds an e-mail address, so it is an answer, not the header: check 'header_row' "
            f"in {spec.name}"
        )
    if spec.format == "csv":
        if len(header) == 1:
            found = next((d for d in ";,\t|" if d != spec.delimiter and d in header[0]), None)
            if found:
                return f"The header has one column: is the delimiter {found!r} rather than {spec.delimiter!r}?"
        if any(MOJIBAKE.search(h) for h in header):
            return "The header is garbled (Ã¤ for ä): the file is UTF-8; set encoding: utf-8-sig in the wave spec"
        found_encoding = encoding_that_reads(spec)
        if found_encoding:
            return (
                f"Read as {found_encoding} the header has every mapped column: set encoding: {found_encoding} "
                "in the wave spec"
            )
    close = difflib.get_close_matches(column, header, n=1, cutoff=0.6)
    if close:
        return (
            f"The header has {shown(close[0])}: if the column was renamed, map the new name in 'columns' of "
            "the wave spec"
        )
    return "Fix 'columns' in the wave spec, or ask for a file with the agreed columns"


def _unterminated_quote(spec: WaveSpec, text_path: Path, encoding: str, header: list[str]) -> None:
    """An odd number of quote marks: the file may end inside a quoted cell (cut off, or a stray quote mark)."""
    with open(text_path, encoding=encoding, newline="") as f:
        reader = _csv_reader(f, spec)
        last: tuple[int, int, list[str]] = (0, 1, [])
        start_line = 1
        try:
            for number, cells in enumerate(reader, start=1):
                last = (number, start_line, cells)
                start_line = reader.line_num + 1
        except csv.Error:
            return  # the careful reader names the row
        end_line = reader.line_num
    number, first_line, cells = last
    with open(text_path, encoding=encoding, newline="") as f:
        tail = "".join(itertools.islice(f, first_line - 1, None))
    try:
        list(csv.reader(io.StringIO(tail, newline=""), delimiter=spec.delimiter, strict=True))
        return  # the quote marks are literal characters inside cells, not an open quoted cell
    except csv.Error as exc:
        if "unexpected end of data" not in str(exc):
            return
    column = shown(header[len(cells) - 1]) if 0 < len(cells) <= len(header) else None
    swallowed = end_line - first_line
    row_like = sum(1 for line in tail.splitlines()[1:] if line.count(spec.delimiter) >= len(header) - 1)
    if swallowed > 1 and row_like:
        raise WaveFileError(
            spec.file,
            f"a quote mark opened in this row is never closed, so the {swallowed} lines "
            f"after it ({row_like} of them whole rows) were read as one cell: a stray "
            'quote mark (") in the file; fix or re-export the file',
            row=number,
            column=column,
        )
    raise WaveFileError(
        spec.file,
        "the file ends inside a quoted cell of this row: it was cut off (an incomplete "
        "download or copy); ask for the complete file",
        row=number,
        column=column,
    )


def _duckdb_grid(
    spec: WaveSpec, con: duckdb.DuckDBPyConnection, text_path: Path, header: list[str], header_row: int
) -> Grid | None:
    """DuckDB's parallel CSV reader, strict: every row as wide as the header. None when the file is irregular."""
    columns = ", ".join(f"'c{i}': 'VARCHAR'" for i in range(1, len(header) + 1))
    delimiter = spec.delimiter.replace("'", "''")
    try:
        drop_temp(con, "grid_wide")
        con.execute(
            f"create temp table grid_wide as select * from read_csv(?, header = false, skip = {header_row}, "
            f"delim = '{delimiter}', quote = '\"', escape = '\"', columns = {{{columns}}}, auto_detect = false, "
            f"strict_mode = true, max_line_size = {max_cell_bytes()}, encoding = 'utf-8')",
            [str(text_path)],
        )
    except duckdb.Error:
        return None
    # empty cells are null (every row has the header's width here); rows with nothing in them are not data
    blank = " and ".join(f"coalesce(trim(c{i}), '') = ''" for i in range(1, len(header) + 1))
    con.execute(f"delete from grid_wide where {blank}")
    # a view, not a copy: rowid keeps the file's order (deleting rows does not renumber the others)
    drop_temp(con, "grid")
    cells = ", ".join(f"c{i}" for i in range(1, len(header) + 1))
    con.execute(
        f"create temp view grid as select cast(rowid + {header_row + 1} as integer) as source_row_number, "
        f"{len(header)} as cell_count, {cells} from grid_wide"
    )
    _empty_extra(con)
    rows = con.execute("select count(*) from grid").fetchall()[0][0]
    return Grid(header, header_row, rows, reader="DuckDB read_csv (parallel)")


def _empty_extra(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        "create or replace temp table grid_extra (source_row_number integer, column_position integer, "
        "cell_value varchar)"
    )


def _python_grid(
    spec: WaveSpec, con: duckdb.DuckDBPyConnection, text_path: Path, encoding: str, header: list[str]
) -> Grid:
    """Python's csv module, record by record: exact rows for blank lines, ragged rows and multi-line cells."""
    limit = max_cell_bytes()
    with open(text_path, encoding=encoding, newline="") as f:
        reader = _csv_reader(f, spec)
        numbered = enumerate(reader, start=1)

        def rows() -> Iterator[tuple[int, list[str | None]]]:
            try:
                for number, cells in numbered:
                    if number > spec.header_row:
                        yield number, [c if c != "" else None for c in cells]
            except csv.Error as exc:
                number = reader.line_num
                if "field larger than field limit" in str(exc):
                    raise WaveFileError(
                        spec.file,
                        f"a cell is larger than {limit:,} bytes (SURVEY_MAX_CELL_BYTES): "
                        "is it really survey answers? Raise the limit if so",
                        row=number,
                    ) from None
                raise WaveFileError(spec.file, f"not readable as CSV ({exc})", row=number) from None

        return fill_grid(con, header, spec.header_row, rows(), reader="Python csv (row by row)")


MIN_COLUMNS_FOR_SWALLOWED_ROWS = 4


def _stray_quotes(spec: WaveSpec, con: duckdb.DuckDBPyConnection, header: list[str]) -> None:
    """A cell holding whole rows of the file: a stray quote mark made the reader swallow them."""
    width = len(header)
    if width < MIN_COLUMNS_FOR_SWALLOWED_ROWS:
        return  # too few columns to tell a swallowed row from a comment with commas
    multiline = " or ".join(f"c{i} like '%' || chr(10) || '%'" for i in range(1, width + 1))
    for row, *cells in con.execute(
        f"select * exclude (cell_count) from grid where {multiline} order by source_row_number"
    ).fetchall():
        for position, cell in enumerate(cells, start=1):
            lines = (cell or "").splitlines()[1:]
            if any(line.count(spec.delimiter) >= width - 1 for line in lines):
                raise WaveFileError(
                    spec.file,
                    f"a quote mark opened in this cell is closed only {len(lines)} lines "
                    "later, so whole rows of the file were read as this one cell: a "
                    'stray quote mark ("); fix or re-export the file',
                    row=row,
                    column=shown(header[position - 1]),
                )


def fill_grid(
    con: duckdb.DuckDBPyConnection,
    header: list[str],
    header_row: int,
    rows: Iterator[tuple[int, list[Any]]],
    reader: str,
    chunk_rows: int = CHUNK_ROWS,
    ragged: bool = True,
) -> Grid:
    """Rows (number, cells) into `grid` and `grid_extra`, a chunk of rows at a time through Arrow. `ragged`: whether
    a row with cells right of the header is ragged (a text file's record); a sheet's row is not (its cells right of
    the header are kept all the same)."""
    import pyarrow as pa

    width = len(header)
    drop_temp(con, "grid")
    cell_columns = ", ".join(f"c{i} varchar" for i in range(1, width + 1))
    con.execute(f"create temp table grid (source_row_number integer, cell_count integer, {cell_columns})")
    _empty_extra(con)
    total = extra_total = 0
    while True:
        chunk = list(itertools.islice(rows, chunk_rows))
        if not chunk:
            break
        numbers, counts, extra = [], [], []
        padded = []
        for number, delivered in chunk:
            cells = list(delivered)
            while len(cells) > width and cells[-1] is None:
                cells.pop()  # empty cells right of the header (spreadsheets pad rows) are not data
            if all(c is None or str(c).strip() == "" for c in cells):
                continue  # blank rows carry nothing
            numbers.append(number)
            counts.append(len(cells) if ragged else min(len(cells), width))
            # a cell right of the header is kept where it holds something: a sheet's empty cells between the
            # header's end and a far value (XFD60) are no cells of the file
            extra += [(number, width + i + 1, v) for i, v in enumerate(cells[width:]) if v is not None]
            padded.append(cells[:width] + [None] * (width - len(cells)))
        if not padded:
            continue
        columns = {"source_row_number": pa.array(numbers, pa.int32()), "cell_count": pa.array(counts, pa.int32())}
        for i, values in enumerate(zip(*padded, strict=True), start=1):
            columns[f"c{i}"] = pa.array(values, pa.string())
        arrow_into(con, "grid", pa.table(columns))
        if extra:
            arrow_into(
                con,
                "grid_extra",
                pa.table(
                    {
                        "source_row_number": pa.array([e[0] for e in extra], pa.int32()),
                        "column_position": pa.array([e[1] for e in extra], pa.int32()),
                        "cell_value": pa.array([e[2] for e in extra], pa.string()),
                    }
                ),
            )
        total += len(padded)
        extra_total += len(extra)
    return Grid(header, header_row, total, reader=reader, extra_cells=extra_total)
