"""`draft_wave`: a new wave's spec and codebook rows, proposed from its file and the earlier waves.

What the draft writes:
- config/waves/YEAR.yml: how the file is read, every column's field or question, the cities surveyed, the field
  period; each with its evidence as a comment
- the wave's rows of dbt_project/seeds/codebook_questions.csv and codebook_answers.csv, and proposed spellings of
  city names in city_aliases.csv

Whatever only a person can decide is written as a value that starts with `TODO:` (PLACEHOLDER), with the proposal
after it where there is one: the person replaces it with the answer (or deletes `TODO: ` to take the proposal).
The loader refuses a wave while one is left. Drafting again keeps everything a person decided (every value and row
without the placeholder) and proposes only what is still open.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from survey_warehouse.drafting.delivery import Delivery, detect_shape, read_delivery
from survey_warehouse.drafting.history import (
    SEEDS,
    WAVES,
    History,
    read_history,
    read_rows,
)
from survey_warehouse.drafting.propose import (
    AliasRow,
    AnswerRow,
    ColumnMatch,
    Fields,
    column_kind,
    could_be_private,
    duration_clock_proposal,
    english_wording,
    match_questions,
    numbers_for_options,
    propose_answers,
    propose_cities,
    says_personal,
    scale_of,
)
from survey_warehouse.errors import SurveyWarehouseError
from survey_warehouse.intake.codebook import PLACEHOLDER, STRUCTURAL_FIELDS, is_placeholder
from survey_warehouse.intake.matching import match_key, shown_value

DRAFT_MARK = "# Drafted by `wave draft`"
EXIT_OPEN = 3  # the command's exit code while decisions are left to a person
QUESTION_COLUMNS = [
    "wave_year",
    "question_id",
    "question_text_fi",
    "question_text_en",
    "answer_type",
    "scale_min",
    "scale_max",
    "is_required",
]
ANSWER_COLUMNS = [
    "wave_year",
    "question_id",
    "source_label",
    "answer_code",
    "answer_value",
    "answer_label_en",
    "sort_order",
]
ALIAS_COLUMNS = ["city_alias", "municipality_code", "alias_kind"]
HEADERS_MARK = "# the file's headers (a digest of their match keys):"
UNLABELLED = ("respondent_email", "submitted_at", "response_minutes", "respondent_name", "city")


class DraftRefused(SurveyWarehouseError):
    """The wave's spec is not a draft (written by hand, or shipped): it is not drafted over without --force."""


@dataclass
class Decision:
    """A decision left to a person: what about, the values concerned, the proposal and its evidence, and where
    in the written files the person answers it."""

    kind: str  # shape, column, question, scale, answer, text, city, cities_surveyed, field_period, version
    column: str | None
    values: list[str]
    proposal: Any
    evidence: list[str]
    where: str
    needs_person: bool = True

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Draft:
    year: int
    spec_path: Path
    decisions: list[Decision] = field(default_factory=list)  # the open ones
    settled: int = 0  # proposals taken as sure or decided before
    notes: list[str] = field(default_factory=list)

    @property
    def open(self) -> bool:
        return any(d.needs_person for d in self.decisions)

    def as_json(self) -> str:
        return json.dumps(
            {
                "wave_year": self.year,
                "spec": str(self.spec_path),
                "open": sum(d.needs_person for d in self.decisions),
                "decisions": [d.as_dict() for d in self.decisions if d.needs_person],
            },
            ensure_ascii=False,
            indent=2,
            default=str,
        )


def todo(proposal: Any) -> str:
    """A decision left to a person, with its proposal after the mark; a proposal of white space (a tab delimiter)
    is kept as it is, so deleting the mark, or `placeholders.proposal_of`, gives it back."""
    text = str(proposal)
    return f"{PLACEHOLDER} {text}" if text else PLACEHOLDER


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path.resolve())


def draft_wave(file: Path, year: int, project_root: Path, write: bool = True, force: bool = False) -> Draft:
    """Draft the wave of `year` from `file` into the project at `project_root` (write=False: only say what it
    would propose). Raises DraftRefused for a spec that is not a draft (unless force)."""
    root = project_root
    spec_path = root / WAVES / f"{year}.yml"
    existing: dict[str, Any] = {}
    text = ""
    if spec_path.exists():
        text = spec_path.read_text(encoding="utf-8")
        if not text.startswith(DRAFT_MARK) and not force:
            raise DraftRefused(
                f"{spec_path}: the wave of {year} already has a spec that is not a draft (written by hand or "
                "shipped): it is not drafted over. Use --force to start its draft afresh (its codebook rows are "
                "proposed again too)"
            )
        if text.startswith(DRAFT_MARK):
            existing = yaml.safe_load(text) or {}
    draft = Draft(year, spec_path)
    decided = {k: v for k, v in existing.items() if not _has_open(v)}
    shape = detect_shape(
        file, {k: decided[k] for k in ("encoding", "delimiter", "sheet", "header_row") if k in decided}
    )
    delivery = read_delivery(file, year, shape)
    history = read_history(root, year)
    if force and spec_path.exists() and not existing:
        _drop_year(root, year)
    # the same file: the same path and the same headers (a file delivered again under its name may have changed)
    known = re.search(rf"^{re.escape(HEADERS_MARK)} ([0-9a-f]+)$", text if existing else "", re.MULTILINE)
    same_file = str(existing.get("file", "")) == _relative(file, root) and (
        known is not None and known.group(1) == _headers_digest(delivery)
    )
    matches = _columns(delivery, history, existing, same_file)
    seeds = _Seeds(root, year)
    writer = _Writer(root, file, year, draft, delivery, history, existing, decided)
    spec_text = writer.spec(matches, seeds)
    if write:
        spec_path.parent.mkdir(parents=True, exist_ok=True)
        spec_path.write_text(spec_text, encoding="utf-8")
        seeds.save()
    return draft


def _headers_digest(delivery: Delivery) -> str:
    keys = sorted(match_key(c.header) or "" for c in delivery.columns)
    return hashlib.sha256("\n".join(keys).encode("utf-8")).hexdigest()[:16]


def _has_open(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_has_open(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_open(v) for v in value)
    return is_placeholder(value)


def _columns(delivery: Delivery, history: History, existing: dict[str, Any], same_file: bool) -> list[ColumnMatch]:
    """Every column's field: as a person decided it in the spec, or as proposed. A column the spec of the same file
    (the same path and headers) does not map was left out by the draft or by the person: it stays unmapped; one of
    another file, or of a file whose headers changed, is proposed."""
    taken = Fields(delivery, history).recognise()
    matches = taken + match_questions(delivery, history, taken)
    matches.sort(key=lambda m: m.column.position)
    if not existing:
        return matches
    written = {match_key(h): v for h, v in (existing.get("columns") or {}).items()}
    for match in matches:
        value = written.get(match_key(match.column.header))
        if value is None and not same_file:
            continue
        if value is None:  # a column the draft left out or the person removed: not mapped
            match.field, match.sure, match.new = None, True, False
            match.evidence = ["not mapped in the spec"]
        elif not is_placeholder(value):
            match.field, match.sure = str(value).strip(), True
            match.new = match.field not in history.questions and match.field not in STRUCTURAL_FIELDS
            match.evidence = ["as decided in the spec"]
            if column_kind(match.column) == "scale" and match.field not in STRUCTURAL_FIELDS:
                question = history.questions.get(match.field)
                if question is not None and numbers_for_options(match.column, question):
                    match.numbered = True  # its options' numbers, unless the codebook's row makes it a scale
                else:
                    scale_of(match.column, match, question)
    return matches


class _Seeds:
    """The codebook seeds: other years' rows untouched, this year's decided rows kept, open ones proposed anew."""

    def __init__(self, root: Path, year: int) -> None:
        self.root, self.year = root, year
        self.tables: dict[str, tuple[list[str], list[dict[str, str]]]] = {}
        for name, columns in (
            ("codebook_questions.csv", QUESTION_COLUMNS),
            ("codebook_answers.csv", ANSWER_COLUMNS),
            ("city_aliases.csv", ALIAS_COLUMNS),
        ):
            path = root / SEEDS / name
            fields = _header(path) or columns
            rows = [r for r in read_rows(path) if not (self._ours(r) and _has_open(list(r.values())))]
            if name == "city_aliases.csv":
                rows = [r for r in rows if not _has_open(list(r.values()))]
            self.tables[name] = (fields, rows)
        self.new: dict[str, list[dict[str, str]]] = {name: [] for name in self.tables}

    def _ours(self, row: dict[str, str]) -> bool:
        return row.get("wave_year") == str(self.year)

    def kept(self, name: str) -> list[dict[str, str]]:
        return [r for r in self.tables[name][1] if self._ours(r)]

    def drop_unmapped(self, mapped: set[str]) -> list[tuple[str, str]]:
        """This year's rows of questions no column is mapped to any more (a column re-mapped to another id) are
        removed: the codebook refuses a wave's question no column asks. (seed, question id) of each removed."""
        dropped: list[tuple[str, str]] = []
        for name in ("codebook_questions.csv", "codebook_answers.csv"):
            fields, rows = self.tables[name]
            gone = sorted({r["question_id"] for r in rows if self._ours(r) and r["question_id"] not in mapped})
            self.tables[name] = (fields, [r for r in rows if not (self._ours(r) and r["question_id"] in gone)])
            dropped += [(name, qid) for qid in gone if name == "codebook_questions.csv"]
        return dropped

    def add(self, name: str, row: dict[str, str]) -> int:
        """The row is appended; its line in the written file (the header is line 1)."""
        self.new[name].append(row)
        return len(self.tables[name][1]) + len(self.new[name]) + 1

    def save(self) -> None:
        for name, (fields, rows) in self.tables.items():
            out = io.StringIO()
            writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
            writer.writeheader()
            writer.writerows([*rows, *self.new[name]])
            (self.root / SEEDS / name).write_text(out.getvalue(), encoding="utf-8")


def _header(path: Path) -> list[str] | None:
    if not path.exists():
        return None
    with open(path, encoding="utf-8", newline="") as f:
        return next(csv.reader(f), None)


def _drop_year(root: Path, year: int) -> None:
    for name in ("codebook_questions.csv", "codebook_answers.csv"):
        path = root / SEEDS / name
        fields = _header(path)
        if not fields:
            continue
        rows = [r for r in read_rows(path) if r.get("wave_year") != str(year)]
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        path.write_text(out.getvalue(), encoding="utf-8")


def _q(text: Any) -> str:
    """A YAML scalar: JSON's double-quoted string is one."""
    return json.dumps(str(text), ensure_ascii=False)


def _comment(lines: list[str], indent: str = "") -> str:
    return "".join(f"{indent}# {line}\n" for line in lines if line)


class _Writer:
    def __init__(
        self,
        root: Path,
        file: Path,
        year: int,
        draft: Draft,
        delivery: Delivery,
        history: History,
        existing: dict[str, Any],
        decided: dict[str, Any],
    ) -> None:
        self.root, self.file, self.year, self.draft = root, file, year, draft
        self.delivery, self.history, self.existing, self.decided = delivery, history, existing, decided
        self.spec_name = _relative(root / WAVES / f"{year}.yml", root)

    def ask(
        self, kind: str, column: str | None, values: list[str], proposal: Any, evidence: list[str], where: str
    ) -> None:
        self.draft.decisions.append(Decision(kind, column, values, proposal, evidence, where))

    # ----------------------------------------------------------------------------------------- the spec

    def spec(self, matches: list[ColumnMatch], seeds: _Seeds) -> str:
        shape = self.delivery.shape
        out = [
            f'{DRAFT_MARK} from {self.delivery.file.name}. A value that starts with "{PLACEHOLDER}" is a decision '
            "left to you:\n",
            f'# replace it with your answer (delete "{PLACEHOLDER} " to take the proposal after it), then run '
            "`wave draft` again:\n",
            "# it keeps what you decided. See docs/adding-a-wave.md.\n",
            f"wave_year: {self.year}\n",
            f"file: {_q(_relative(self.file, self.root))}\n",
            f"{HEADERS_MARK} {_headers_digest(self.delivery)}\n",
        ]
        out.append(_comment(shape.evidence))
        for key, proposed in shape.as_spec().items():
            value = self.decided.get(key, proposed)
            if key not in self.decided and shape.unsure and key in ("delimiter", "sheet", "header_row"):
                self.ask("shape", None, [], {key: value}, [*shape.evidence, *shape.unsure], f"{self.spec_name}: {key}")
                value = todo(value)
            out.append(f"{key}: {value if isinstance(value, int) else _q(value)}\n")
        out.append(self._repeated_headers())
        out.append(self._version())
        out.append(self._cities(matches, seeds))
        out.append(self._period(matches))
        out.append(self._duration_clock(matches))
        for key, value in self.decided.items():
            if key in ("owner_email", "accept_removals", "withdrawn"):
                out.append(yaml.safe_dump({key: value}, allow_unicode=True, default_flow_style=None))
        out.append("columns:\n")
        for match in matches:
            out.append(self._column(match))
        unmapped = [m for m in matches if m.field is None]
        if unmapped:
            out.append(
                "# not mapped (kept in raw as delivered): "
                + "; ".join(f"{_q(m.column.header)} ({m.evidence[0]})" for m in unmapped)
                + "\n"
            )
        self._seed_rows(matches, seeds)
        return "".join(out)

    def _repeated_headers(self) -> str:
        """Headers that read the same under the matching rule (a trailing space, case): the spec maps a header by
        its match key, so only one of them could be mapped; which is the column to load is for a person to say."""
        groups: dict[str, list[str]] = {}
        for column in self.delivery.columns:
            groups.setdefault(match_key(column.header) or "", []).append(column.header)
        out = []
        for headers in groups.values():
            if len(headers) < 2:  # noqa: PLR2004
                continue
            why = [
                f"{len(headers)} columns have headers that read the same under the matching rule: "
                + ", ".join(_q(h) for h in headers),
                "the spec maps a header by how it reads, so only one of them can be loaded: rename one in the file "
                "(or ask for a corrected delivery) and draft again",
            ]
            self.ask("shape", None, headers, None, why, f"{self.spec_name}: columns")
            out.append(_comment(why))
        return "".join(out)

    def _version(self) -> str:
        if "questionnaire_version" in self.decided:
            return f"questionnaire_version: {_q(self.decided['questionnaire_version'])}\n"
        earlier = [str(s.get("questionnaire_version", "")) for _w, s in sorted(self.history.specs.items())]
        last = earlier[-1] if earlier else ""
        found = re.fullmatch(r"(\d{4})(.*?)(\d+)", last)
        proposal = f"{self.year}{found.group(2)}{int(found.group(3)) + 1}" if found else f"{self.year}-1"
        self.ask(
            "version",
            None,
            [],
            proposal,
            [f"the earlier waves' versions: {', '.join(earlier) or 'none'}"],
            f"{self.spec_name}: questionnaire_version",
        )
        return f"questionnaire_version: {_q(todo(proposal))}\n"

    def _cities(self, matches: list[ColumnMatch], seeds: _Seeds) -> str:
        city = next((m for m in matches if m.field == "city"), None)
        aliases: list[AliasRow] = []
        answering: dict[str, int] = {}
        if city is not None:
            aliases, answering = propose_cities(city, self.history)
            self._aliases(city, aliases, seeds)
        names = self.history.municipalities
        if "cities_surveyed" in self.decided:
            codes = [str(c).zfill(3) for c in self.decided["cities_surveyed"]]
            body = "".join(f"  - {_q(c)}  # {names.get(c, '?')}\n" for c in codes)
            return "cities_surveyed:\n" + body
        previous = self.history.previous
        listed = [str(c).zfill(3) for c in (self.history.specs.get(previous or 0, {}).get("cities_surveyed") or [])]
        proposal = listed or sorted(answering)
        not_listed = sorted(set(answering) - set(proposal))
        silent = [c for c in proposal if c not in answering]
        evidence = [
            f"the cities surveyed in {previous}" if listed else "the cities that answered (no earlier list)",
            f"{len(answering)} cities answered this wave",
        ]
        if not_listed:
            evidence.append("answered but not listed: " + ", ".join(f"{c} {names.get(c, '?')}" for c in not_listed))
        if silent:
            evidence.append("listed but no answer: " + ", ".join(f"{c} {names.get(c, '?')}" for c in silent))
        line = todo(f"the cities surveyed in {self.year}: confirm this list (delete this line) or edit it")
        self.ask("cities_surveyed", None, [], proposal, evidence, f"{self.spec_name}: cities_surveyed (its first line)")
        body = "".join(f"  - {_q(c)}  # {names.get(c, '?')}\n" for c in proposal)
        return _comment(evidence) + f"cities_surveyed:\n  - {_q(line)}\n" + body

    def _aliases(self, city: ColumnMatch, aliases: list[AliasRow], seeds: _Seeds) -> None:
        known = list(self.history.aliases)
        for alias in aliases:
            if alias.code is None:
                self.draft.decisions.append(
                    Decision(
                        "city",
                        city.column.header,
                        [shown_value(alias.spelling, known)],
                        None,
                        [*alias.evidence, f"{alias.rows} row(s): quarantined by the loader unless the name is added"],
                        f"{_relative(self.root / SEEDS / 'city_aliases.csv', self.root)}: add a row if it is a city",
                        needs_person=False,
                    )
                )
                continue
            line = seeds.add(
                "city_aliases.csv",
                {
                    "city_alias": match_key(alias.spelling) or alias.spelling,
                    "municipality_code": todo(alias.code),
                    "alias_kind": "spelling",
                },
            )
            self.ask(
                "city",
                city.column.header,
                [alias.spelling],
                alias.code,
                [*alias.evidence, f"{alias.rows} row(s)"],
                f"dbt_project/seeds/city_aliases.csv line {line}: municipality_code",
            )

    def _period(self, matches: list[ColumnMatch]) -> str:
        if "field_period" in self.decided:
            p = self.decided["field_period"]
            return f"field_period: {{start: {p['start']}, end: {p['end']}}}\n"
        submitted = next((m for m in matches if m.field == "submitted_at"), None)
        first = submitted.column.first_time if submitted else None
        last = submitted.column.last_time if submitted else None
        if first is None or last is None:
            start, end, why = f"{self.year}-01-01", f"{self.year}-12-31", ["no submission times to read it from"]
        else:
            start, end = _day(first), _day(last)
            why = [
                f"the first and last submission ({submitted.column.header if submitted else ''})",
                "the survey may have opened before the first answer and closed after the last",
            ]
        self.ask("field_period", None, [], {"start": start, "end": end}, why, f"{self.spec_name}: field_period")
        return _comment(why) + f"field_period: {{start: {_q(todo(start))}, end: {_q(todo(end))}}}\n"

    def _duration_clock(self, matches: list[ColumnMatch]) -> str:
        """duration_clock, when the response times hold values of two parts: what the loader cannot read alone."""
        if "duration_clock" in self.decided:
            return f"duration_clock: {_q(self.decided['duration_clock'])}\n"
        column = next((m.column for m in matches if m.field == "response_minutes"), None)
        proposed = duration_clock_proposal(column.values) if column else None
        if column is None or proposed is None:
            return ""
        clock, why = proposed
        self.ask("duration_clock", column.header, [], clock, why, f"{self.spec_name}: duration_clock")
        return _comment(why) + f"duration_clock: {_q(todo(clock))}\n"

    def _column(self, match: ColumnMatch) -> str:
        if match.field is None:
            return ""
        header = match.column.header
        evidence = _comment(match.evidence, "  ")
        if match.sure:
            self.draft.settled += 1
            return evidence + f"  {_q(header)}: {match.field}\n"
        kind = "question" if match.new else "column"
        what = (
            f"a new question: its id (the same in the seeds' rows of {self.year})"
            if match.new
            else "the field or earlier question the column is"
        )
        self.ask(kind, header, [], match.field, [what, *match.evidence], f"{self.spec_name}: columns: {_q(header)}")
        return evidence + f"  {_q(header)}: {_q(todo(match.field))}\n"

    # ----------------------------------------------------------------------------------------- the seeds

    def _seed_rows(self, matches: list[ColumnMatch], seeds: _Seeds) -> None:
        mapped = {m.field for m in matches if m.field}
        for name, qid in seeds.drop_unmapped(mapped):
            self.draft.decisions.append(
                Decision(
                    "question",
                    None,
                    [qid],
                    None,
                    [f"no column is mapped to {qid} any more: its rows of {self.year} in {name} are removed"],
                    _relative(self.root / SEEDS / name, self.root),
                    needs_person=False,
                )
            )
        kept_questions = {r["question_id"]: r for r in seeds.kept("codebook_questions.csv")}
        kept_answers = {(r["question_id"], match_key(r["source_label"])) for r in seeds.kept("codebook_answers.csv")}
        for match in matches:
            if match.field is None or match.field in UNLABELLED:
                continue
            qid = match.field
            if qid in kept_questions:
                self._follow_decided_type(match, kept_questions[qid])
            else:
                self._question_row(match, seeds)
            private = [v for v in match.column.values if could_be_private(v)]
            header = match.column.header
            if match.new and not match.sure and (private or says_personal(header)):
                # names or free text may be among a new question's answers: none is written or quoted until a
                # person has confirmed that the column is a question (decided its id)
                what = (
                    "its header says it holds names or contact details"
                    if says_personal(header)
                    else f"{len(private)} of its {len(match.column.values)} different answers may be names, contact "
                    "details or free text"
                )
                self.ask(
                    "question",
                    header,
                    [],
                    None,
                    [
                        f"{what}: no answer is written to the codebook or quoted until you decide the column's id "
                        "(or delete its line to leave it unmapped); then run `wave draft` again"
                    ],
                    f"{self.spec_name}: columns: {_q(header)}",
                )
                continue
            for row in propose_answers(match, self.history):
                if (qid, match_key(row.label)) not in kept_answers:
                    self._answer_row(match, row, seeds)

    def _follow_decided_type(self, match: ColumnMatch, row: dict[str, str]) -> None:
        match.answer_type = row["answer_type"]
        if row["answer_type"] == "scale" and row["scale_min"] and row["scale_max"]:
            match.scale = (int(float(row["scale_min"])), int(float(row["scale_max"])))

    def _question_row(self, match: ColumnMatch, seeds: _Seeds) -> None:
        qid, header = match.field or "", match.column.header
        earlier = self.history.questions.get(qid)
        english = english_wording(header, earlier) if earlier is not None and not match.new else None
        required = "false"
        if earlier is not None:
            latest = max(earlier.texts)
            required = "true" if qid == "respondent_role" else "false"
            required = next(
                (
                    r.get("is_required", "false")
                    for r in read_rows(self.root / SEEDS / "codebook_questions.csv")
                    if r["question_id"] == qid and r["wave_year"] == str(latest)
                ),
                required,
            )
        low = high = ""
        if match.answer_type == "scale" and match.scale:
            low, high = str(match.scale[0]), str(match.scale[1])
            if not match.scale_sure:
                low, high = todo(low), todo(high)
        row = {
            "wave_year": str(self.year),
            "question_id": qid,
            "question_text_fi": header,
            "question_text_en": (english[0] if english[1] else todo(english[0]))
            if english
            else todo(f"the English wording of {header}"),
            "answer_type": match.answer_type if qid != "respondent_role" else "category",
            "scale_min": low,
            "scale_max": high,
            "is_required": required,
        }
        line = seeds.add("codebook_questions.csv", row)
        where = f"dbt_project/seeds/codebook_questions.csv line {line}"
        if english is None:
            self.ask(
                "text", header, [], None, ["only a person knows the English wording"], f"{where}: question_text_en"
            )
        elif not english[1]:
            self.ask("text", header, [], english[0], english[2], f"{where}: question_text_en")
        else:
            self.draft.settled += 1
        if match.answer_type == "scale" and not match.scale_sure:
            self.ask(
                "scale", header, [], list(match.scale or ()), [match.scale_evidence], f"{where}: scale_min, scale_max"
            )
        elif match.answer_type == "scale":
            self.draft.settled += 1

    def _answer_row(self, match: ColumnMatch, row: AnswerRow, seeds: _Seeds) -> None:
        header = match.column.header
        code = row.code if row.sure else todo(row.code)
        pointless = row.value is None and match.answer_type == "scale"  # a scale's label needs its point
        value = todo("the point of the scale it stands for") if pointless else "" if row.value is None else None
        line = seeds.add(
            "codebook_answers.csv",
            {
                "wave_year": str(self.year),
                "question_id": row.question_id,
                "source_label": row.label,
                "answer_code": code,
                "answer_value": value if value is not None else _number(row.value or 0),
                "answer_label_en": row.label_en or todo(f"the English label of {row.label}"),
                "sort_order": str(row.sort_order),
            },
        )
        where = f"dbt_project/seeds/codebook_answers.csv line {line}"
        if pointless:
            self.ask(
                "answer",
                header,
                [row.label],
                None,
                ["a label of a scale question: the point of the scale it stands for"],
                f"{where}: answer_value",
            )
        if not row.sure:
            what = "a new code" if row.new_code else "an earlier code"
            self.ask("answer", header, [row.label], row.code, [what, *row.evidence], f"{where}: answer_code")
        else:
            self.draft.settled += 1
        if row.label_en is None:
            self.ask(
                "text",
                header,
                [row.label],
                None,
                ["only a person knows the English label"],
                f"{where}: answer_label_en",
            )


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _day(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    return str(value)[:10]


__all__ = ["EXIT_OPEN", "Decision", "Draft", "DraftRefused", "draft_wave"]
