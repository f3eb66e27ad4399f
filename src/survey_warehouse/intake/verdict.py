"""What a delivered wave file really is, judged from its bytes before anything parses it.

An empty file, a zip archive where text was expected, an encrypted or legacy Office file, a UTF-16 file, NUL bytes,
text in another encoding than the spec says, or a file cut off inside a quoted cell each get a verdict in words
(`WaveFileError`, naming the file, row and column), never a library's traceback. The scan of a text file also says
whether it is regular enough for DuckDB's parallel reader (no blank lines, its line ends); the reading into the grid
(survey_warehouse.intake.grid) follows it.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import itertools
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from survey_warehouse.errors import WaveFileError
from survey_warehouse.intake.matching import match_key, shown
from survey_warehouse.intake.waves import WaveSpec

NEWLINE, CARRIAGE_RETURN, QUOTE = ord("\n"), ord("\r"), ord('"')
CHUNK_BYTES = 1 << 20


HEADER_BYTES = 1 << 20  # where the header is looked for when a message names a column


UTF8 = ("utf-8", "utf_8", "utf8", "utf-8-sig", "utf_8_sig", "ascii", "us-ascii")


ALTERNATIVE_ENCODINGS = ("utf-8-sig", "cp1252", "utf-16")


# UTF-8 text read as Windows-1252: 'ä' becomes 'Ã¤', 'ö' 'Ã¶', 'å' 'Ã¥', 'Ä' 'Ã„', 'Ö' 'Ã-', 'Å' 'Ã…', 'é' 'Ã©'
MOJIBAKE = re.compile("Ã[\u0080-\u00bf\u2018-\u203a\u0152-\u0178]")


# What a file is when it is not plain text, by its first bytes ("zip" and "ole2" are looked into further)
SIGNATURES: tuple[tuple[tuple[bytes, ...], str], ...] = (
    ((b"PK\x03\x04", b"PK\x05\x06"), "zip"),
    ((b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",), "ole2"),
    ((b"%PDF",), "a PDF document"),
    ((b"\x1f\x8b",), "a gzip-compressed file"),
    ((b"7z\xbc\xaf",), "a 7-Zip archive"),
    ((b"Rar!",), "a RAR archive"),
    ((b"\x89PNG", b"\xff\xd8\xff", b"GIF8"), "an image"),
    ((b"$FL2", b"$FL3"), "an SPSS data file (.sav)"),
)
SAV = "an SPSS data file (.sav)"


SNIFF_BYTES = 64  # enough of a file's start to tell UTF-16 text without a BOM by its NUL bytes


def container_of(head: bytes) -> str | None:
    """What a file is when it is not plain text, from its first bytes."""
    return next((kind for starts, kind in SIGNATURES if head.startswith(starts)), None)


def ole2_kind(path: Path) -> str:
    """An OLE2 compound file is either an encrypted (password-protected) OOXML package or a legacy .xls."""
    with open(path, "rb") as f:
        blob = f.read(1 << 20)
    if "EncryptedPackage".encode("utf-16-le") in blob or "EncryptionInfo".encode("utf-16-le") in blob:
        return ENCRYPTED
    return LEGACY_XLS


ENCRYPTED = (
    "a password-protected (encrypted) Office file: it cannot be read without the password; ask for "
    "it to be saved again without a password"
)
LEGACY_XLS = "a legacy Excel 97-2003 workbook (.xls)"
ODS = "an OpenDocument spreadsheet (.ods)"
ODS_WITHOUT_MIMETYPE = (
    "an OpenDocument spreadsheet (.ods) by its contents, but its 'mimetype' entry, which names the format, is "
    "missing or names another, so it cannot be read; open it in LibreOffice and save it again (File > Save As, ODF "
    "Spreadsheet), or ask for the file again"
)
XLSX = "an Excel workbook (.xlsx)"
XLSB = "an Excel binary workbook (.xlsb)"
DAMAGED_ZIP = (
    "a damaged zip archive (an Excel workbook or an OpenDocument spreadsheet is one): the file is incomplete or "
    "corrupt, probably cut off in transfer; ask for the file again"
)
# the workbook formats of a wave spec, by what the file's container says it is
WORKBOOK_KINDS = {XLSX: "xlsx", XLSB: "xlsb", LEGACY_XLS: "xls", ODS: "ods"}


OPENDOCUMENT_SPREADSHEET = "application/vnd.oasis.opendocument.spreadsheet"
MANIFEST = "META-INF/manifest.xml"
MANIFEST_ENTRY = re.compile(rb"<(?:[\w.-]+:)?file-entry\b[^>]*>")
WHOLE_PACKAGE = re.compile(rb"""\bfull-path\s*=\s*["']/["']""")


def zip_kind(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            mimetype = archive.read("mimetype").decode("ascii", "replace") if "mimetype" in names else ""
            manifest = archive.read(MANIFEST) if "content.xml" in names and MANIFEST in names else b""
    except (zipfile.BadZipFile, OSError, EOFError, KeyError):
        return DAMAGED_ZIP
    if "xl/workbook.xml" in names:
        return XLSX
    if "xl/workbook.bin" in names:
        return XLSB
    if OPENDOCUMENT_SPREADSHEET in mimetype or _spreadsheet_by_manifest(manifest):
        return ODS if OPENDOCUMENT_SPREADSHEET in mimetype else ODS_WITHOUT_MIMETYPE  # the reader needs the mimetype
    if "word/document.xml" in names:
        return "a Word document, not survey answers"
    return f"a zip archive of {len(names)} file(s), not a workbook: unpack it and point the spec at the export"


def _spreadsheet_by_manifest(manifest: bytes) -> bool:
    """Whether an OpenDocument manifest says the whole package (its entry for "/") is a spreadsheet."""
    whole = [entry for entry in MANIFEST_ENTRY.findall(manifest) if WHOLE_PACKAGE.search(entry)]
    return any(OPENDOCUMENT_SPREADSHEET.encode() in entry for entry in whole)


def refuse_non_text(spec: WaveSpec, head: bytes) -> None:
    path, kind = spec.file, container_of(head)
    what = zip_kind(path) if kind == "zip" else ole2_kind(path) if kind == "ole2" else kind
    if what in WORKBOOK_KINDS:
        raise WaveFileError(
            path,
            f"is {what}, but the wave spec says format: csv. Set format: {WORKBOOK_KINDS[what]} and "
            "sheet: <the sheet with the answers> in the spec, or ask for a CSV export",
        )
    if kind == "zip":
        raise WaveFileError(path, f"is {what}, not CSV text")
    if kind == "ole2":
        raise WaveFileError(path, f"is {what}; a CSV text file was expected")
    if kind == SAV:
        raise WaveFileError(
            path, f"is {SAV}, but the wave spec says format: csv. Set format: sav in the spec, or ask for a CSV export"
        )
    if kind is not None:
        raise WaveFileError(path, f"is {kind}, not CSV text; ask for the survey export as CSV")


def bom_conflict(spec: WaveSpec, head: bytes) -> str | None:
    encoding = codecs.lookup(spec.encoding).name
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)) and not encoding.startswith("utf-32"):
        return "utf-32"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) and not encoding.startswith(("utf-16", "utf-32")):
        return "utf-16"
    if head.startswith(codecs.BOM_UTF8) and not encoding.startswith("utf-8"):
        return "utf-8-sig"
    if not encoding.startswith(("utf-16", "utf-32")) and len(head) >= SNIFF_BYTES:
        # Text in UTF-16 without a BOM: every other byte is NUL
        even, odd = head[0::2].count(0), head[1::2].count(0)
        if odd > len(head) // 4 and even == 0:
            return "utf-16-le"
        if even > len(head) // 4 and odd == 0:
            return "utf-16-be"
    return None


@dataclass(frozen=True)
class Spot:
    """Where something was found in a text file, for a message. The text around it is never shown (it is a
    respondent's name, address or answer); `prefix`, the line's text up to the spot, only tells the column."""

    row: int  # the line (1 = the first)
    found: bytes | str  # what was found: bytes in a file read as bytes, characters in a decoded one
    offset: int | None = None  # the byte's offset in the file (0 = the first byte), when known
    prefix: str | None = None  # None when the line began inside a quoted cell (its column is not known)


class _LineStart:
    """The current line's text so far, kept across chunks, so a finding can be placed in its column: the text after
    the last line break, and whether the line began inside a quoted cell (an odd number of quote marks before)."""

    LIMIT = 1 << 20  # a longer line's column is not worked out

    def __init__(self, newline: Any, quote: Any) -> None:
        self.newline, self.quote = newline, quote
        self.text: Any = newline[:0]
        self.quotes = 0  # quote marks in `text` (also when it grew too long to keep)
        self.kept = True
        self.inside = False  # the line began inside a quoted cell

    def prefix(self, data: Any, at: int, quotes_before: int) -> str | None:
        """The line's text up to `data[at]`; `quotes_before`: quote marks in the file before `data`. A negative
        `at` is a spot in what was read before `data`, -at from its end, on the line it ended in."""
        if at < 0:
            if not self.kept or self.inside:
                return None
            line = self.text[: len(self.text) + at]
            return line.decode("utf-8", "replace") if isinstance(line, bytes) else line
        cut = data.rfind(self.newline, 0, at)
        if cut < 0:
            if not self.kept or self.inside:
                return None
            line = self.text + data[:at]
        else:
            if (quotes_before + data.count(self.quote, 0, cut + 1)) % 2:
                return None
            line = data[cut + 1 : at]
        return line.decode("utf-8", "replace") if isinstance(line, bytes) else line

    def advance(self, data: Any, quotes_after: int) -> None:
        """`data` was read; `quotes_after`: quote marks in the file up to its end."""
        cut = data.rfind(self.newline)
        if cut < 0:
            self.quotes += data.count(self.quote)
            self.kept = self.kept and len(self.text) + len(data) <= self.LIMIT
            self.text = self.text + data if self.kept else self.text[:0]
            return
        self.text = data[cut + 1 :] if len(data) - cut - 1 <= self.LIMIT else data[:0]
        self.kept = len(self.text) == len(data) - cut - 1
        self.quotes = data.count(self.quote, cut + 1)
        self.inside = (quotes_after - self.quotes) % 2 == 1


@dataclass
class TextStats:
    lines: int = 0
    blank_lines: int = 0
    quotes: int = 0
    nuls: int = 0
    nul: Spot | None = None  # the first NUL byte
    mojibake: Spot | None = None  # the first text garbled by a double conversion
    ends_with_newline: bool = True
    transcoded: Path | None = None


MOJIBAKE_UTF8 = re.compile(rb"\xc3\x83(?:\xc2[\x80-\xbf]|\xe2\x80[\x98-\xba]|\xc5[\x92-\xb8])")


MOJIBAKE_BYTES = 4  # the longest match but one byte: a match begun in a chunk ends in the next


def scan_bytes(path: Path) -> TextStats:
    """The same counts as `scan_text` for a UTF-8 file, on its bytes (DuckDB checks the encoding as it reads).

    A chunk is looked at once with NumPy (its line feeds and quote marks); the searches that are slow in Python
    (blank lines, mojibake) run only on a chunk where a cheap test says they can find something."""
    import numpy as np

    stats, previous, offset, line, carry = TextStats(), b"\n", 0, _LineStart(b"\n", b'"'), b""
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            text = previous + chunk
            quotes_before = stats.quotes
            if b"\x00" in chunk:
                if stats.nul is None:
                    at = chunk.index(b"\x00")
                    row = stats.lines + chunk.count(b"\n", 0, at) + 1
                    stats.nul = Spot(row, b"\x00", offset + at, line.prefix(chunk, at, quotes_before))
                stats.nuls += chunk.count(b"\x00")
            data = np.frombuffer(text, np.uint8)
            breaks = np.flatnonzero(data == NEWLINE)
            if _has_blank_line(data, breaks):
                stats.blank_lines += text.count(b"\n\n") + text.count(b"\n\r\n")
            stats.quotes += int(np.count_nonzero(data[1:] == QUOTE))
            # the mojibake pattern holds the byte 83, which is rare in Finnish text: looking for it alone is fast.
            # The bytes before the chunk are looked at with it: the pattern may begin in the chunk before.
            if stats.mojibake is None and (b"\x83" in chunk or b"\x83" in carry):
                window = carry + chunk
                found = MOJIBAKE_UTF8.search(window) if b"\xc3\x83" in window else None
                if found:
                    at = found.start() - len(carry)  # < 0: begun in the chunk before (with no line break after)
                    row = stats.lines + chunk.count(b"\n", 0, max(at, 0)) + 1
                    stats.mojibake = Spot(row, found.group(), offset + at, line.prefix(chunk, at, quotes_before))
            carry = (carry + chunk[-MOJIBAKE_BYTES:])[-MOJIBAKE_BYTES:]
            stats.lines += len(breaks) - (previous == b"\n")
            line.advance(chunk, stats.quotes)
            previous = chunk[-1:]
            offset += len(chunk)
    stats.ends_with_newline = previous in (b"\n", b"\r")
    return stats


def _has_blank_line(data: Any, breaks: Any) -> bool:
    """Whether the bytes hold a blank line, "\\n\\n" or "\\n\\r\\n", from the offsets of their line feeds."""
    gaps = breaks[1:] - breaks[:-1]
    if (gaps == 1).any():
        return True
    one_byte_between = breaks[:-1][gaps == 2]  # noqa: PLR2004 (line feed, one byte, line feed)
    return bool((data[one_byte_between + 1] == CARRIAGE_RETURN).any())


def scan_text(spec: WaveSpec, scratch: Path) -> TextStats:
    """One streaming pass over the file: decode it as the spec says (transcoding to UTF-8 for DuckDB when it is
    not UTF-8), count lines, blank lines and quote marks, and find NUL bytes and mojibake."""
    path, stats = spec.file, TextStats()
    encoding = codecs.lookup(spec.encoding).name
    utf8 = encoding in ("utf-8", "utf-8-sig", "ascii")
    decoder = codecs.getincrementaldecoder(spec.encoding)(errors="strict")
    previous, offset, line = "\n", 0, _LineStart("\n", '"')
    with contextlib.ExitStack() as stack:
        out = None
        if not utf8:
            scratch.mkdir(parents=True, exist_ok=True)
            stats.transcoded = scratch / f"{path.stem}.{os.getpid()}.utf8.csv"
            out = stack.enter_context(open(stats.transcoded, "w", encoding="utf-8", newline=""))
        f = stack.enter_context(open(path, "rb"))
        while True:
            chunk = f.read(CHUNK_BYTES)
            final = not chunk
            try:
                text = decoder.decode(chunk, final=final)
            except UnicodeDecodeError as exc:
                raise _decode_error(spec, _undecodable(exc, chunk, decoder, offset, stats, line), exc.reason) from None
            if text:
                if out is not None:
                    out.write(text)
                _count(stats, previous + text, line)
                previous = text[-1]
            if final:
                break
            offset += len(chunk)
    stats.ends_with_newline = previous in "\n\r"
    return stats


def _undecodable(
    exc: UnicodeDecodeError,
    chunk: bytes,
    decoder: codecs.IncrementalDecoder,
    offset: int,
    stats: TextStats,
    line: _LineStart,
) -> Spot:
    """Where the bytes that cannot be decoded are: `exc.object` is the bytes the decoder held back from the
    chunks before (`offset` is where `chunk` starts in the file) and `chunk`. The decoder is as it was before the
    failed call, so it decodes what comes before them."""
    held = len(exc.object) - len(chunk)
    try:
        before = decoder.decode(chunk[: max(exc.start - held, 0)])
    except UnicodeDecodeError:
        before = ""
    return Spot(
        stats.lines + before.count("\n") + 1,
        exc.object[exc.start : exc.end],
        offset - held + exc.start,
        line.prefix(before, len(before), stats.quotes),
    )


def _count(stats: TextStats, text: str, line: _LineStart) -> None:
    """Counts over one decoded chunk, prefixed with the last character of the previous one."""
    body = text[1:]
    if stats.nul is None and "\x00" in body:
        at = body.index("\x00")
        stats.nul = Spot(stats.lines + body.count("\n", 0, at) + 1, "\x00", None, line.prefix(body, at, stats.quotes))
    stats.nuls += body.count("\x00")
    if stats.mojibake is None:
        found = MOJIBAKE.search(text)  # with the character before: the pattern may begin in the chunk before
        if found:
            at = found.start() - 1
            row = stats.lines + body.count("\n", 0, max(at, 0)) + 1
            stats.mojibake = Spot(row, found.group(), None, line.prefix(body, at, stats.quotes))
    stats.blank_lines += text.count("\n\n") + text.count("\n\r\n")
    stats.quotes += body.count('"')
    stats.lines += body.count("\n")
    line.advance(body, stats.quotes)


def _decode_error(spec: WaveSpec, spot: Spot, reason: str) -> WaveFileError:
    found = encoding_that_reads(spec)
    if found:
        hint = f"the file reads cleanly as {found}: set encoding: {found} in the wave spec (or re-export the file)"
    else:
        hint = (
            "no usual encoding reads it cleanly either (utf-8, cp1252, utf-16): the file is probably damaged; "
            "ask for it again"
        )
    bad = spot.found if isinstance(spot.found, bytes) else spot.found.encode("utf-8")
    return WaveFileError(
        spec.file,
        f"byte 0x{bad[:1].hex()} (byte {spot_offset(spot)} of the file) cannot be read as {spec.encoding} ({reason}); "
        + hint,
        row=spot.row,
        column=column_at(spec, spot.prefix),
    )


def spot_offset(spot: Spot) -> str:
    return f"{spot.offset:,}" if spot.offset is not None else "?"


def garbled(spot: Spot) -> str:
    """What a double conversion left, described without the text around it: the garbled characters, what they
    were, and their bytes."""
    text = spot.found.decode("utf-8") if isinstance(spot.found, bytes) else spot.found
    try:
        meant = f" for {shown(text.encode('cp1252').decode('utf-8'))}"
    except UnicodeError:
        meant = ""
    where = (
        f": bytes {spot.found.hex(' ')} at byte {spot_offset(spot)} of the file"
        if isinstance(spot.found, bytes)
        else ""
    )
    return f"{shown(text)}{meant}{where}"


def column_at(spec: WaveSpec, prefix: str | None) -> str | None:
    """The column a spot lies in, from its line's text up to it (cells counted by the delimiters outside quote
    marks): the header's name when the file's header has the mapped columns, else the column's number."""
    if prefix is None:
        return None
    position, quoted = 1, False
    for ch in prefix:
        if ch == '"':
            quoted = not quoted
        elif ch == spec.delimiter and not quoted:
            position += 1
    header = _header_for_messages(spec)
    if header is not None and position <= len(header):
        return shown(header[position - 1])
    return str(position)


def _header_for_messages(spec: WaveSpec) -> list[str] | None:
    """The header row, read from the file's start in the first encoding in which it holds every mapped column (the
    spec's, then the usual ones); None when none does (the row may then be an answer, not a header)."""
    with open(spec.file, "rb") as f:
        head = f.read(HEADER_BYTES)
    wanted = {match_key(c) for c in spec.columns}
    for candidate in dict.fromkeys((spec.encoding, *ALTERNATIVE_ENCODINGS)):
        try:
            text = codecs.getincrementaldecoder(candidate)(errors="replace").decode(head)
            rows = list(
                itertools.islice(csv.reader(io.StringIO(text, newline=""), delimiter=spec.delimiter), spec.header_row)
            )
        except (UnicodeError, csv.Error):
            continue
        header = [c.strip().lstrip("\ufeff") for c in rows[-1]] if len(rows) == spec.header_row else []
        if wanted <= {match_key(h) for h in header}:
            return header
    return None


def encoding_that_reads(spec: WaveSpec) -> str | None:
    """An encoding in which the whole file decodes and its header holds the mapped columns."""
    declared = codecs.lookup(spec.encoding).name
    wanted = {match_key(c) for c in spec.columns}
    for candidate in ALTERNATIVE_ENCODINGS:
        if codecs.lookup(candidate).name == declared:
            continue
        decoder = codecs.getincrementaldecoder(candidate)(errors="strict")
        first = ""
        try:
            with open(spec.file, "rb") as f:
                while chunk := f.read(CHUNK_BYTES):
                    text = decoder.decode(chunk)
                    first = first or text
                decoder.decode(b"", final=True)
        except UnicodeError:
            continue
        rows = list(
            itertools.islice(csv.reader(io.StringIO(first, newline=""), delimiter=spec.delimiter), spec.header_row)
        )
        if len(rows) == spec.header_row and wanted <= {match_key(h) for h in rows[-1]}:
            return candidate
    return None


def is_utf8(path: Path) -> bool:
    """True when the whole file is valid UTF-8 with at least one non-ASCII character."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
    non_ascii = False
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError:
                return False
            non_ascii = non_ascii or not chunk.isascii()
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return non_ascii
