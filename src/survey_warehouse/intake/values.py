"""What a delivered submission time or response time means: each distinct value of such a column read once, at
load time, into the value the warehouse keeps beside the delivered text, or a reason why it cannot be read.

A value is never emptied and never changes its meaning without a word: it resolves, or it gets a problem (a reason
code and a sentence saying what is wrong with it) that the loader turns into a quarantined row. The readings of a
column are decided for the column as a whole, never guessed cell by cell:

Submission times (`submitted_at`)
    * ISO 8601 (`2019-04-03T10:00`, `2019-04-03 10:00:00.5`, a date alone), with an offset (`Z`, `+03:00`,
      `+0300`) or without one. A time with an offset is converted to the wave's time zone (`time_zone` in the wave
      spec, Europe/Helsinki by default); one without is the wave's local time, as survey tools export it. The
      warehouse keeps local time in the wave's time zone, fractional seconds included.
    * Day-month-year with dots, the Finnish way (`3.4.2019 10:00`, `03.04.2019 10.00`, `3.4.2019 klo 10.00`,
      seconds and fractions of a second after them).
    * Numbers separated by `/` or `-` (`04/03/2019 10:00`, `4/3/2019 10:00 AM`), in the order `date_order` of the
      wave spec (DMY, MDY or YMD). Without it the column's own values decide: a value whose first number is over 12
      is day-first, one whose second is over 12 is month-first. If the column holds neither, a value whose day and
      month could be swapped (04/03/2019) is refused as ambiguous; if it holds both, such values are refused as
      contradicting each other. `date_order` also applies to the dotted form, which is day-first unless the
      spec or the column's own dotted dates say otherwise.
    * An Excel date serial (`43558.4166666667`, `43558,4166666667`: days since 1899-12-30, the 1900 date system),
      rounded to the millisecond (Excel keeps no finer time). A serial of a workbook in the 1904 date system reads
      four years early, and is refused as outside the wave.
    * A two-digit year (`03.04.19`) is read in the wave year's century, then checked against the field period like
      any other date.
  A time without a date (`10:30`), a date or time that does not exist (31.2.2019, 25:00), a spreadsheet error
  (`#N/A`) and anything else is refused. A time outside the wave's field period but in the wave's year is kept
  with a warning; one outside both is refused (`outside_wave`). A local time in the hour the clocks skip or repeat
  when daylight saving time begins or ends is kept as written (of a repeated hour, the first).

Response times (`response_minutes`, in minutes)
    * A number, in minutes, with the file's decimal separator: `decimal_separator` in the wave spec, or else the
      one the column's values use (`7,5` says comma, `7.5` says dot; `1,000` and `1.000` say nothing, as either
      could be a thousands separator). A column that uses both, or a number whose separator is not the column's
      (`1,000` in a file of decimal points), is refused: no thousands separators are read.
    * A number with a unit: `12 min`, `90 s`, `1 h 30 min`, `1,5 h` (min, s, h and their English and Finnish
      words).
    * `h:mm:ss` (`0:12:30`, `51:00:00`, with a fraction of a second: `0:01:30.500000`), the form the loader writes
      every spreadsheet's and SPSS file's time and duration cell in (see `clock_text`).
    * A clock of two parts (`12:30`, `0:12`) is minutes and seconds to one tool and hours and minutes to another
      (a CSV saved from a sheet formatted `[h]:mm`): it is read as the spec's `duration_clock` says (`m:ss` or
      `h:mm`); without it, it is refused as ambiguous.
  `nan`, `inf`, negative times, `1_000`, `1e3`, Python's `1 day, 0:00:00` and spreadsheet errors are refused.

A field the wave spec lists under `keep_unreadable` keeps a value that cannot be read as delivered, without a
resolved value, and the load warns about it instead of quarantining the row.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from survey_warehouse.intake.matching import LONG_NUMBER, looks_like_email, shown

DATE_ORDERS = ("DMY", "MDY", "YMD")
DURATION_CLOCKS = ("m:ss", "h:mm")  # how a response time of two parts (12:30) is read
DECIMAL_SEPARATORS = (".", ",")
DEFAULT_TIME_ZONE = "Europe/Helsinki"
EXCEL_EPOCH = dt.datetime(1899, 12, 30)  # noqa: DTZ001 (a serial has no zone): the 1900 date system, its leap-year bug included
EXCEL_ERRORS = frozenset(
    {"#n/a", "#value!", "#ref!", "#div/0!", "#num!", "#name?", "#null!", "#getting_data", "#spill!", "#calc!"}
)
MONTHS_OVER = 12

# problem codes (raw.quarantine.reason_code)
UNREADABLE_TIMESTAMP = "unreadable_timestamp"
AMBIGUOUS_DATE = "ambiguous_date"
OUTSIDE_WAVE = "outside_wave"
UNREADABLE_DURATION = "unreadable_duration"
AMBIGUOUS_DURATION = "ambiguous_duration"
SPREADSHEET_ERROR = "spreadsheet_error"
# a warning's code: the value is kept
OUTSIDE_FIELD_PERIOD = "outside_field_period"
KEPT_UNREADABLE = "kept_unreadable"  # a value that cannot be read, of a field the spec lists under keep_unreadable
# the fields read here, which a spec may list under keep_unreadable
VALUE_FIELDS = ("submitted_at", "response_minutes")


@dataclass(frozen=True)
class ValueRules:
    """How a wave's values are read: from its spec."""

    wave_year: int
    field_period_start: dt.date
    field_period_end: dt.date
    time_zone: str = DEFAULT_TIME_ZONE
    date_order: str | None = None
    decimal_separator: str | None = None
    duration_clock: str | None = None

    @functools.cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)


@dataclass(frozen=True)
class Reading:
    """What one delivered value resolved to: `value` (an ISO local time, or minutes as text) and `number`, or the
    `problem` (a reason code) and `detail` (what is wrong, for the message); `note` is a warning's code for a value
    that is kept."""

    value: str | None = None
    number: float | None = None
    problem: str | None = None
    detail: str | None = None
    note: str | None = None


def check_time_zone(name: str) -> str | None:
    """None when `name` is a time zone (IANA name such as Europe/Helsinki), else what is wrong."""
    if name.strip().lower() in ("localtime", "local", "posixrules"):  # the machine's zone: not the same everywhere
        return f"{shown(name)} is the zone of the machine that reads it; give a name such as Europe/Helsinki"
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return f"{shown(name)} is not a time zone name such as Europe/Helsinki"
    return None


# the words a time or a duration is written with; a value with any other word is not quoted in a message
TIME_WORDS = frozenset(
    (
        "klo",
        "am",
        "pm",
        "a",
        "m",
        "p",
        "t",
        "z",
        "utc",
        "gmt",
        "min",
        "mins",
        "minute",
        "minutes",
        "minuutti",
        "minuuttia",
        "h",
        "hour",
        "hours",
        "hr",
        "hrs",
        "tunti",
        "tuntia",
        "s",
        "sec",
        "secs",
        "second",
        "seconds",
        "sekunti",
        "sekuntia",
        "nan",
        "inf",
        "infinity",
        "day",
        "days",
        "e",
        "n",
        "value",
        "ref",
        "div",
        "num",
        "name",
        "null",
        "getting_data",
        "spill",
        "calc",
    )
)
# what a time holds (a date, a clock time, an Excel serial): a long number left when they are taken out is a phone
# number or the like
TIME_PARTS = re.compile(
    r"(?<![\d.])(?:\d{1,4}[./-]\d{1,2}[./-]\d{1,4}|\d{1,2}[:.]\d{2}(?:[:.]\d{2})?(?:[.,]\d+)?|\d{5}[.,]\d+"
    r"|[+-]\d{2}:?\d{2})(?!\d)"
)
NOT_QUOTED = "(a value that does not look like a time: not quoted, see the file)"


def quoted(value: str) -> str:
    """A delivered time for a message: quoted (as `shown`) when it is written with digits, punctuation and the
    words of times; a value with other words (a name or free text in the wrong column), an e-mail address or a long
    number (a phone number) is not quoted: the message names the row and the column, and the file shows it."""
    text = unicodedata.normalize("NFKC", value)
    if len(text) > 60 or looks_like_email(text) or LONG_NUMBER.search(TIME_PARTS.sub(" ", text)):  # noqa: PLR2004
        return NOT_QUOTED
    if all(word in TIME_WORDS for word in re.findall(r"[^\W\d_]+", text.lower())):
        return shown(value)
    return NOT_QUOTED


def _normal(value: str) -> str:
    """The value trimmed, its runs of white space one space, lower case."""
    return " ".join(value.split()).lower()


# ---------------------------------------------------------------------------------------------- timestamps

_TIME = (
    r"(?P<hour>\d{1,2})[:.](?P<minute>\d{2})(?:[:.](?P<second>\d{2})(?:[.,](?P<fraction>\d{1,9}))?)?"
    r"(?:\s?(?P<ampm>am|pm|a\.m\.|p\.m\.))?"
)
_OFFSET = r"(?P<offset>z|utc|gmt|[+-]\d{2}(?::?\d{2})?)"
ISO = re.compile(
    r"(?P<year>\d{4})-(?P<month>\d{1,2})-(?P<day>\d{1,2})"
    rf"(?:(?:t|\s)(?:klo\s)?{_TIME}(?:\s?{_OFFSET})?)?"
)
# three numbers: 3.4.2019, 04/03/2019, 2019/04/03, 03.04.19; the separator is the same twice
NUMERIC_DATE = re.compile(
    r"(?P<a>\d{1,4})(?P<sep>[./-])(?P<b>\d{1,2})(?P=sep)(?P<c>\d{1,4})\.?"
    rf"(?:(?:\s|t|,\s?)(?:klo\s?)?{_TIME}(?:\s?{_OFFSET})?)?"
)
SERIAL = re.compile(r"\d{5}(?:[.,]\d+)?")
TIME_ONLY = re.compile(rf"(?:klo\s?)?{_TIME}(?:\s?{_OFFSET})?")


def _form(match: re.Match) -> str:
    """The family of a numeric date: its order is decided for the family, not for the cell."""
    return "dotted" if match["sep"] == "." else "slashed"


def column_date_orders(values: Iterable[str], rules: ValueRules) -> dict[str, str | None]:
    """The order of each numeric date family in this column: the spec's, or what its unambiguous values say
    (None: undecided; "conflict": its values say both)."""
    if rules.date_order:
        return {"dotted": rules.date_order, "slashed": rules.date_order}
    seen: dict[str, set[str]] = {"dotted": set(), "slashed": set()}
    for value in values:
        match = NUMERIC_DATE.fullmatch(_normal(value))
        if not match or len(match["a"]) == 4:  # noqa: PLR2004 (a year first is always YMD)
            continue
        a, b = int(match["a"]), int(match["b"])
        if a > MONTHS_OVER >= b:
            seen[_form(match)].add("DMY")
        elif b > MONTHS_OVER >= a:
            seen[_form(match)].add("MDY")
    orders: dict[str, str | None] = {}
    for family, found in seen.items():
        if len(found) > 1:
            orders[family] = "conflict"
        elif found:
            orders[family] = found.pop()
        else:
            orders[family] = "DMY" if family == "dotted" else None  # Finnish exports write day-first with dots
    return orders


class Refused(Exception):
    """A value that cannot be read: its problem code and what is wrong."""

    def __init__(self, problem: str, detail: str) -> None:
        super().__init__(detail)
        self.problem, self.detail = problem, detail


def read_timestamp(value: str, rules: ValueRules, orders: dict[str, str | None] | None = None) -> Reading:
    """One submission time (`orders`: the column's date orders, see column_date_orders)."""
    if not _normal(value):
        return Reading()
    try:
        local = _local_time(value, rules, column_date_orders([value], rules) if orders is None else orders)
    except Refused as refused:
        return Reading(problem=refused.problem, detail=refused.detail)
    iso = local.isoformat()
    day = local.date()
    if rules.field_period_start <= day <= rules.field_period_end:
        return Reading(value=iso)
    period = f"{rules.field_period_start:%d.%m.%Y}-{rules.field_period_end:%d.%m.%Y}"
    if day.year == rules.wave_year:
        return Reading(value=iso, note=OUTSIDE_FIELD_PERIOD)
    return Reading(
        value=iso,
        problem=OUTSIDE_WAVE,
        detail=(
            f"{quoted(value)} reads as {iso.replace('T', ' ')} ({rules.time_zone}), outside the field period "
            f"{period} and the year {rules.wave_year}"
        ),
    )


def _local_time(value: str, rules: ValueRules, orders: dict[str, str | None]) -> dt.datetime:
    """The moment a value names, in the wave's time zone (without the zone), or Refused."""
    text = _normal(value)
    if text in EXCEL_ERRORS:
        raise Refused(SPREADSHEET_ERROR, f"{quoted(value)} is a spreadsheet error, not a time")
    try:
        if match := ISO.fullmatch(text):
            moment = _moment(match, int(match["year"]), int(match["month"]), int(match["day"]), rules)
        elif match := NUMERIC_DATE.fullmatch(text):
            moment = _moment(match, *_numeric_date(match, value, orders, rules.wave_year), rules)
        elif SERIAL.fullmatch(text):
            serial = EXCEL_EPOCH + dt.timedelta(days=float(text.replace(",", ".")))
            moment = _round_to_millisecond(serial).replace(tzinfo=rules.zone)
        elif TIME_ONLY.fullmatch(text):
            raise Refused(UNREADABLE_TIMESTAMP, f"{quoted(value)} is a time of day without a date")
        else:
            raise Refused(UNREADABLE_TIMESTAMP, f"{quoted(value)} is not a date and time")
    except ValueError as exc:
        raise Refused(UNREADABLE_TIMESTAMP, f"{quoted(value)} is not a date and time that exists ({exc})") from None
    return moment.astimezone(rules.zone).replace(tzinfo=None)


def _numeric_date(match: re.Match, value: str, orders: dict[str, str | None], wave_year: int) -> tuple[int, int, int]:
    """(year, month, day) of a date of three numbers, or Refused."""
    a, b, c = match["a"], match["b"], match["c"]
    if len(a) == 4:  # noqa: PLR2004
        order: str | None = "YMD"
    elif len(a) > 2 or len(c) not in (2, 4):  # noqa: PLR2004
        raise Refused(UNREADABLE_TIMESTAMP, f"{quoted(value)} is not a date and time")
    else:
        order = orders.get(_form(match))
        if order == "YMD":
            raise Refused(
                UNREADABLE_TIMESTAMP,
                f"{quoted(value)} does not begin with a year, but date_order in the wave spec is YMD",
            )
        if order in (None, "conflict"):
            order = _order_of(int(a), int(b), value, order)
    if order == "YMD":
        year, month, day = a, b, c
    elif order == "MDY":
        month, day, year = a, b, c
    else:
        day, month, year = a, b, c
    full_year = int(year)
    if len(year) == 2:  # noqa: PLR2004 (two digits: the wave year's century)
        full_year += wave_year // 100 * 100
    return full_year, int(month), int(day)


def _order_of(first: int, second: int, value: str, column: str | None) -> str:
    """The order of a date whose column does not decide it, from its own numbers, or Refused."""
    if first > MONTHS_OVER >= second or first == second:
        return "DMY"
    if second > MONTHS_OVER >= first:
        return "MDY"
    why = "the column holds dates of both orders" if column == "conflict" else "no date of the column tells which"
    raise Refused(
        AMBIGUOUS_DATE,
        f"{quoted(value)} could be day-first or month-first, and {why}; set date_order (DMY, MDY or YMD) in the "
        "wave spec",
    )


def _moment(match: re.Match, year: int, month: int, day: int, rules: ValueRules) -> dt.datetime:
    hour = minute = second = micro = 0
    if match["hour"] is not None:
        hour, minute = int(match["hour"]), int(match["minute"])
        second = int(match["second"] or 0)
        fraction = match["fraction"] or ""
        micro = round(float("0." + fraction) * 1_000_000) if fraction else 0
        if match["ampm"]:
            if not 1 <= hour <= MONTHS_OVER:
                raise ValueError(f"hour {hour} with am/pm")
            hour = hour % 12 + (12 if match["ampm"].startswith("p") else 0)
    moment = dt.datetime(year, month, day, hour, minute, second, min(micro, 999_999))  # noqa: DTZ001 (zone below)
    offset = match["offset"]
    if offset is None:
        return moment.replace(tzinfo=rules.zone)
    if offset in ("z", "utc", "gmt"):
        return moment.replace(tzinfo=dt.UTC)
    sign = -1 if offset[0] == "-" else 1
    digits = offset[1:].replace(":", "")
    delta = dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0))
    return moment.replace(tzinfo=dt.timezone(sign * delta))


def _round_to_millisecond(moment: dt.datetime) -> dt.datetime:
    micro = round(moment.microsecond / 1000) * 1000
    return moment.replace(microsecond=0) + dt.timedelta(microseconds=micro)


# ---------------------------------------------------------------------------------------------- durations

UNITS = {
    **dict.fromkeys(("h", "t", "hour", "hours", "hr", "hrs", "tunti", "tuntia", "tuntí"), 60.0),
    **dict.fromkeys(("min", "mins", "min.", "minute", "minutes", "minuutti", "minuuttia", "m"), 1.0),
    **dict.fromkeys(("s", "sec", "secs", "sec.", "second", "seconds", "sekunti", "sekuntia"), 1 / 60),
}
NUMBER = r"\d+(?:[.,]\d+)?"
WITH_UNITS = re.compile(rf"(?:(?P<n>{NUMBER})\s?(?P<unit>[a-zí.]+)\s?)+")
WITH_UNIT = re.compile(rf"(?P<n>{NUMBER})\s?(?P<unit>[a-zí.]+)\s?")
CLOCK = re.compile(r"(?P<a>\d+):(?P<b>\d{2})(?::(?P<c>\d{2}))?(?:[.,](?P<fraction>\d+))?")
PLAIN = re.compile(r"\+?\d*(?:[.,]\d*)?")


def column_decimal_separator(values: Iterable[str], rules: ValueRules) -> str | None:
    """The decimal separator of a number column: the spec's, or the one its values use; None when they use none
    that tells, "conflict" when they use both."""
    if rules.decimal_separator:
        return rules.decimal_separator
    seen = set()
    for value in values:
        text = _normal(value)
        for n in re.findall(r"\d*[.,]\d+", text):
            digits = re.split(r"[.,]", n)[1]
            if len(digits) != 3:  # noqa: PLR2004 (1,000 could be a thousands separator)
                seen.add("," if "," in n else ".")
    return "conflict" if len(seen) > 1 else (seen.pop() if seen else None)


def _number(text: str, separator: str | None, value: str) -> float:
    marks = set(re.findall(r"[.,]", text))
    if marks:
        mark = marks.pop()
        if separator == "conflict":
            raise Refused(
                UNREADABLE_DURATION,
                f"{quoted(value)}: the column writes decimals both with a comma and with a point; set "
                "decimal_separator in the wave spec",
            )
        if separator is None and len(text.split(mark)[1]) == 3:  # noqa: PLR2004
            raise Refused(
                UNREADABLE_DURATION,
                f"{quoted(value)} could be a decimal or a thousands separator, and no value of the column tells "
                "which; set decimal_separator in the wave spec",
            )
        if separator is not None and mark != separator:
            raise Refused(
                UNREADABLE_DURATION,
                f"{quoted(value)} has {shown(mark)}, but the decimal separator of the column is {shown(separator)} "
                "(thousands separators are not read)",
            )
    return float(text.replace(",", "."))


def clock_text(microseconds: int) -> str:
    """A time or duration cell of a spreadsheet or an SPSS file as raw keeps it, whatever the format: total hours,
    minutes and seconds, `[-]H:MM:SS[.ffffff]` (`51:00:00`, `0:12:30`, `-0:01:00`, `0:01:30.500000`), never
    wrapped at 24 hours or made positive, the fraction of a second only when there is one."""
    seconds, fraction = divmod(abs(microseconds), 1_000_000)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    text = f"{'-' if microseconds < 0 else ''}{hours}:{minutes:02d}:{seconds:02d}"
    return f"{text}.{fraction:06d}" if fraction else text


def read_duration(value: str, separator: str | None = None, clock: str | None = None) -> Reading:
    """A response time in minutes (`separator`: the column's decimal separator, see column_decimal_separator;
    `clock`: how a clock of two parts is read, the spec's duration_clock)."""
    if not _normal(value):
        return Reading()
    try:
        minutes = round(_minutes(value, separator, clock), 9)
    except Refused as refused:
        return Reading(problem=refused.problem, detail=refused.detail)
    return Reading(value=str(int(minutes)) if minutes.is_integer() else repr(minutes), number=minutes)


def _minutes(value: str, separator: str | None, clock: str | None) -> float:
    text = _normal(value)
    if text in EXCEL_ERRORS:
        raise Refused(SPREADSHEET_ERROR, f"{quoted(value)} is a spreadsheet error, not a time")
    if text.startswith("-"):
        raise Refused(UNREADABLE_DURATION, f"{quoted(value)}: a response time cannot be negative")
    if PLAIN.fullmatch(text) and any(ch.isdigit() for ch in text):
        minutes = _number(text.lstrip("+"), separator, value)
    elif match := CLOCK.fullmatch(text):
        minutes = _clock(match, value, clock)
    elif WITH_UNITS.fullmatch(text):
        minutes, units = 0.0, []
        for part in WITH_UNIT.finditer(text):
            unit = part["unit"]
            if unit not in UNITS or unit in units:
                raise Refused(UNREADABLE_DURATION, f"{quoted(value)}: {shown(unit)} is not a unit of time (min, s, h)")
            units.append(unit)
            minutes += _number(part["n"], separator, value) * UNITS[unit]
    else:
        raise Refused(UNREADABLE_DURATION, f"{quoted(value)} is not a number of minutes")
    if not math.isfinite(minutes):
        raise Refused(UNREADABLE_DURATION, f"{quoted(value)} is not a number of minutes")
    return minutes


def _clock(match: re.Match, value: str, clock: str | None) -> float:
    """Minutes of h:mm:ss, or of a clock of two parts as the spec's duration_clock reads it (m:ss or h:mm)."""
    a, b, c = int(match["a"]), int(match["b"]), match["c"]
    fraction = float("0." + match["fraction"]) if match["fraction"] else 0.0
    if b >= 60 or (c is not None and int(c) >= 60):  # noqa: PLR2004
        raise Refused(UNREADABLE_DURATION, f"{quoted(value)} is not a time h:mm:ss, m:ss or h:mm")
    if c is not None:
        return a * 60 + b + (int(c) + fraction) / 60
    if clock == "m:ss":
        return a + (b + fraction) / 60
    if clock == "h:mm":
        return a * 60 + b + fraction
    raise Refused(
        AMBIGUOUS_DURATION,
        f"{quoted(value)} could be minutes and seconds (m:ss) or hours and minutes (h:mm); set duration_clock "
        "(m:ss or h:mm) in the wave spec",
    )


# ---------------------------------------------------------------------------------------------- a column's reading


@dataclass(frozen=True)
class ColumnReader:
    """How the values of one kind of column are read: what the whole column decides first (`decide`: its date
    orders, its decimal separator), then each value with that decision (`read`). A loader that streams a large
    column decides over all its values, then reads them a slice at a time."""

    decide: Callable[[Iterable[str], ValueRules], Any]
    read: Callable[[str, ValueRules, Any], Reading]

    def read_all(self, values: list[str], rules: ValueRules) -> list[Reading]:
        decided = self.decide(values, rules)
        return [self.read(v, rules, decided) for v in values]


TIMESTAMPS = ColumnReader(column_date_orders, read_timestamp)
DURATIONS = ColumnReader(
    column_decimal_separator, lambda value, rules, separator: read_duration(value, separator, rules.duration_clock)
)
