"""The error values (#N/A, #DIV/0!) of a legacy Excel 97-2003 workbook's (.xls) and of an Excel binary workbook's
(.xlsb) sheet, which calamine reads as empty cells: found in the sheet's binary records, as the .xlsx scan finds
them in the sheet's XML (survey_warehouse.intake.workbook), so that each lands as the sheet shows it.

- An .xls is an OLE2 compound file whose `Workbook` stream is a run of BIFF records (type and size, two bytes
  each): the workbook's globals name each sheet and where its records begin (BoundSheet8), and a sheet's cells
  follow its BOF record to its EOF (an embedded chart's records, between a BOF and an EOF of their own, are not its
  cells). An error is a BoolErr record whose fError is 1, or a Formula record whose cached result is an error; the
  records are walked only when a look at the sheet's bytes finds one of those.
- An .xlsb is a zip whose parts are BIFF12 records (type and size as 7-bit varints): xl/workbook.bin names each
  sheet and its relationship (BrtBundleSh), xl/_rels/workbook.bin.rels the part it is in. An error is a
  BrtCellError or a BrtFmlaError record, placed in the row of the BrtRowHdr before it; the sheet's part is
  streamed, and walked only when a look at its bytes finds one of those.

Before the reader opens the file, `refuse_far_cells` looks over the cell records of every sheet of an .xls (the
reader builds each one when it opens the file) and of the named sheet of an .xlsb: a sheet whose cells reach far
beyond what they fill (one cell typed at the sheet's last row and column) or too large however full is refused as in
an .xlsx (survey_warehouse.intake.workbook.refuse_spread), for the reader would hold it as a dense rectangle; and an
.xls sheet whose DIMENSIONS record claims more rows or columns than an .xls sheet has, for which the reader would
take memory before it reads a cell.

Both put the error's code (BErr, the same in both formats) in a byte of its own. A formula without its result does
not exist in either: its result is part of its record (a program that does not calculate, such as xlwt, stores an
empty text, read as an empty cell like Excel's `=""`).
"""

from __future__ import annotations

import contextlib
import io
import mmap
import re
import struct
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from survey_warehouse.errors import WaveFileError
from survey_warehouse.intake.matching import shown
from survey_warehouse.intake.workbook import AGAIN, _matching_sheets, _relationship_targets, refuse_spread

# BErr ([MS-XLS] 2.5.198.2, [MS-XLSB] 2.5.98.2): an error's code, and the text the sheet shows for it
ERROR_TEXTS = {
    0x00: "#NULL!",
    0x07: "#DIV/0!",
    0x0F: "#VALUE!",
    0x17: "#REF!",
    0x1D: "#NAME?",
    0x24: "#NUM!",
    0x2A: "#N/A",
    0x2B: "#GETTING_DATA",
}

Shown = dict[int, list[tuple[int, str]]]  # row -> [(column, text)], both 1-based, as read_workbook puts them back
# What a scan finds: (column, row) of each error value whose code no version of the format knows (refused, not
# guessed at), and the others as the sheet shows them
Findings = tuple[list[tuple[int, int]], Shown]

# BIFF8 and BIFF5 record types ([MS-XLS] 2.3)
BOF, EOF, BOUNDSHEET, CODEPAGE, BOOLERR, FORMULA = 0x0809, 0x000A, 0x0085, 0x0042, 0x0205, 0x0006
BIFF8 = 0x0600
BOOLERR_SIZE = 8  # row, column, XF (2 bytes each), the value or code, fError
FORMULA_RESULT_END = 14  # row, column, XF, then the cached result's 8 bytes
ERROR_RESULT = 2  # the first byte of a cached result that is an error (its code two bytes on)
# A BoolErr record holding an error (row, column, XF, the code, fError = 1), and a Formula record whose cached
# result is an error (row, column, XF, then 02 00 code 00 00 00 FF FF), of any code: only a sheet with such bytes is
# walked
XLS_ERROR_HINT = re.compile(rb"\x05\x02\x08\x00[\s\S]{7}\x01|\x06\x00[\s\S]{8}\x02[\s\S]{5}\xff\xff")

# BIFF12 record types ([MS-XLSB] 2.3)
ROW_HEADER, CELL_ERROR, FORMULA_ERROR = 0x0000, 0x0003, 0x000B
BEGIN_SHEET_DATA, END_SHEET_DATA, BUNDLE_SHEET, END_BUNDLE_SHEETS = 0x0091, 0x0092, 0x009C, 0x0090
SHEET_DATA_RECORDS = frozenset({BEGIN_SHEET_DATA, END_SHEET_DATA, ROW_HEADER, CELL_ERROR, FORMULA_ERROR})
# A BrtCellError (size 9) or a BrtFmlaError (size 11 or more, one to four bytes) of a column under 16,384, then its
# style (4 bytes) and its code, of any code: only a sheet part with such bytes is walked
XLSB_ERROR_HINT = re.compile(
    rb"(?:\x03\x09|\x0b(?:[\x0b-\x7f]|[\x80-\xff]{1,3}[\x00-\x7f]))[\s\S][\x00-\x3f]\x00\x00[\s\S]{5}"
)
HINT_BYTES = 16  # longer than the .xlsb hint's match (the .xls hint is searched for in the whole stream)
CELL_BYTES = 8  # a BIFF12 cell record's Cell (its column, its style), which its value follows
ROW_BYTES = 4  # BrtRowHdr's row
RECORD_HEAD_BYTES = 6  # a BIFF12 record's type and size take at most this many bytes
MORE = 0x80  # a byte of a record's type or size that another byte follows (its other 7 bits are the value's)
NO_STRING = 0xFFFFFFFF  # the count of an XLNullableWideString that is none
CHUNK = 1 << 20


def _unreadable(path: Path, what: str) -> WaveFileError:
    """The verdict on a workbook whose records cannot be walked: its error values would be read as empty."""
    return WaveFileError(
        path,
        f"the workbook's records cannot be read for its error values (#N/A), which would otherwise be read as "
        f"empty ({what}); {AGAIN}",
    )


# ------------------------------------------------------------------------------------------------ .xls


def xls_errors(path: Path, sheet: str, from_row: int) -> Findings:
    """The named sheet's error values from `from_row` down, by row and column (1-based), as the sheet shows them.
    The file is mapped, not read into memory; the sheet's records are walked only when its bytes hold an error."""
    with _xls_workbook(path) as (stream, end, names, starts):
        start = _sheet_start(names, starts, sheet)
        if start is None:  # the reader's own verdict names the sheets
            return [], {}
        sheet_end = min((s for s in starts if s > start), default=end)
        if not XLS_ERROR_HINT.search(stream, start, sheet_end):  # the usual case
            return [], {}
        return _xls_error_cells(stream, start, end, from_row)


@contextlib.contextmanager
def _xls_workbook(path: Path) -> Iterator[tuple[Any, int, list[str], list[int]]]:
    """The workbook's stream, mapped: its bytes, where it ends, and its sheets' names and where each one's records
    begin; a record running past the stream's end, met while it is walked, is a verdict."""
    with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as whole:
        stream, base, size = _workbook_stream(path, whole)
        try:
            names, starts = _xls_sheets(stream, base, base + size)
            yield stream, base + size, names, [base + start for start in starts]
        except (struct.error, IndexError) as exc:  # a record that runs past the stream's end
            raise _unreadable(path, f"a record of it is cut off: {type(exc).__name__}") from None


def _sheet_start(names: list[str], starts: list[int], sheet: str) -> int | None:
    """Where the records of the sheet the spec names begin, found as the reader finds it; None when it is not one."""
    named = _matching_sheets(names, sheet)
    return starts[names.index(named[0])] if len(named) == 1 else None


def _sheet_records(stream: Any, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """A sheet's own records from its BOF to its EOF (not an embedded chart's, between a BOF and an EOF of their
    own): each one's type, where its data begins and its size."""
    depth = 0
    for kind, at, size in _biff_records(stream, start, end):
        if kind == BOF:
            depth += 1
        elif kind == EOF:
            depth -= 1
            if depth <= 0:
                return
        elif depth == 1:
            yield kind, at, size


def _workbook_stream(path: Path, whole: Any) -> tuple[Any, int, int]:
    """The compound file's Workbook stream (Book in an Excel 5 file): the bytes it lies in, where it begins there and
    its size. A stream stored in one run of sectors is not copied."""
    from xlrd.compdoc import CompDoc

    try:
        document = CompDoc(whole, logfile=io.StringIO())
        for name in ("Workbook", "Book"):
            found, base, size = document.locate_named_stream(name)
            if found is not None:
                return found, base, size
    except Exception as exc:  # xlrd's CompDocError, or an index or struct error on a damaged directory
        raise _unreadable(path, f"its compound file cannot be read: {type(exc).__name__}") from None
    raise _unreadable(path, "it has no Workbook stream")


def _biff_records(stream: Any, at: int, end: int) -> Iterator[tuple[int, int, int]]:
    """Each BIFF record from `at`: its type, where its data begins and its size."""
    unpack = struct.unpack_from
    while at + 4 <= end:
        kind, size = unpack("<HH", stream, at)
        yield kind, at + 4, size
        at += 4 + size


def _xls_sheets(stream: Any, start: int, end: int) -> tuple[list[str], list[int]]:
    """The workbook globals' sheets: their names, as the reader decodes them, and where each one's records begin
    (from the start of the stream)."""
    names: list[str] = []
    starts: list[int] = []
    version, encoding = BIFF8, "cp1252"
    for kind, at, size in _biff_records(stream, start, end):
        if kind == BOF:
            version = struct.unpack_from("<H", stream, at)[0]
        elif kind == CODEPAGE:
            encoding = f"cp{struct.unpack_from('<H', stream, at)[0]}"
        elif kind == BOUNDSHEET:
            data = bytes(stream[at : at + size])
            starts.append(struct.unpack_from("<I", data)[0])
            length = data[6]
            if version == BIFF8:  # ShortXLUnicodeString: its characters in one byte (Latin-1) or two (UTF-16)
                wide = data[7] & 1
                name = data[8 : 8 + length * (1 + wide)].decode("utf-16-le" if wide else "latin-1")
            else:  # Excel 5: bytes in the workbook's code page
                try:
                    name = data[7 : 7 + length].decode(encoding)
                except (LookupError, UnicodeDecodeError):
                    name = data[7 : 7 + length].decode("latin-1")
            names.append(name.replace("\0", ""))  # as the reader drops a name's NUL characters
        elif kind == EOF:
            break
    return names, starts


def _xls_error_cells(stream: Any, start: int, end: int, from_row: int) -> Findings:
    """The sheet's error cells."""
    findings: Findings = ([], {})
    for kind, at, size in _sheet_records(stream, start, end):
        if kind == BOOLERR and size >= BOOLERR_SIZE and stream[at + 7] == 1:
            row, column = (n + 1 for n in struct.unpack_from("<HH", stream, at))
            _found(findings, row, column, stream[at + 6], from_row)
        elif (
            kind == FORMULA
            and size >= FORMULA_RESULT_END
            and stream[at + 6] == ERROR_RESULT
            and stream[at + 12 : at + 14] == b"\xff\xff"
        ):
            row, column = (n + 1 for n in struct.unpack_from("<HH", stream, at))
            _found(findings, row, column, stream[at + 8], from_row)
    return findings


NUMBER, RK, MULRK = 0x0203, 0x027E, 0x00BD
Negatives = dict[int, list[tuple[int, float]]]  # row -> [(column, the number)], both 1-based


def xls_negative_numbers(path: Path, sheet: str, from_row: int) -> Negatives:
    """The named sheet's negative numbers from `from_row` down (stored numbers, RK numbers, formulas' cached
    numbers): a negative duration in a cell formatted as a time, which the reader wraps into a time of day, is read
    from them. Walked only when the reader handed on a time."""
    with _xls_workbook(path) as (stream, end, names, starts):
        start = _sheet_start(names, starts, sheet)
        return {} if start is None else _xls_negatives(stream, start, end, from_row)


def _rk(value: int) -> float:
    """An RK number ([MS-XLS] 2.5.217): a 30-bit integer or the top 30 bits of a double, perhaps divided by 100."""
    number = (
        float(value >> 2) if value & 2 else struct.unpack("<d", struct.pack("<Q", (value & ~3 & 0xFFFFFFFF) << 32))[0]
    )
    return number / 100 if value & 1 else number


def _xls_negatives(stream: Any, start: int, end: int, from_row: int) -> Negatives:
    found: Negatives = {}

    def keep(row: int, column: int, number: float) -> None:
        if number < 0 and row + 1 >= from_row:
            found.setdefault(row + 1, []).append((column + 1, number))

    for kind, at, size in _sheet_records(stream, start, end):
        if kind == NUMBER and size >= FORMULA_RESULT_END:
            row, column = struct.unpack_from("<HH", stream, at)
            keep(row, column, struct.unpack_from("<d", stream, at + 6)[0])
        elif kind == RK and size >= 10:  # noqa: PLR2004 (row, column, XF, the RK number)
            row, column = struct.unpack_from("<HH", stream, at)
            keep(row, column, _rk(struct.unpack_from("<i", stream, at + 6)[0]))
        elif kind == MULRK and size >= 12:  # noqa: PLR2004 (row, first column, XF and RK pairs, last column)
            row, first = struct.unpack_from("<HH", stream, at)
            for n in range((size - 6) // 6):
                keep(row, first + n, _rk(struct.unpack_from("<i", stream, at + 4 + 6 * n + 2)[0]))
        elif kind == FORMULA and size >= FORMULA_RESULT_END and stream[at + 12 : at + 14] != b"\xff\xff":
            row, column = struct.unpack_from("<HH", stream, at)
            keep(row, column, struct.unpack_from("<d", stream, at + 6)[0])
    return found


def _found(findings: Findings, row: int, column: int, code: int, from_row: int) -> None:
    """An error cell (1-based row and column) of the answers, from `from_row` down, as the sheet shows it, or among
    those of an unknown code."""
    unknown, shown_cells = findings
    if row < from_row:
        return
    if code in ERROR_TEXTS:
        shown_cells.setdefault(row, []).append((column, ERROR_TEXTS[code]))
    else:
        unknown.append((column, row))


# ------------------------------------------------------------------------------------------------ .xlsb


def xlsb_errors(path: Path, sheet: str, from_row: int) -> Findings:
    """The named sheet's error values from `from_row` down, by row and column (1-based), as the sheet shows them.
    Its part is streamed from the archive, and walked only when its bytes hold an error."""
    part = _xlsb_sheet_part(path, sheet)
    if part is None or not _holds_hint(path, part, XLSB_ERROR_HINT):  # the usual case
        return [], {}
    return _xlsb_error_cells(path, part, from_row)


def _xlsb_error_cells(path: Path, part: str, from_row: int) -> Findings:
    """The sheet's error cells, walking its part's records (those of its sheet data: BrtBeginSheetData to
    BrtEndSheetData, as the reader reads its cells)."""
    findings: Findings = ([], {})
    row, in_data = 0, False
    with zipfile.ZipFile(path) as archive, archive.open(part) as stream:
        for kind, data in _xlsb_records(path, stream, SHEET_DATA_RECORDS):
            if kind == BEGIN_SHEET_DATA:
                in_data = True
            elif kind == END_SHEET_DATA:
                break
            elif not in_data:
                continue
            elif kind == ROW_HEADER and len(data) >= ROW_BYTES:
                row = struct.unpack_from("<I", data)[0] + 1
            elif kind != ROW_HEADER and len(data) > CELL_BYTES:  # an error cell
                _found(findings, row, struct.unpack_from("<I", data)[0] + 1, data[CELL_BYTES], from_row)
    return findings


def _xlsb_records(path: Path, stream: IO[bytes], wanted: frozenset[int]) -> Iterator[tuple[int, bytes]]:
    """Each BIFF12 record of a part of the kinds wanted, read a chunk at a time: its type (one or two bytes of 7
    bits) and its data, whose size is one to four bytes of 7 bits. The others are stepped over, unread."""
    buffer, at = b"", 0
    while True:
        if len(buffer) - at < RECORD_HEAD_BYTES:
            buffer, at = buffer[at:] + stream.read(CHUNK), 0
            if not buffer:
                return
        kind = buffer[at]
        if not kind & MORE and len(buffer) - at > 1 and not buffer[at + 1] & MORE:  # most records: a byte each
            start, size = at + 2, buffer[at + 1]
        else:
            kind, start, size = _record_head(path, buffer, at)
        while start + size > len(buffer):
            more = stream.read(max(CHUNK, start + size - len(buffer)))
            if not more:
                raise _unreadable(path, "its sheet ends in a cut-off record")
            buffer, start, at = buffer[at:] + more, start - at, 0
        if kind in wanted:
            yield kind, buffer[start : start + size]
        at = start + size


def _record_head(path: Path, buffer: bytes, at: int) -> tuple[int, int, int]:
    """A record's type, where its data begins and its size, from its head at `at`."""
    try:
        kind = buffer[at]
        at += 1
        if kind & MORE:
            kind = (kind & ~MORE) | (buffer[at] & ~MORE) << 7
            at += 1
        size = 0
        for shift in (0, 7, 14, 21):
            byte = buffer[at]
            at += 1
            size |= (byte & ~MORE) << shift
            if not byte & MORE:
                break
    except IndexError:
        raise _unreadable(path, "its sheet ends in a cut-off record") from None
    return kind, at, size


def _holds_hint(path: Path, member: str, hint: re.Pattern[bytes]) -> bool:
    """Whether a member of the archive holds bytes the hint matches, read a chunk at a time."""
    tail = b""
    with zipfile.ZipFile(path) as archive, archive.open(member) as part:
        while chunk := part.read(CHUNK):
            window = tail + chunk
            if hint.search(window):
                return True
            tail = window[-HINT_BYTES:]
    return False


def _xlsb_sheet_part(path: Path, sheet: str) -> str | None:
    """The zip member holding the named sheet of an .xlsb (None when the workbook does not name it), by its
    BrtBundleSh records and the workbook's relationships, as an .xlsx's sheet is found by its workbook.xml."""
    try:
        with zipfile.ZipFile(path) as archive:
            targets = _relationship_targets(archive, "xl/_rels/workbook.bin.rels")
            book = io.BytesIO(archive.read("xl/workbook.bin"))
    except Exception:  # a damaged package: calamine's opening says so
        return None
    sheets: list[tuple[str, str | None]] = []  # name, relationship id
    try:
        for kind, data in _xlsb_records(path, book, frozenset({BUNDLE_SHEET, END_BUNDLE_SHEETS})):
            if kind == BUNDLE_SHEET:
                ids, at = _wide_string(data, 8)
                name, _ = _wide_string(data, at)
                sheets.append((name or "", ids))
            elif kind == END_BUNDLE_SHEETS:
                break
    except (struct.error, WaveFileError):  # a damaged workbook part: calamine's opening says so
        return None
    named = _matching_sheets([name for name, _ in sheets], sheet)
    for name, ids in sheets:
        if named == [name]:
            return targets.get(ids)
    return None


def _wide_string(data: bytes, at: int) -> tuple[str | None, int]:
    """An XLNullableWideString at `at` (a count of UTF-16 characters, 0xFFFFFFFF for none, and the characters), and
    where what follows it begins."""
    (count,) = struct.unpack_from("<I", data, at)
    if count == NO_STRING:
        return None, at + 4
    end = at + 4 + 2 * count
    return data[at + 4 : end].decode("utf-16-le", "replace"), end


# ------------------------------------------------------------------------------------------------ far cells

# The records the reader places a cell of, row and column their first 4 bytes (a blank cell, BLANK or MULBLANK, or
# BrtCellBlank, it does not place: it holds nothing of it). An .xls formula's text result is placed from the STRING
# record after it, at the formula's cell; a MULRK is a row's run of cells, its last column in its last 2 bytes.
LABELSST, LABEL, RSTRING = 0x00FD, 0x0204, 0x00D6
XLS_CELLS = frozenset({NUMBER, RK, LABELSST, LABEL, RSTRING, BOOLERR, FORMULA})
MULRK_PAIR = 6  # an XF and an RK number
# BrtCellRk to BrtFmlaBool (a BrtFmlaError the reader skips), the cell's column its first 4 bytes
XLSB_CELLS = frozenset(range(0x0002, 0x000B))
XLSB_LAST_ROW = 0x0010_0000  # the reader ends a sheet at a BrtRowHdr of a row beyond it
Reach = tuple[int, tuple[int, int], tuple[int, int]]  # cells; (column, row) of the last row's and last column's
# A sheet's DIMENSIONS record: the size it records (its last row and column, each plus one), from which the reader
# reserves memory for that many cells before it reads one (40 bytes each). No .xls sheet is larger than 65,536 rows
# by 256 columns (the reservation then under 1 GiB, of memory not written to); a record claiming more is damaged.
DIMENSIONS = 0x0200
DIMENSIONS_BIFF8, DIMENSIONS_BIFF5 = 14, 8  # the record's size at least (Excel 5's rows in 2 bytes)
XLS_ROWS, XLS_COLUMNS = 65_536, 256


def refuse_far_cells(path: Path, delivered: str, sheet: str | None = None) -> None:
    """Before the reader opens the workbook: the verdict on a sheet whose cells reach far beyond what they fill, or
    too large however full (as in an .xlsx), from its cell records: every sheet of an .xls, the named one of an
    .xlsb (when the workbook names it; the reader's opening says otherwise)."""
    if delivered == "xls":
        for name, (cells, lowest, rightmost), (rows, columns) in _xls_reaches(path):
            if rows * columns > XLS_ROWS * XLS_COLUMNS:
                far = f", reaching {_cell_name(lowest)}" + (
                    f" and {_cell_name(rightmost)}" if rightmost[0] > lowest[0] else ""
                )
                raise WaveFileError(
                    path,
                    f"the sheet {shown(name)} records its size (its DIMENSIONS record) as {rows:,} rows by "
                    f"{columns:,} columns, more than an .xls sheet can have ({XLS_ROWS:,} rows by {XLS_COLUMNS} "
                    f"columns), but holds {cells:,} cells{far if cells else ''}: the record is damaged, and the reader "
                    f"would take memory for the size it records; {AGAIN}",
                )
            refuse_spread(path, name, cells, lowest, rightmost)
    elif delivered == "xlsb" and (part := _xlsb_sheet_part(path, sheet or "")):
        refuse_spread(path, sheet, *_xlsb_reach(path, part))


def _cell_name(cell: tuple[int, int]) -> str:
    """A cell's reference (B2) from its (column, row), 1-based."""
    from survey_warehouse.intake.workbook import _column_letters

    return f"{_column_letters(cell[0])}{cell[1]}"


def _xls_reaches(path: Path) -> Iterator[tuple[str, Reach, tuple[int, int]]]:
    """Each sheet's name, how far its cells reach, as the reader places them, and the largest size (rows,
    columns) its DIMENSIONS records claim."""
    with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as whole:
        stream, base, size = _workbook_stream(path, whole)
        try:
            names, starts = _xls_sheets(stream, base, base + size)
            for name, start in zip(names, starts, strict=True):
                yield name, *_xls_reach(stream, base + start, base + size)
        except (struct.error, IndexError):  # a record that runs past the stream's end: the reader cannot open it
            return


def _xls_reach(stream: Any, at: int, end: int) -> tuple[Reach, tuple[int, int]]:
    """How far a sheet's cells reach, walking its records from its BOF to its EOF (an embedded chart's records,
    between a BOF and an EOF of their own, are not its cells), and the largest size (rows, columns) its DIMENSIONS
    records claim (BIFF8's rows in 4 bytes, Excel 5's in 2)."""
    unpack = struct.unpack_from
    cells = depth = 0
    claimed = (0, 0)
    low_row = low_column = right_column = right_row = -1  # 0-based
    while at + 4 <= end:
        kind, size = unpack("<HH", stream, at)
        data, at = at + 4, at + 4 + size
        if kind in XLS_CELLS:
            if depth > 1 or size < 4:  # noqa: PLR2004 (row and column)
                continue
            row, column = unpack("<HH", stream, data)
            cells += 1
        elif kind == MULRK:
            if depth > 1 or size < 6:  # noqa: PLR2004 (row, first column, last column)
                continue
            row, first = unpack("<HH", stream, data)
            (column,) = unpack("<H", stream, data + size - 2)
            if column < first or size != 6 + MULRK_PAIR * (column - first + 1):  # the reader cannot open it
                continue
            cells += column - first + 1
        elif kind == BOF:
            depth += 1
            continue
        elif kind == EOF:
            depth -= 1
            if depth <= 0:
                break
            continue
        else:
            if kind == DIMENSIONS and size >= DIMENSIONS_BIFF5:
                wide = size >= DIMENSIONS_BIFF8  # rwMic, rwMac (4 bytes each), colMic, colMac; else 2 bytes each
                first_row, last_row = unpack("<II" if wide else "<HH", stream, data)
                first_column, last_column = unpack("<HH", stream, data + (8 if wide else 4))
                # as the reader counts them: rows from the first to the last, in 32-bit arithmetic (a first row past
                # the last wraps round to billions); a first column past the last or the sheet's is taken as 0
                rows = (last_row - first_row) % 2**32
                columns = last_column - (first_column if first_column <= min(XLS_COLUMNS - 1, last_column) else 0)
                if last_row < 1 or last_column < 1:  # no last row or column recorded: the reader takes one cell
                    rows = columns = 1
                claimed = max(claimed[0], rows), max(claimed[1], columns)
            continue
        if row > low_row:
            low_row, low_column = row, column
        if column > right_column:
            right_column, right_row = column, row
    return (cells, (low_column + 1, low_row + 1), (right_column + 1, right_row + 1)), claimed


def _xlsb_reach(path: Path, part: str) -> Reach:
    """How far a sheet's cells reach, walking its part's records (those of its sheet data, as the reader reads its
    cells)."""
    cells, row, in_data = 0, 0, False
    low_row = low_column = right_column = right_row = -1  # 0-based
    wanted = XLSB_CELLS | {ROW_HEADER, BEGIN_SHEET_DATA, END_SHEET_DATA}
    try:
        with zipfile.ZipFile(path) as archive, archive.open(part) as stream:
            for kind, data in _xlsb_records(path, stream, wanted):
                if kind == BEGIN_SHEET_DATA:
                    in_data = True
                elif kind == END_SHEET_DATA:
                    break
                elif not in_data or len(data) < ROW_BYTES:
                    continue
                elif kind == ROW_HEADER:
                    row = struct.unpack_from("<I", data)[0]
                    if row > XLSB_LAST_ROW:
                        break
                else:
                    column = struct.unpack_from("<I", data)[0]
                    cells += 1
                    if row > low_row:
                        low_row, low_column = row, column
                    if column > right_column:
                        right_column, right_row = column, row
    except (OSError, EOFError, KeyError, zipfile.BadZipFile, zlib.error, WaveFileError):
        pass  # a damaged part: the reader cannot read past where it is damaged, and its opening says so
    return cells, (low_column + 1, low_row + 1), (right_column + 1, right_row + 1)
