"""Proposals for a new wave from its delivered columns and the earlier waves, each with its evidence.

Every comparison is made on match keys (survey_warehouse.intake.matching), exactly or, where the words may differ,
fuzzily with rapidfuzz. A proposal is *sure* only on evidence that leaves no other reading (the same label under
the matching rule, the same words, an earlier label's words or word stems with no other option or label as close,
a field recognised from its content); anything else is proposed to a person.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from rapidfuzz import fuzz, process

from survey_warehouse.drafting.delivery import Column, Delivery
from survey_warehouse.drafting.history import (
    NUMBERING,
    RANGE_IN_WORDING,
    EarlierQuestion,
    History,
    label_words,
    wording_key,
)
from survey_warehouse.intake.matching import LONG_NUMBER, looks_like_email, match_key
from survey_warehouse.intake.values import AMBIGUOUS_DURATION, DURATION_CLOCKS, read_duration

# a number as the loader reads one (a decimal point or comma, an exponent)
NUMBER = re.compile(r"[+-]?([0-9]+([.,][0-9]*)?|[.,][0-9]+)(e[+-]?[0-9]+)?")
# a scale point with words: "1 = huonosti", "7 - erittäin hyvin", "5: täysin samaa mieltä"
LABELLED_POINT = re.compile(r"(\d{1,2})\s*[=:\u2013\u2014-]\s*\D.*")
RANGE_IN_HEADER = re.compile(r"\(\s*(\d{1,2})\s*[-\u2013\u2014]\s*(\d{1,2})\s*\)")
WIDEST_SCALE = 10  # a scale has at most this many steps between its ends; a wider number column is a quantity

# content shares that recognise a respondent field
SURE_SHARE = 0.95
LIKELY_SHARE = 0.8
CITY_SHARE = 0.5
ROLE_SHARE = 0.3
HEADER_SAME = 0.8  # header resemblance (0-1) that counts as the same header as an earlier wave's
DISTINCT_TEXT = 0.7  # distinct values per filled row above which a column is free text (names, comments)
FREE_TEXT_MIN = 5
NAME_WORDS = 4
SENTENCE_WORDS = 5  # answers this long on average are sentences: free text
# combined evidence for a question: weights, and what a sure match needs
WEIGHTS = {"wording": 0.4, "answers": 0.3, "type": 0.15, "position": 0.15}
SURE_SCORE = 0.6
SURE_MARGIN = 0.12
SAME_WORDING = 0.9
WORDING_MARGIN = 0.3
SURE_WORDING = 0.7
PROPOSE_SCORE = 0.45
PROPOSE_WORDING = 0.5
PROPOSE_EXACT = 0.3
FUZZY_LABEL = 60  # a label this close (rapidfuzz WRatio) to an earlier one is proposed as its code
# a label in an earlier option's words is coded as that option only when they are each other's closest match by
# this many points (rapidfuzz WRatio, 0-100): ahead of every other option, and of every other label of the wave
LABEL_MARGIN = 15
CITY_FUZZY = 75
# words that name the organisation, not the city ('Keravan kaupunki', 'Vanda stad', 'City of Espoo')
ORGANISATION_WORDS = frozenset(
    {"kaupunki", "kaupungin", "kunta", "kunnan", "stad", "staden", "kommun", "city", "of", "town", "municipality"}
)
SHORT_STEM = 5  # letters a shortened word keeps of the earlier one
# a question's catch-all option: 'Muu', 'Muu johto', 'Other', 'Annan', 'Övrigt'
OTHER_WORDS = frozenset({"muu", "muut", "muuta", "other", "others", "annan", "annat", "övrig", "övriga", "övrigt"})
# words that make a label say what it is not: 'Muu kuin johto' (not in management) is no other kind of manager
EXCEPT_WORDS = frozenset({"kuin", "paitsi", "than", "except", "but", "än", "utom"})
# words that say how early or late, not which: 'Jo strategiavaiheessa' (already at the strategy stage) and 'Vasta
# hankintavaiheessa' (only at procurement) are the options 'Strategia' and 'Hankinta' of a question about a stage
WHEN_WORDS = frozenset({"jo", "vasta", "already", "redan"})
# words that turn a label into its opposite ("Ei nimettyä vastuuta", "Vastuuta ei ole määritelty", "Not involved"):
# a label that drops or adds one is never a shortening of the other
NEGATIONS = frozenset({"ei", "ole", "eikä", "eika", "en", "et", "emme", "ette", "eivät", "eivat", "not", "no", "non"})


def is_number(key: str | None) -> bool:
    return bool(key) and NUMBER.fullmatch(key or "") is not None


def as_number(key: str) -> float:
    return float(key.replace(",", "."))


def reads_as_duration(value: str) -> bool:
    """A response time in a form other than a plain number (12:30, 0:12:30, 12 min), by the loader's own rule."""
    return any(read_duration(value, clock=clock).number is not None for clock in DURATION_CLOCKS)


# a survey's response time, in minutes, that is believable: what tells m:ss from h:mm when a person is asked
LIKELY_RESPONSE_MINUTES = (1.0, 180.0)


def duration_clock_proposal(values: dict[str, int]) -> tuple[str, list[str]] | None:
    """How the column's response times of two parts (12:30) are read, proposed for a person to confirm: the
    reading (m:ss or h:mm) under which more of its rows are a believable response time (1 minute to 3 hours),
    with the evidence; None when the column has no such value."""
    two_parts = {v: n for v, n in values.items() if read_duration(v).problem == AMBIGUOUS_DURATION}
    if not two_parts:
        return None
    low, high = LIKELY_RESPONSE_MINUTES
    believable: dict[str, int] = {}
    for clock in DURATION_CLOCKS:
        believable[clock] = sum(
            n for v, n in two_parts.items() if low <= (read_duration(v, clock=clock).number or 0.0) <= high
        )
    best = max(DURATION_CLOCKS, key=lambda clock: believable[clock])
    rows = sum(two_parts.values())
    evidence = [
        f"{rows} row(s) hold a response time of two parts ({', '.join(list(two_parts)[:3])}): minutes and seconds "
        "(m:ss) or hours and minutes (h:mm)?",
        *(f"read as {clock}, {believable[clock]} of them take 1 minute to 3 hours" for clock in DURATION_CLOCKS),
    ]
    return best, evidence


def point_of(key: str | None) -> int | None:
    """The scale point a value stands for: a whole number, or a labelled point's number."""
    if not key:
        return None
    if is_number(key):
        number = as_number(key)
        return int(number) if number.is_integer() else None
    found = LABELLED_POINT.fullmatch(key)
    return int(found.group(1)) if found else None


def has_contact_details(value: str) -> bool:
    """An e-mail address or a long number (a phone number) in a value: it is never quoted or written."""
    return looks_like_email(value) or LONG_NUMBER.search(unicodedata.normalize("NFKC", value)) is not None


# the words in small letters among a person's names ('Carl af Forselles', 'Ursula von der Leyen')
NAME_PARTICLES = frozenset(
    {"af", "av", "von", "van", "der", "den", "de", "di", "da", "du", "del", "della", "des", "dos", "das", "la", "le"}
    | {"zu", "ter", "ten"}
)
NAME_INITIAL = re.compile(r"[^\W\d_]\.(?:-?[^\W\d_]\.)*")  # 'M.', 'A.-L.', 'J.K.'
NAME_APOSTROPHES = "'\u2019"
# a header that says its column holds people's names or contact details ('Vastaajan nimi', 'Etunimi', 'Namn',
# 'Yhteyshenkilö', 'Contact person', 'Yhteystiedot'): word by word, under the matching rule
PERSONAL_HEADER_WORD = re.compile(
    r"\w*nimi|\w*nime[nt]|\w*nimeä|\w*nimensä|\w*names?|\w*namn(?:et)?|vastaaja\w*|respondents?|\w*henkilö[nt]?"
    r"|\w*henkilöä|yhteystie\w*|contacts?|kontakt\w*|puhelin\w*|phone|telefon\w*|\w*sähköposti\w*|e?-?mail\w*"
)


def _name_word_case(word: str) -> str | None:
    """How a word of a name is written: 'title' (Virtanen, Anna-Liisa, McDonald, O'Brien), 'upper' (VIRTANEN),
    'lower' (virtanen), 'initial' (M., A.-L.); None: not a word of a name (digits, brackets, one letter)."""
    if NAME_INITIAL.fullmatch(word):
        return "initial" if word[0].isupper() else "lower"
    parts = word.split("-")
    letters = ["".join(ch for ch in part if ch not in NAME_APOSTROPHES) for part in parts]
    if not all(len(part) >= 2 and part.isalpha() for part in letters):  # noqa: PLR2004
        return None
    if all(part.isupper() for part in letters):
        return "upper"
    if all(part.islower() for part in letters):
        return "lower"
    if all(part[0].isupper() for part in letters):
        return "title"
    return None


def looks_like_name(value: str, *, capitalised: bool = False) -> bool:
    """A value shaped like a person's name, however it is written: two or three names ('Matti Virtanen', 'Virtanen
    Matti', 'Anna-Liisa Virtanen-Korhonen'), each capitalised or in capitals ('VIRTANEN Matti'), initials ('M.
    Virtanen'), the surname first before a comma ('Virtanen, Matti'), particles among them ('Carl af Forselles',
    'von Wright, Georg'); or all in small letters ('matti virtanen'), where only the words' shape tells. An answer
    label is written as a sentence, its later words in small letters ('Muu johto', 'Täysin samaa mieltä'), or holds
    other characters ('Tietohallinto (ICT-johto)', '1. Kyllä'): never a name. `capitalised`: only a name whose
    capitals show it (not one all in small letters or all in capitals, whose shape a label may have too)."""
    text = unicodedata.normalize("NFKC", value).strip()
    if text.count(",") > 1 or (text.count(",") == 1 and not re.fullmatch(r"[^,]*\S,\s*\S[^,]*", text)):
        return False  # one comma at most, after the surname
    words = text.replace(",", " ").split()
    names = [w for w in words if w not in NAME_PARTICLES]
    if not 2 <= len(names) <= 3 or len(words) > NAME_WORDS:  # noqa: PLR2004
        return False
    cases = {_name_word_case(w) for w in names}
    if cases == {"initial"} or not (cases <= {"title", "upper", "initial"} or cases == {"lower"}):
        return False
    return "title" in cases or not capitalised


def says_personal(header: str) -> bool:
    """A header that says its column holds people's names or contact details: its answers may be private whatever
    they look like."""
    return any(PERSONAL_HEADER_WORD.fullmatch(w) for w in re.findall(r"\w+(?:-\w+)*", match_key(header) or ""))


def could_be_private(value: str) -> bool:
    """A value that may be a person's name, contact details or free text (a sentence): never quoted or written
    as a label without a person's confirmation."""
    words = value.split()
    sentence = len(words) >= SENTENCE_WORDS or (len(words) >= 3 and value.rstrip()[-1:] in ".!?")  # noqa: PLR2004
    return has_contact_details(value) or looks_like_name(value) or sentence


def slug(text: str, limit: int = 40) -> str:
    """An id from a wording or label: ASCII letters, digits and _, starting with a letter."""
    ascii_text = unicodedata.normalize("NFKD", match_key(text) or "").encode("ascii", "ignore").decode()
    words = re.sub(r"[^a-z0-9]+", " ", ascii_text).split()
    out = ""
    for word in words:
        if len(out) + len(word) + 1 > limit:
            break
        out = f"{out}_{word}" if out else word
    out = out or "answer"
    return out if out[0].isalpha() else f"q_{out}"


def alternatives(text: str, extra: str | None = None) -> set[str]:
    """The ways a label names its option: itself and the parts it offers as alternatives, split at '/', inside and
    outside parentheses ('Tietohallinto (ICT-johto)': 'tietohallinto', 'ict johto'); `extra`: a further separator."""
    key = match_key(text) or ""
    parts = re.split(r"[/()]" + (f"|\\b{extra}\\b" if extra else ""), key)
    return {label_words(p) for p in [key, *parts] if label_words(p)}


@dataclass
class ColumnMatch:
    column: Column
    field: str | None  # a respondent field or question id; None: not mapped (kept in raw only)
    sure: bool
    evidence: list[str]
    new: bool = False  # a question no earlier wave asked
    answer_type: str = "category"
    scale: tuple[int, int] | None = None
    scale_sure: bool = True
    scale_evidence: str = ""
    numbered: bool = False  # whole numbers answering a question of labelled options: the options' numbers


@dataclass
class AnswerRow:
    question_id: str
    label: str  # as delivered
    code: str
    value: float | None
    label_en: str | None  # None: only a person knows it
    sort_order: int
    sure: bool
    evidence: list[str]
    new_code: bool = False


@dataclass
class AliasRow:
    spelling: str
    code: str | None
    evidence: list[str]
    rows: int


def _header_likeness(header: str, earlier: dict[int, str]) -> float:
    key = wording_key(header)
    return max(
        (
            max(fuzz.ratio(key, wording_key(h)), fuzz.token_set_ratio(key, wording_key(h))) / 100
            for h in earlier.values()
        ),
        default=0.0,
    )


def _wording(header: str, question: EarlierQuestion) -> float:
    key = wording_key(header)
    if not key:
        return 0.0
    # the earlier wordings as delivered, and in English: a file exported in the survey's English keeps its wording
    texts = [*question.texts.values(), *question.headers.values(), *question.texts_en.values()]
    return max(
        ((fuzz.token_set_ratio(key, wording_key(t)) + fuzz.token_sort_ratio(key, wording_key(t))) / 200 for t in texts),
        default=0.0,
    )


def english_wording(header: str, question: EarlierQuestion) -> tuple[str, bool, list[str]] | None:
    """The English wording of a mapped question from an earlier wave's (None when no earlier wave has one): sure
    when the Finnish wordings are the same but for the numbering and a scale's range, which the earlier English
    then takes from this header ('2. Missä vaiheessa ...' from 2018's 'Missä vaiheessa ...': '2. At which stage
    ...'); else the English of the most alike earlier wording, for a person to confirm that it says the same."""
    found = []
    for wave, text in question.texts.items():
        english = question.texts_en.get(wave, "")
        if not english.strip() or not wording_key(text):
            continue
        for wording in (text, english):  # a header in the survey's Finnish, or in its English
            alike = (
                fuzz.token_set_ratio(wording_key(header), wording_key(wording))
                + fuzz.token_sort_ratio(wording_key(header), wording_key(wording))
            ) / 2
            found.append((wording_key(wording) == wording_key(header), alike, wave, wording, english))
    if not found:
        return None
    same, alike, wave, text, english = max(found)
    carried = _carry_numbering_and_range(english, text, header)
    # the same wording but for what the carrying replaces: every range a bracketed scale's, on both sides
    bracketed = all(
        len(RANGE_IN_WORDING.findall(t)) == len(RANGE_IN_HEADER.findall(t)) for t in (text, header, english)
    )
    if same and carried is not None and bracketed:
        which = "English" if text == english else "Finnish"
        return carried, True, [f"{wave}'s English wording: the {which} is the same ({text!r})"]
    why = [
        f"{wave}'s English wording, of {text!r} ({round(alike)} % alike): confirm it says what this "
        "wave asks (its numbering and scale's range as this header's)"
    ]
    return carried if carried is not None else english, False, why


def _carry_numbering_and_range(english: str, finnish: str, header: str) -> str | None:
    """`english`, the translation of `finnish`, with the numbering and a scale's range of `header` instead of
    `finnish`'s ('Q3 At which stage ...' for 'Q3 Missä vaiheessa ...' becomes '2. At which stage ...' for '2. Missä
    vaiheessa ...'); None when the English does not carry them as the Finnish does."""
    numbered, numbering = NUMBERING.match(finnish), NUMBERING.match(header)
    body = english.strip()
    own = NUMBERING.match(body)
    if bool(numbered) != bool(own) or (numbered and own and numbered.group(0).strip() != own.group(0).strip()):
        return None  # the English numbered otherwise than the Finnish
    if own:
        body = body[own.end() :].strip()
    if not body[:1].isalpha():
        return None
    ranged, ranging = RANGE_IN_HEADER.search(finnish), RANGE_IN_HEADER.search(header)
    theirs = RANGE_IN_WORDING.findall(body)
    if ranged:
        if body.count(ranged.group(0)) != 1 or len(theirs) != 1:
            return None
        body = " ".join(body.replace(ranged.group(0), ranging.group(0) if ranging else "").split())
    elif theirs:
        return None  # a range in the English the Finnish does not have
    elif ranging:
        body = f"{body} {ranging.group(0)}"
    return f"{numbering.group(0).strip()} {body}" if numbering else body


def _text_values(column: Column) -> list[str]:
    return [v for v in column.values if not is_number(column.keys[v]) and point_of(column.keys[v]) is None]


def column_kind(column: Column) -> str:
    """empty, scale (whole numbers and labelled points only), quantity (other numbers), text or category."""
    keys = [k for k in column.keys.values() if k]
    if not keys:
        return "empty"
    if all(is_number(k) for k in keys):
        numbers = [as_number(k) for k in keys]
        whole = all(n.is_integer() for n in numbers)
        return "scale" if whole and max(numbers) - min(numbers) <= WIDEST_SCALE and len(keys) > 1 else "quantity"
    if all(point_of(k) is not None for k in keys):
        return "scale"
    distinct = len(keys) / max(column.filled, 1)
    words = sum(len(k.split()) for k in keys) / len(keys)
    if (len(keys) >= FREE_TEXT_MIN and distinct >= DISTINCT_TEXT) or words >= SENTENCE_WORDS:
        return "text"
    return "category"


class Fields:
    """The respondent fields, recognised from the content of a column and its header (`recognise`)."""

    def __init__(self, delivery: Delivery, history: History) -> None:
        self.history = history
        self.free = [c for c in delivery.columns if c.filled]
        self.matches: list[ColumnMatch] = []
        role = history.questions.get("respondent_role")
        self.role_keys = {r["key"] for r in role.labels} if role else set()
        self.role_keys |= {a for label in history.role_codes.values() for a in alternatives(label, "tai")}

    def take(self, field_id: str, test: Callable[[Column], tuple[float, float, str] | None]) -> None:
        """The column that passes `test` best ((content share, header likeness, evidence) or None)."""
        scored = [(c, r) for c in self.free if (r := test(c)) is not None]
        if not scored:
            return
        column, (share, header, why) = max(scored, key=lambda item: (item[1][0] + item[1][1], -item[0].position))
        rivals = [c.header for c, r in scored if c is not column and r[0] + r[1] >= share + header - 0.1]
        enough = SURE_SHARE if field_id != "respondent_role" else CITY_SHARE
        sure = (share >= enough or (share >= LIKELY_SHARE and header >= HEADER_SAME)) and not rivals
        evidence = [why]
        if header:
            evidence.append(f"header {round(100 * header)} % like the earlier waves' {field_id} headers")
        if rivals:
            evidence.append(f"other columns fit almost as well: {', '.join(rivals)}")
        self.matches.append(ColumnMatch(column, field_id, sure, evidence))
        self.free.remove(column)

    def likeness(self, column: Column, field_id: str) -> float:
        return _header_likeness(column.header, self.history.field_headers.get(field_id, {}))

    def recognise(self) -> list[ColumnMatch]:
        aliases = self.history.aliases

        def email(c: Column) -> tuple[float, float, str] | None:
            share = c.share(looks_like_email)
            return (
                (
                    share,
                    self.likeness(c, "respondent_email"),
                    f"{round(100 * share)} % of the values are e-mail addresses",
                )
                if share >= LIKELY_SHARE
                else None
            )

        def submitted(c: Column) -> tuple[float, float, str] | None:
            share = c.times / c.filled
            return (
                (share, self.likeness(c, "submitted_at"), f"{round(100 * share)} % of the values read as timestamps")
                if share >= LIKELY_SHARE
                else None
            )

        def city(c: Column) -> tuple[float, float, str] | None:
            share = c.share(lambda v: c.keys[v] in aliases)
            return (
                (
                    share,
                    self.likeness(c, "city"),
                    f"{round(100 * share)} % of the values name a municipality under the matching rule",
                )
                if share >= CITY_SHARE
                else None
            )

        def role(c: Column) -> tuple[float, float, str] | None:
            share = c.share(lambda v: bool(alternatives(v, "tai") & self.role_keys))
            header = self.likeness(c, "respondent_role")
            if share < ROLE_SHARE and header < HEADER_SAME:
                return None
            if column_kind(c) not in ("category", "text"):
                return None
            return (share, header, f"{round(100 * share)} % of the values are earlier waves' job titles")

        def minutes(c: Column) -> tuple[float, float, str] | None:
            header = self.likeness(c, "response_minutes")
            clocks = c.share(lambda v: not is_number(c.keys[v]) and reads_as_duration(v))
            if clocks >= LIKELY_SHARE:  # 12:30, 0:12:30, 12 min: a response time, of a form to confirm
                why = f"{round(100 * clocks)} % of the values are response times ({', '.join(list(c.values)[:3])})"
                return (clocks if header >= HEADER_SAME else min(clocks, LIKELY_SHARE - 0.01), header, why)
            share = c.share(lambda v: is_number(c.keys[v]))
            if share < LIKELY_SHARE or (column_kind(c) != "quantity" and header < HEADER_SAME):
                return None
            why = f"{round(100 * share)} % of the values are numbers" + (
                ", not a scale's points" if column_kind(c) == "quantity" else ""
            )
            return (share if header >= HEADER_SAME or column_kind(c) == "quantity" else 0.0, header, why)

        def name(c: Column) -> tuple[float, float, str] | None:
            header = self.likeness(c, "respondent_name")
            # values shaped like personal names: the respondent's own only when nearly every row has another one
            # (the same few names on many rows are someone else's, such as a contact person's)
            # (names without capitals, all in small letters or all in capitals, only under a header that says names)
            named = header >= HEADER_SAME or says_personal(c.header)
            shaped = c.share(lambda v: looks_like_name(v, capitalised=not named))
            if shaped >= LIKELY_SHARE:
                share = shaped if header >= HEADER_SAME else min(shaped, LIKELY_SHARE - 0.01)
                why = f"{round(100 * shaped)} % of the values are shaped like personal names"
                names = len({k for k in c.keys.values() if k})
                if names / c.filled < DISTINCT_TEXT:
                    share = min(share, LIKELY_SHARE - 0.01)
                    why += (
                        f", but the same names recur ({names} different on {c.filled} rows): perhaps not each "
                        "respondent's own name (a contact person's?)"
                    )
                return (share, header, why)
            if column_kind(c) != "text":
                return None
            short = c.share(lambda v: len((c.keys[v] or "").split()) <= NAME_WORDS and not looks_like_email(v))
            if short < LIKELY_SHARE:
                return None
            share = short if header >= HEADER_SAME else min(short, LIKELY_SHARE - 0.01)
            return (share, header, f"{round(100 * short)} % short texts, nearly all different")

        self.take("respondent_email", email)
        self.take("submitted_at", submitted)
        self.take("city", city)
        self.take("respondent_role", role)
        self.take("response_minutes", minutes)
        self.take("respondent_name", name)
        return self.matches


def _answer_likeness(column: Column, question: EarlierQuestion) -> tuple[float, float]:
    """(exact, fuzzy): the share of the column's worded values that are the question's earlier labels under the
    matching rule, and their mean closeness (rapidfuzz ratio of their words) to the nearest earlier label."""
    texts = _text_values(column)
    labels = {r["key"] for r in question.labels}
    if not texts or not labels:
        return 0.0, 0.0
    exact = sum(column.keys[v] in labels for v in texts) / len(texts)
    words = [label_words(r["source_label"]) for r in question.labels]
    fuzzy = sum(max(fuzz.ratio(label_words(v), w) for w in words) / 100 for v in texts) / len(texts)
    return exact, fuzzy


def _was_scale(question: EarlierQuestion) -> bool:
    return any(t == "scale" for t, _lo, _hi in question.types.values())


def _evidence_for(column: Column, kind: str, question: EarlierQuestion, position: float) -> dict[str, float]:
    exact, fuzzy = _answer_likeness(column, question)
    if kind == "scale":
        points = [p for v in column.values if (p := point_of(column.keys[v])) is not None]
        ranges = [(lo, hi) for t, lo, hi in question.types.values() if t == "scale"]
        fits = any(lo is not None and hi is not None and lo <= min(points) and max(points) <= hi for lo, hi in ranges)
        answers = max(0.5 * exact + 0.5 * fuzzy, 0.6 if fits else 0.4 if ranges else 0.0)
        kind_fits = 1.0 if ranges else 0.0
    else:
        answers = 0.5 * exact + 0.5 * fuzzy
        kind_fits = 1.0 if not _was_scale(question) else 0.5 if _text_values_known(question) else 0.0
    places = list(question.positions.values())
    place = 1 - abs(position - places[-1]) if places else 0.5
    wording = _wording(column.header, question)
    score = (
        WEIGHTS["wording"] * wording
        + WEIGHTS["answers"] * answers
        + WEIGHTS["type"] * kind_fits
        + WEIGHTS["position"] * place
    )
    return {"score": score, "wording": wording, "exact": exact, "fuzzy": fuzzy, "type": kind_fits, "place": place}


def _text_values_known(question: EarlierQuestion) -> bool:
    return any(not is_number(r["key"]) for r in question.labels)


def scale_of(column: Column, match: ColumnMatch, question: EarlierQuestion | None) -> None:
    """The scale's ends: from the header's '(1-7)', from its labelled ends, or from an earlier wave's range that
    holds every point seen; otherwise the points seen, for a person to confirm."""
    points = sorted({p for v in column.values if (p := point_of(column.keys[v])) is not None})
    labelled = sorted(
        {
            p
            for v in column.values
            if column.keys[v] and LABELLED_POINT.fullmatch(column.keys[v] or "")
            for p in [point_of(column.keys[v])]
            if p is not None
        }
    )
    stated = RANGE_IN_HEADER.search(column.header)
    earlier = None
    if question is not None:
        latest = max(question.types, default=None)
        if latest is not None and question.types[latest][0] == "scale":
            earlier = question.types[latest]
    match.answer_type = "scale"
    if stated:
        match.scale = (int(stated.group(1)), int(stated.group(2)))
        match.scale_evidence = f"the header says {stated.group(0)}"
    elif len(labelled) >= 2 and labelled[0] == points[0] and labelled[-1] == points[-1]:  # noqa: PLR2004
        match.scale = (labelled[0], labelled[-1])
        match.scale_evidence = "its ends carry words"
    elif (
        earlier
        and earlier[1] is not None
        and earlier[2] is not None
        and points
        and (earlier[1] <= points[0] and points[-1] <= earlier[2])
    ):
        match.scale = (int(earlier[1]), int(earlier[2]))
        match.scale_evidence = f"{int(earlier[1])}-{int(earlier[2])} in {latest}, and every point seen is on it"
        match.scale_sure = points[0] == earlier[1] and points[-1] == earlier[2]
        if not match.scale_sure:
            match.scale_evidence += ", though not both ends were answered"
    else:
        match.scale = (points[0], points[-1]) if points else (1, 5)
        match.scale_sure = False
        match.scale_evidence = "only the points answered: the ends may lie further out"


def match_questions(delivery: Delivery, history: History, taken: list[ColumnMatch]) -> list[ColumnMatch]:
    """Every column that is no respondent field, matched to an earlier wave's question or proposed as new."""
    from scipy.optimize import linear_sum_assignment

    used = {id(m.column) for m in taken}
    columns = [c for c in delivery.columns if id(c) not in used]
    kinds = {c.position: column_kind(c) for c in columns}
    asked = [c for c in columns if kinds[c.position] != "empty"]
    questions = [q for q in history.questions.values() if q.question_id != "respondent_role"]
    position = {c.position: i / max(len(asked) - 1, 1) for i, c in enumerate(asked)}
    evidence = {
        (c.position, q.question_id): _evidence_for(c, kinds[c.position], q, position[c.position])
        for c in asked
        for q in questions
    }
    assigned: dict[int, EarlierQuestion] = {}
    if asked and questions:
        cost = [[-evidence[(c.position, q.question_id)]["score"] for q in questions] for c in asked]
        rows, cols = linear_sum_assignment(cost)
        assigned = {asked[r].position: questions[k] for r, k in zip(rows, cols, strict=True)}
    matches = []
    for column in columns:
        kind = kinds[column.position]
        if kind == "empty":
            matches.append(ColumnMatch(column, None, True, ["no answers in the column: not mapped (kept in raw)"]))
            continue
        matches.append(_judge(column, kind, assigned, evidence, questions, history))
    return matches


def _judge(
    column: Column,
    kind: str,
    assigned: dict[int, EarlierQuestion],
    evidence: dict[tuple[int, str], dict[str, float]],
    questions: list[EarlierQuestion],
    history: History,
) -> ColumnMatch:
    question = assigned.get(column.position)
    if question is not None:
        e = evidence[(column.position, question.question_id)]
        others = [evidence[(column.position, q.question_id)]["score"] for q in questions if q is not question]
        # another column counts as a rival only when it would rather be this question than the one it matched
        own = {p: evidence[(p, q.question_id)]["score"] for p, q in assigned.items()}
        rivals = [
            v["score"]
            for (p, qid), v in evidence.items()
            if qid == question.question_id and p != column.position and v["score"] >= own.get(p, 0.0)
        ]
        margin = e["score"] - max([*others, *rivals], default=0.0)
        why = [
            f"wording {round(100 * e['wording'])} % like {question.question_id}'s in earlier waves",
            f"answers: {round(100 * e['exact'])} % the same labels, {round(100 * e['fuzzy'])} % alike",
            f"type {'fits' if e['type'] >= 1 else 'partly fits' if e['type'] > 0 else 'differs'}",
            f"place among the questions {round(100 * e['place'])} % alike",
            f"score {e['score']:.2f}, {margin:.2f} ahead of the next candidate",
        ]
        # answers alone never make a match sure: another question may offer the same options (or a scale the same
        # words for its points); without the wording's evidence too, a person decides
        strong = e["wording"] >= SURE_WORDING
        # the same wording, and no other question (or column) worded alike: answers that cannot tell scales of one
        # range apart do not make it less sure
        worded_alike = [
            v["wording"] for (p, qid), v in evidence.items() if (p == column.position) != (qid == question.question_id)
        ]
        by_wording = e["wording"] >= SAME_WORDING and e["wording"] - max(worded_alike, default=0.0) >= WORDING_MARGIN
        if (
            e["score"] >= SURE_SCORE and (margin >= SURE_MARGIN or by_wording) and strong and e["type"] >= 0.5  # noqa: PLR2004
        ):
            match = ColumnMatch(column, question.question_id, True, why)
        elif e["score"] >= PROPOSE_SCORE and (e["wording"] >= PROPOSE_WORDING or e["exact"] >= PROPOSE_EXACT):
            match = ColumnMatch(column, question.question_id, False, why)
        else:
            match = None
        if match is not None:
            if kind == "scale" and numbers_for_options(column, question):
                match.numbered, match.sure = True, False
                match.evidence.append(
                    "its answers are whole numbers where earlier waves answered it with its options' labels: the "
                    "file may hold the survey tool's numbers for the options, not their labels (re-export it with "
                    "labels, or confirm each number's option below; if the question became a scale, make it one in "
                    "codebook_questions.csv)"
                )
            elif kind == "scale":
                scale_of(column, match, question)
            elif _was_scale(question) and e["exact"] > 0:
                latest = max(question.types)
                lo, hi = question.types[latest][1:]
                match.answer_type, match.scale = "scale", (int(lo or 0), int(hi or 0))
                match.scale_evidence = f"worded points of the scale of {latest}"
                match.scale_sure = e["exact"] >= 1
            return match
    if kind == "text":
        return ColumnMatch(
            column,
            None,
            True,
            [
                f"free text ({len(column.values)} different values in {column.filled} answers), like no earlier "
                "question: not mapped (kept in raw)"
            ],
        )
    taken_ids = {q.question_id for q in questions} | set(history.questions)
    new_id = slug(wording_key(column.header) or column.header)
    while new_id in taken_ids:
        new_id += "_new"
    best = max(((evidence[(column.position, q.question_id)]["score"], q.question_id) for q in questions), default=None)
    why = ["like no question of the earlier waves" + (f" (closest: {best[1]}, score {best[0]:.2f})" if best else "")]
    match = ColumnMatch(column, new_id, False, why, new=True)
    if kind == "scale":
        scale_of(column, match, None)
    return match


def _option_order(question: EarlierQuestion) -> tuple[int, list[str]]:
    """The latest earlier wave's options of a question, by code in their order (sort_order), and that wave."""
    latest = max(int(r["wave_year"]) for r in question.labels)
    rows = [r for r in question.labels if int(r["wave_year"]) == latest]
    rows.sort(key=lambda r: int(r["sort_order"]) if r.get("sort_order", "").isdigit() else 0)
    return latest, list(dict.fromkeys(r["answer_code"] for r in rows))


def numbers_for_options(column: Column, question: EarlierQuestion) -> bool:
    """Whether a column of whole numbers answers a question the earlier waves asked with labelled options (not a
    scale): its numbers are then most likely the survey tool's numbers for the options (1 the first)."""
    if _was_scale(question) or not question.labels or not _text_values_known(question):
        return False
    numbers = [as_number(k) for k in column.keys.values() if k]
    return bool(numbers) and all(n.is_integer() and n >= 0 for n in numbers)


def _numbered_rows(match: ColumnMatch, question: EarlierQuestion) -> list[AnswerRow]:
    """Each number of a column of option numbers (`ColumnMatch.numbered`) proposed as the option in that place of
    the latest earlier wave's list, always for a person to confirm: a survey tool numbers options as it lists them,
    but the list may have changed."""
    latest, order = _option_order(question)
    codes = question.codes()
    labels = {r["answer_code"]: r["source_label"] for r in question.labels if int(r["wave_year"]) == latest}
    rows = []
    for value in sorted(match.column.values, key=lambda v: as_number(match.column.keys[v] or "0")):
        number = int(as_number(match.column.keys[value] or "0"))
        if 1 <= number <= len(order):
            code = order[number - 1]
            why = [f"number {number}: the option in place {number} of {latest}'s list, {labels[code]!r} ({code})"]
            rows.append(_earlier_row(match.field or "", value, code, codes, False, why))
        else:
            why = [f"number {number}: no option has place {number} in {latest}'s list of {len(order)}"]
            rows.append(AnswerRow(match.field or "", value, f"option_{number}", None, None, number, False, why, True))
    return rows


def propose_answers(match: ColumnMatch, history: History) -> list[AnswerRow]:
    """Every distinct answer of a mapped question (or job title) coded: an earlier label under the matching rule,
    the same option named with an alternative ('Tietohallinto (ICT-johto)' for 'Tietohallinto'), or a proposal;
    a column of the options' numbers by their places (`_numbered_rows`)."""
    question = None if match.new else history.questions.get(match.field or "")
    if match.numbered and match.answer_type == "category" and question is not None:
        return _numbered_rows(match, question)
    return _labelled_rows(match, question, history)


def _labelled_rows(match: ColumnMatch, question: EarlierQuestion | None, history: History) -> list[AnswerRow]:
    column, qid = match.column, match.field or ""
    labels = question.labels if question else []
    codes = question.codes() if question else {}
    by_key: dict[str, set[str]] = {}
    for r in labels:
        by_key.setdefault(r["key"], set()).add(r["answer_code"])
    # job titles are coded to the roles of respondent_roles.csv only (a closed list), named by their labels too
    roles = {c: alternatives(label, "tai") for c, label in history.role_codes.items()}
    roles = roles if qid == "respondent_role" else {}
    forms = _option_forms(labels, roles)
    alt_codes: dict[str, set[str]] = {}
    for r in labels:
        for a in alternatives(r["source_label"]):
            alt_codes.setdefault(a, set()).add(r["answer_code"])
    for code, names in roles.items():
        for a in names:
            alt_codes.setdefault(a, set()).add(code)
    worded = _worded_values(labels if question else None, history)
    rows: list[AnswerRow] = []
    pending: list[tuple[str, str | None, list[str], bool]] = []
    for value in column.values:
        key = column.keys[value] or ""
        if match.answer_type == "scale" and is_number(key):
            continue  # a plain number on a scale needs no row
        if has_contact_details(value):
            continue  # never written into the codebook: the loader quarantines its row
        pending.append(_known_code(value, key, labels, by_key, alt_codes))
    open_ = [
        i
        for i, (value, _code, _why, sure) in enumerate(pending)
        if not sure
        and (column.keys[value] or "") not in by_key
        and not (match.answer_type == "scale" and point_of(column.keys[value]) is not None)
    ]
    _settle(pending, open_, forms, _option_labels(labels, history if roles else None), question, column)
    claimed: dict[str, int] = {}
    for _value, found, _why, _sure in pending:
        if found:
            claimed[found] = claimed.get(found, 0) + 1
    next_order = max((int(r["sort_order"]) for r in labels if r.get("sort_order", "").isdigit()), default=0) + 1
    for label, known, why, sure in pending:
        if known is not None:
            rows.append(_earlier_row(qid, label, known, codes, sure, why))
            continue
        rows.append(_proposed_row(qid, label, match, forms, codes, claimed, next_order, why, bool(roles), worded))
        next_order += 0 if rows[-1].code in codes else 1
    for row in rows:  # a code two delivered labels reach only through alternatives is for a person to confirm
        if (
            row.sure
            and claimed.get(row.code, 0) > 1
            and not any(column.keys.get(row.label) == r["key"] for r in labels)
        ):
            row.sure = False
            row.evidence.append(f"another label of this wave is also coded {row.code!r}")
        if qid == "respondent_role" and row.label_en is None:  # the role's own English label
            row.label_en = history.role_labels_en.get(row.code)
    return rows


def _option_labels(labels: list[dict[str, str]], history: History | None) -> dict[str, set[str]]:
    """Each earlier option's labels as the earlier waves spelled them (no alternatives), by code; with a `history`,
    the roles' own labels too (a job title's closed list)."""
    named = {code: {label} for code, label in history.role_codes.items()} if history else {}
    for r in labels:
        named.setdefault(r["answer_code"], set()).add(r["source_label"])
    return named


def _settle(
    pending: list[tuple[str, str | None, list[str], bool]],
    open_: list[int],
    forms: dict[str, set[str]],
    named: dict[str, set[str]],
    question: EarlierQuestion | None,
    column: Column,
) -> None:
    """Labels no earlier wave used coded as earlier options where the words leave no other reading: the same words
    (`_settle_by_words`), the same words once the question's frame is left out (`_settle_by_frame`), the one
    option for 'other' (`_settle_the_other_option`, by the options' labels, `named`)."""
    _settle_by_words(pending, open_, forms)
    if question is not None:
        framed, frame = _framed_forms(question, frame_words(column.header), [value for value, *_ in pending])
        _settle_by_frame(pending, open_, framed, frame)
    _settle_the_other_option(pending, open_, named)


def _option_forms(labels: list[dict[str, str]], roles: dict[str, set[str]]) -> dict[str, set[str]]:
    """Each earlier option's names: its labels in every earlier wave and the alternatives they offer (and a job
    title's role, by the role's own label and its alternatives)."""
    forms: dict[str, set[str]] = {code: set(names) for code, names in roles.items()}
    for r in labels:
        forms.setdefault(r["answer_code"], set()).update({r["source_label"], *alternatives(r["source_label"])})
    return forms


def closest_options(value: str, forms: dict[str, set[str]]) -> list[tuple[float, str, str]]:
    """How alike a label is to each earlier option, the closest first: (rapidfuzz WRatio of their words, 0-100; the
    option's code; its name that came closest)."""
    words = label_words(value)
    found = []
    for code, names in forms.items():
        score, name = max(((fuzz.WRatio(words, label_words(n)), n) for n in names), default=(0.0, ""))
        found.append((score, code, name))
    return sorted(found, key=lambda item: (-item[0], item[1]))


def _settle_by_words(
    pending: list[tuple[str, str | None, list[str], bool]], open_: list[int], forms: dict[str, set[str]]
) -> None:
    """A label no earlier wave used (`open_`: their places in `pending`) is coded as an earlier option, sure, when
    it is one of the option's names in the same words (`_same_words_inflected`: in any order, punctuation and
    brackets aside, a word in another case or number, none dropped or added), and the two are each
    other's closest match by LABEL_MARGIN: the option is closer to the label than any other option is, closer to it
    than to any other label of this wave no earlier wave used, and no label of this wave has its code already. A
    label as close to two options ('Toteutussuunnittelu': 'Toteutus', 'Suunnittelu'), or an option split into two
    labels in its words, stays for a person."""
    taken = {code for _value, code, _why, sure in pending if sure and code}
    ranked = {i: closest_options(pending[i][0], forms) for i in open_}
    for i in open_:
        value, _code, _why, _sure = pending[i]
        if not ranked[i]:
            continue
        score, code, _name = ranked[i][0]
        runner_up = ranked[i][1][0] if len(ranked[i]) > 1 else 0.0
        rival = max((s for j in open_ if j != i for s, c, _n in ranked[j] if c == code), default=0.0)
        words = sorted(n for n in forms[code] if _same_words_inflected(value, n))
        if code in taken or not words or min(score - runner_up, score - rival) < LABEL_MARGIN:
            continue
        why = (
            f"in the words of the earlier label {words[0]!r} ({code}), {round(score)} % alike: "
            f"{round(score - runner_up)} points closer than any other option, and "
            f"{round(score - rival)} closer than any other new label of this wave"
        )
        pending[i] = (value, code, [why], True)


def frame_words(*wordings: str) -> set[str]:
    """The words of a question's wording that may name the question's frame in its options (long enough to be a
    word of their own, SHORT_STEM letters at least): 'Missä vaiheessa tietohallinto otetaan mukaan?' gives
    'vaiheessa', whose 'Strategiavaiheessa' is the option 'Strategia' at the stage the question asks about."""
    return {w for text in wordings for w in wording_key(text).split() if len(w) >= SHORT_STEM and not w.isdigit()}


def option_core(label: str, frame: set[str]) -> tuple[str, str | None]:
    """A label without its question's frame, and the frame word left out (None: none was): its last word, or the
    last part of its last word, when that is a word of `frame`, the same or in another case ('Strategiavaiheessa' -
    'strategia', 'Ei missään vaiheessa' - 'ei missään', 'Strategy stage' - 'strategy' when the question asks about a
    stage). What is left keeps SHORT_STEM letters of the last word: 'Valmistelussa' keeps its 'valmis' tail to
    'valmistelussa' whatever the question asks. A label that loses its frame loses the words saying how early or
    late too (WHEN_WORDS, standing alone: 'Vasta hankintavaiheessa' - 'hankinta', never 'Vasta-ehdotus')."""
    words = label_words(label).split()
    if not words or not frame:
        return " ".join(words), None
    last, cut, rest = words[-1], None, words
    if len(words) > 1 and any(_inflected(last, f) for f in frame):
        cut, rest = last, words[:-1]
    else:
        for at in range(SHORT_STEM, len(last) - SHORT_STEM + 1):
            if any(_inflected(last[at:], f) for f in frame):
                cut, rest = last[at:], [*words[:-1], last[:at]]
                break
    if cut is None:
        return " ".join(words), None
    alone = set((match_key(label) or "").split())  # words not joined to another by a hyphen or a dash
    return " ".join([w for w in rest if not (w in WHEN_WORDS and w in alone)] or rest), cut


def _list_frame(labels: list[str], words: set[str]) -> set[str]:
    """The words of `words` that frame a list of options: each ends at least two of them (`option_core`). A word
    that ends one option only ('Toimialat ja kaupunginjohto' asked 'tietohallinto, toimialat vai kaupunginjohto?')
    names that option, not the question's frame."""
    return {f for f in words if sum(option_core(label, {f})[1] is not None for label in labels) >= 2}  # noqa: PLR2004


def _framed_forms(
    question: EarlierQuestion, asked: set[str], delivered: list[str]
) -> tuple[dict[str, set[tuple[str, str | None]]], set[str]]:
    """Each earlier option's labels by code, whole and without their list's frame (`option_core`: the words left
    and the frame word left out), and the frame of the delivered labels (`delivered`, asked by the words `asked`).
    A frame is a word both questions ask by (the same word or in another case) that frames its list of options
    (`_list_frame`): each wave's labels lose only what that wave and this one ask alike."""
    found: dict[str, set[tuple[str, str | None]]] = {}
    shared: set[str] = set()
    for wave in sorted({int(r["wave_year"]) for r in question.labels}):
        rows = [r for r in question.labels if int(r["wave_year"]) == wave]
        theirs = frame_words(question.texts.get(wave, ""), question.headers.get(wave, ""))
        frame = _list_frame(
            [r["source_label"] for r in rows], {w for w in theirs if any(_inflected(w, a) for a in asked)}
        )
        shared |= {a for a in asked if any(_inflected(a, w) for w in theirs)}
        for r in rows:
            found.setdefault(r["answer_code"], set()).update(
                {option_core(r["source_label"], frame), (label_words(r["source_label"]), None)}
            )
    return found, _list_frame(delivered, shared)


def _reads_as(core: tuple[str, str | None], earlier: tuple[str, str | None]) -> bool:
    """Whether a label without its frame reads as an earlier one: the same words (`_same_words_inflected`), a frame
    left out of one of them at least, and the same frame word when both lost one ('Erittäin hyvin' is no 'Erittäin
    huonosti' when the question asks 'Kuinka hyvin tai huonosti ...')."""
    (words, cut), (their_words, their_cut) = core, earlier
    if cut is None and their_cut is None:
        return False
    if cut is not None and their_cut is not None and not _inflected(cut, their_cut):
        return False
    return _same_words_inflected(words, their_words)


def _settle_by_frame(
    pending: list[tuple[str, str | None, list[str], bool]],
    open_: list[int],
    framed: dict[str, set[tuple[str, str | None]]],
    frame: set[str],
) -> None:
    """A label no earlier wave used, still open after `_settle_by_words`, coded as an earlier option, sure, when it
    reads as that option once the question's frame is left out (`_reads_as`): 'Strategiavaiheessa' in a question
    'Missä vaiheessa ...' is 2018's 'Strategia', and 'Suunnittelu' is 2016's 'Suunnitteluvaiheessa'. Only when
    exactly one option reads so, no label of this wave is sure of its code already and no other open label reads
    as it: anything else stays for a person (a compound or a word dropped is not the same words:
    'Hankintapäätösvaiheessa' is no 'Hankinta')."""
    taken = {code for _value, code, _why, sure in pending if sure and code}
    reads: dict[int, set[str]] = {}
    for i in open_:
        value, _code, _why, sure = pending[i]
        if sure:
            continue
        core = option_core(value, frame)
        reads[i] = {c for c, cores in framed.items() for f in cores if _reads_as(core, f)}
    for i, codes in reads.items():
        if len(codes) != 1:
            continue
        code = next(iter(codes))
        if code in taken or any(code in other for j, other in reads.items() if j != i):
            continue
        value = pending[i][0]
        earlier = sorted(f[0] for f in framed[code] if _reads_as(option_core(value, frame), f))
        why = (
            f"in the words of the earlier option {code!r} ({earlier[0]!r}) once the words naming the question are "
            "left out on each side, and no other option or label of this wave reads so"
        )
        pending[i] = (value, code, [why], True)


def _says_other(label: str) -> bool:
    """Whether a label begins with a word for 'other' ('Muu', 'Muu kuin johto', 'Other')."""
    words = label_words(label).split()
    return bool(words) and words[0] in OTHER_WORDS


def _other_rest(label: str) -> list[str] | None:
    """A label for 'other' ('Muu', 'Muu johtotehtävä', 'Other'): its words after the first, the word for 'other';
    None for any other label, and for one that says what it is not ('Ei muuta', 'Muu kuin johto': EXCEPT_WORDS),
    which is still an 'other' label (`_says_other`) no label is coded as by its words."""
    words = label_words(label).split()
    if not _says_other(label) or sum(w in OTHER_WORDS for w in words) != 1:
        return None
    if NEGATIONS.intersection(words) or EXCEPT_WORDS.intersection(words):
        return None
    return words[1:]


def _settle_the_other_option(
    pending: list[tuple[str, str | None, list[str], bool]], open_: list[int], named: dict[str, set[str]]
) -> None:
    """The one 'other' label of this wave ('Muu', 'Muut') coded, sure, as the one earlier option whose label says
    'other' (`_other_rest`: 'Muu johto'), by its labels (`named`, no alternatives: 'Kaupunginjohto tai muu ylin
    johto' is no 'other' option): a question's catch-all stays its catch-all, when neither side has a second label
    for 'other', the label is still open, and each of its further words is one of the earlier label's, the same or
    in another case. 'Muu asiantuntija' (another expert) or 'Muu johtotehtävä' for 'Muu johto', and 'Muu kunta' for
    'Muu kuntayhtymä', stay for a person, as does a label whose other option's code another label of this wave has."""
    others = [i for i, (value, *_rest) in enumerate(pending) if _says_other(value)]
    earlier = {code: names for code, names in named.items() if any(_says_other(n) for n in names)}
    if len(others) != 1 or others[0] not in open_ or pending[others[0]][3] or len(earlier) != 1:
        return
    if _other_rest(pending[others[0]][0]) is None:
        return
    i, (code, names) = others[0], next(iter(earlier.items()))
    if any(found == code for j, (_v, found, _w, _s) in enumerate(pending) if j != i):
        return
    value, rest = pending[i][0], _other_rest(pending[i][0]) or []
    for name in sorted(names):
        their = _other_rest(name)
        if their is not None and all(any(_inflected(w, o) for o in their) for w in rest):
            why = f"the one option for 'other' in this wave and in the earlier ones ({name!r}, {code})"
            pending[i] = (value, code, [why], True)
            return


def _known_code(
    value: str,
    key: str,
    labels: list[dict[str, str]],
    by_key: dict[str, set[str]],
    alt_codes: dict[str, set[str]],
) -> tuple[str, str | None, list[str], bool]:
    """The code an earlier wave gave the same label, or the same option named with an alternative (sure), or the
    earlier label in shortened words (a proposal, sure only by `_settle_by_words`); None if none."""
    if key in by_key and len(by_key[key]) == 1:
        waves = sorted({r["wave_year"] for r in labels if r["key"] == key})
        return value, next(iter(by_key[key])), [f"the same label under the matching rule in {', '.join(waves)}"], True
    if key in by_key:
        return value, None, [f"earlier waves coded this label differently: {sorted(by_key[key])}"], False
    hits = {c for a in alternatives(value) for c in alt_codes.get(a, set())}
    if len(hits) == 1:
        code = next(iter(hits))
        return value, code, [f"names the option of {code!r} (the same words, or one of its alternatives)"], True
    if not hits:
        shortened = {r["answer_code"]: r["source_label"] for r in labels if _shortens(value, r["source_label"])}
        if len(shortened) == 1:
            code, earlier = next(iter(shortened.items()))
            return value, code, [f"the words of the earlier label {earlier!r} ({code}), shortened"], False
    return value, None, [], False


# What may follow a word for it to be the same word in another case or number (Finnish case and plural endings,
# after the stem's vowel: 'vaihe' - 'vaiheessa'; English and Swedish plurals and articles). Not a derivation or a
# compound, which change the meaning: 'valmis' (done) - 'valmistelussa' (in preparation), 'maksu' - 'maksuton'
# (free of charge), 'strategia' - 'strategiatta' (without a strategy), 'hankinta' - 'hankintapäätös'.
INFLECTION = re.compile(
    r"[aeiouyäö]?(?:n|t|a|ä|ta|tä|ssa|ssä|sta|stä|lla|llä|lta|ltä|lle|ksi|na|nä|ine|in|en|ihin|iin|ita|itä|issa|"
    r"issä|ista|istä|illa|illä|ilta|iltä|ille|iksi)|s|es|et|er|erna|arna|orna"
)


def _same_words_inflected(label: str, earlier: str) -> bool:
    """Whether `label` is `earlier` in the same words, in any order, each the same or the same word in another case
    or number (one is the other and an INFLECTION ending), as many words, the same negations: what makes a label no
    earlier wave used sure to be that option. Dropping a word may change the meaning ('Johto' for 'Muu johto'),
    and so may a derivation ('Valmis' for 'Valmistelussa'): those stay proposals for a person (`_shortens`)."""
    words, others = label_words(label).split(), label_words(earlier).split()
    if not words or len(words) != len(others) or max(len(w) for w in words) < SHORT_STEM:
        return False
    free = list(others)
    for word in words:
        same = next((o for o in free if _inflected(word, o)), None)
        if same is None:
            return False
        free.remove(same)
    return True


def _inflected(one: str, other: str) -> bool:
    """The same word, or the same stem (SHORT_STEM letters at least) with nothing or an INFLECTION ending after it
    in each: 'vaihe' - 'vaiheessa', 'toimialajohtajat' - 'toimialajohtajille'."""
    if one == other:
        return True
    shorter = min(len(one), len(other))
    common = next((i for i in range(shorter) if one[i] != other[i]), shorter)
    for stem in range(common, max(SHORT_STEM, common - 2) - 1, -1):  # a stem's last vowel may begin an ending
        if all(rest == "" or INFLECTION.fullmatch(rest) for rest in (one[stem:], other[stem:])):
            return True
    return False


def _shortens(label: str, earlier: str) -> bool:
    """Whether `label` is `earlier` in the same word stems ('Strategia' for 'Jo strategiavaiheessa',
    'Hankintapäätösvaiheessa' for 'Hankinta'): each of its words is one of the earlier label's, or begins or ends
    the same as one (SHORT_STEM letters at least), at least one word is that long, and the earlier label has at most
    one word more. A negation dropped or added ('Nimetty vastuu' for 'Ei nimettyä vastuuta') is no shortening."""
    words, others = label_words(label).split(), label_words(earlier).split()
    if NEGATIONS.intersection(words) != NEGATIONS.intersection(others):
        return False
    if not words or len(others) - len(words) > 1 or max(len(w) for w in words) < SHORT_STEM:
        return False
    free = list(others)
    for word in words:
        same = next(
            (
                o
                for o in free
                if o == word or (min(len(o), len(word)) >= SHORT_STEM and (o.startswith(word) or word.startswith(o)))
            ),
            None,
        )
        if same is None:
            return False
        free.remove(same)
    return True


def _worded_values(labels: list[dict[str, str]] | None, history: History) -> dict[str, set[float]]:
    """The values the earlier waves gave a scale point's words: in this question's labels, or (a new question, None)
    in any scale question's."""
    sources = (
        labels if labels is not None else [r for q in history.questions.values() if _was_scale(q) for r in q.labels]
    )
    worded: dict[str, set[float]] = {}
    for r in sources:
        words = point_words(r["key"])
        if words and r.get("answer_value"):
            worded.setdefault(words, set()).add(float(r["answer_value"]))
    return worded


def point_words(key: str) -> str:
    """A label's words without a scale point's number ('5 = täysin samaa mieltä': 'täysin samaa mieltä')."""
    found = re.fullmatch(r"\d{1,2}\s*[=:\u2013\u2014-]\s*(\D.*)", key)
    return label_words(found.group(1) if found else key)


def _worded_point(
    qid: str, value: str, key: str, point: int, worded: dict[str, set[float]], scale: tuple[float, float] | None
) -> AnswerRow:
    """A worded point ('1 = täysin eri mieltä') coded by its number, sure only when the earlier waves gave its words
    that very value and the point is on the scale: a scale may run the other way round ('1 = täysin samaa mieltä',
    or the same in words no earlier wave used, in another language), be rescaled, or a number stand for no point at
    all ('6 = En osaa sanoa' on a 1-5 scale), and then only a person can tell."""
    words = point_words(key)
    earlier = sorted(worded.get(words, set()))
    outside = scale is not None and not scale[0] <= point <= scale[1]
    if earlier == [point] and not outside:
        why = [f"a worded point of the scale: {point}, the value earlier waves gave {words!r}"]
        return AnswerRow(qid, value, f"score_{point}", float(point), None, point, True, why)
    if outside and scale is not None:
        why = [
            f"{point} is outside the scale's ends ({scale[0]:g}-{scale[1]:g}): perhaps no point at all (a 'cannot "
            "say'); confirm its code and value, or leave its value empty"
        ]
        return AnswerRow(qid, value, f"score_{point}", float(point), None, point, False, why)
    if len(earlier) == 1 and earlier[0].is_integer():
        other = int(earlier[0])
        why = [
            f"the number says {point}, but earlier waves gave {words!r} the value {other}: the scale may run the "
            f"other way round; proposed as {other}"
        ]
        return AnswerRow(qid, value, f"score_{other}", float(other), None, other, False, why)
    known = (
        f"earlier waves gave {words!r} the values {earlier}" if earlier else f"no earlier wave worded a point {words!r}"
    )
    why = [
        f"a worded point of the scale: {point} by its number; {known}: confirm the scale runs the same way (not "
        "turned round)"
    ]
    return AnswerRow(qid, value, f"score_{point}", float(point), None, point, False, why)


def _earlier_row(
    qid: str, value: str, code: str, codes: dict[str, dict[str, str]], sure: bool, why: list[str]
) -> AnswerRow:
    earlier = codes.get(code, {})
    number = earlier.get("answer_value", "")
    order = earlier.get("sort_order", "")
    return AnswerRow(
        qid,
        value,
        code,
        float(number) if number else None,
        earlier.get("answer_label_en") or None,
        int(order) if order.isdigit() else 0,
        sure,
        why,
    )


def _proposed_row(
    qid: str,
    value: str,
    match: ColumnMatch,
    forms: dict[str, set[str]],
    codes: dict[str, dict[str, str]],
    claimed: dict[str, int],
    next_order: int,
    why: list[str],
    closed: bool,
    worded: dict[str, set[float]],
) -> AnswerRow:
    """A label no rule settles: the closest earlier option's code (always, for a closed list), the one earlier code
    no other label has, a scale point's, or a new code; for a person to confirm."""
    key = match.column.keys[value] or ""
    point = point_of(key)
    if match.answer_type == "scale" and point is not None:
        return _worded_point(qid, value, key, point, worded, match.scale)
    ranked = closest_options(value, forms)
    if ranked and (ranked[0][0] >= FUZZY_LABEL or closed):
        score, code, name = ranked[0]
        row = _earlier_row(
            qid, value, code, codes, False, [*why, f"{round(score)} % like the label {label_words(name)!r} ({code})"]
        )
        if claimed.get(code):
            row.evidence.append(f"{code!r} is already the code of another label of this wave")
        return row
    unused = sorted(set(codes) - set(claimed))
    if len(unused) == 1 and not match.new:
        code = unused[0]
        return _earlier_row(
            qid,
            value,
            code,
            codes,
            False,
            [*why, f"like no earlier label; {code!r} is the one earlier code no other label of this wave has"],
        )
    note = f"like no earlier label{' of ' + qid if codes else ''}" + (
        f"; earlier codes not used by this wave: {', '.join(unused)}" if unused and codes else ""
    )
    if match.answer_type == "scale":
        # a scale's worded label needs the point it stands for: the earlier waves' value of its words, or a person's
        earlier = sorted(worded.get(point_words(key), set()))
        if len(earlier) == 1 and earlier[0].is_integer():
            point = int(earlier[0])
            why = [*why, f"a label of a scale: earlier waves gave {point_words(key)!r} the point {point}"]
            return AnswerRow(qid, value, f"score_{point}", float(point), None, point, False, why)
        why = [*why, note, "a label of a scale: only a person knows the point it stands for"]
        return AnswerRow(qid, value, slug(value), None, None, next_order, False, why, new_code=True)
    # the code of a new question's option is only an id (its English label is for a person to write)
    return AnswerRow(qid, value, slug(value), None, None, next_order, match.new, [*why, note], new_code=True)


def propose_cities(match: ColumnMatch, history: History) -> tuple[list[AliasRow], dict[str, int]]:
    """City spellings that resolve to no municipality, with the nearest known name as a proposal."""
    column = match.column
    answering: dict[str, int] = {}
    unknown: dict[str, tuple[str, int]] = {}  # match key -> (its first spelling, rows): one alias row per key
    for value, rows in column.values.items():
        key = column.keys[value] or ""
        code = history.aliases.get(key)
        if code:
            answering[code] = answering.get(code, 0) + rows
        elif key:
            first, counted = unknown.get(key, (value, 0))
            unknown[key] = (first, counted + rows)
    # names compared without the organisation's words: 'Keravan kaupunki' and 'Rauman kaupunki' share only those
    stems: dict[str, set[str]] = {}
    spelled: dict[str, str] = {}
    for alias, code in history.aliases.items():
        for stem in city_stems(alias):
            stems.setdefault(stem, set()).add(code)
            spelled.setdefault(stem, alias)
    names = [stem for stem, codes in stems.items() if len(codes) == 1]
    aliases = []
    for key, (value, rows) in unknown.items():
        best = max(
            (
                (score, stem)
                for form in city_stems(key)
                if (found := process.extractOne(form, names, scorer=fuzz.ratio)) is not None
                for stem, score in [(found[0], found[1])]
            ),
            default=None,
        )
        if best and best[0] >= CITY_FUZZY:
            code = next(iter(stems[best[1]]))
            name = history.municipalities.get(code, code)
            why = [f"{round(best[0])} % like {spelled[best[1]]!r} ({name}, {code}), the organisation's words left out"]
            aliases.append(AliasRow(value, code, why, rows))
        else:
            aliases.append(AliasRow(value, None, ["like no municipality's name"], rows))
    return aliases, answering


def city_stems(key: str) -> set[str]:
    """A city name's forms to compare: its words without an organisation's ('kaupunki', 'stad', 'city', 'kunta'),
    and, where such a word followed a Finnish genitive, the name in the nominative ('keravan kaupunki': 'kerava')."""
    words = label_words(key).split()
    name = [w for w in words if w not in ORGANISATION_WORDS]
    if not name:
        return set()
    forms = {" ".join(name)}
    if len(name) < len(words) and name[-1].endswith("n") and len(name[-1]) > 3:  # noqa: PLR2004
        forms.add(" ".join([*name[:-1], name[-1][:-1]]))
    return forms
