"""The suites in expectations/ (reviewable JSON), filled in per wave from the wave spec and the codebook.

A value {"$PARAMETER": name} takes the named parameter. An expectation with "for_each": "question" (or
"scale_question") is repeated for every question the wave spec maps that the codebook declares, with
{"$QUESTION": name} taking the question's own values (its column, its answer codes, its scale), so a question new
in a wave is checked without anyone writing an expectation for it.

A suite is loaded whole or not at all: an entry that names an expectation type Great Expectations does not have,
a parameter its expectation class does not declare, lacks one it requires, or names a column the dataset it
validates does not have fails the load with the file and the entry (Great Expectations itself would log such an
entry and leave it out, so a misspelling would pass the gate unnoticed). A template is checked once as written, so
a misspelled template fails even for a wave none of whose questions it repeats for.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from survey_warehouse.errors import SuiteError

FOR_EACH = {"question": lambda q: True, "scale_question": lambda q: bool(q["is_scale"])}
# what an entry of a suite file may say besides its kwargs (as Great Expectations' ExpectationConfiguration)
ENTRY_KEYS = frozenset({"type", "kwargs", "meta", "notes", "description", "severity", "id", "for_each"})
# fields of an expectation class that belong to the entry, not to its kwargs
NOT_KWARGS = frozenset({"id", "meta", "notes", "description", "rendered_content", "severity"})


@dataclass(frozen=True)
class Entry:
    """One expectation of a suite, as it will run: where it comes from (file, entry, question) and its config."""

    file: str
    number: int  # 1-based position in the file's "expectations"
    question: str | None  # the question a for_each template was repeated for
    config: dict[str, Any]

    @property
    def where(self) -> str:
        repeated = f", repeated for question {self.question!r}" if self.question is not None else ""
        return f"{self.file}, expectation {self.number} ({self.config.get('type')!r}{repeated})"


def _resolve(node: Any, parameters: dict[str, Any], question: dict[str, Any] | None, where: str) -> Any:
    if isinstance(node, dict):
        if set(node) == {"$PARAMETER"}:
            name = node["$PARAMETER"]
            if name not in parameters:
                raise SuiteError(f"{where}: suite parameter {name!r} has no value (known: {sorted(parameters)})")
            return parameters[name]
        if set(node) == {"$QUESTION"}:
            if question is None:
                raise SuiteError(f"{where}: {node} outside a for_each expectation")
            if node["$QUESTION"] not in question:
                raise SuiteError(f"{where}: a question has no {node['$QUESTION']!r} (it has {sorted(question)})")
            return question[node["$QUESTION"]]
        return {k: _resolve(v, parameters, question, where) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(v, parameters, question, where) for v in node]
    return node


def _expectation_class(entry: dict[str, Any], where: str) -> Any:
    """The Great Expectations class an entry names, after checking the entry's keys and its kwargs' names."""
    import great_expectations.expectations  # noqa: F401  (registers the expectation types)
    from great_expectations.exceptions import ExpectationNotFoundError
    from great_expectations.expectations.registry import get_expectation_impl

    unknown_keys = sorted(set(entry) - ENTRY_KEYS)
    if unknown_keys:
        raise SuiteError(f"{where}: unknown key(s) {unknown_keys} (an entry has {sorted(ENTRY_KEYS)})")
    kind = entry.get("type")
    if not isinstance(kind, str):
        raise SuiteError(f"{where}: the entry names no expectation type")
    try:
        cls = get_expectation_impl(kind)
    except ExpectationNotFoundError:
        raise SuiteError(f"{where}: unknown expectation type {kind!r}") from None
    kwargs = entry.get("kwargs", {})
    if not isinstance(kwargs, dict):
        raise SuiteError(f"{where}: kwargs must be an object, not {type(kwargs).__name__}")
    declared = {name for name in cls.__fields__ if name not in NOT_KWARGS}
    unknown = sorted(set(kwargs) - declared)
    if unknown:
        raise SuiteError(f"{where}: {kind} has no parameter(s) {unknown} (it takes {sorted(declared)})")
    missing = sorted(n for n, f in cls.__fields__.items() if f.required and n not in NOT_KWARGS and n not in kwargs)
    if missing:
        raise SuiteError(f"{where}: {kind} requires the parameter(s) {missing}")
    if isinstance(kwargs.get("row_condition"), str) or "condition_parser" in kwargs:
        raise SuiteError(
            f"{where}: a row_condition written as text is read by one engine only (pandas' query syntax on the "
            "DuckDB gate's DataFrames, Great Expectations' own on PostgreSQL); write it as a structured "
            'condition both read, e.g. {"type": "comparison", "column": {"name": "is_current_load"}, '
            '"operator": "==", "parameter": true}, and no condition_parser'
        )
    return cls


def _condition_columns(condition: Any) -> list[str]:
    """The columns a structured row_condition reads."""
    if isinstance(condition, dict):
        column = condition.get("column")
        named = [str(column["name"])] if isinstance(column, dict) and "name" in column else []
        return named + [c for part in condition.get("conditions", []) for c in _condition_columns(part)]
    return []


def columns_on(kind: str, kwargs: dict[str, Any]) -> list[str]:
    """The columns an expectation is on: the kwargs of its domain that name columns (column, column_A, column_B,
    column_list). A table expectation's column_set is what it checks, not a column it is on."""
    import great_expectations.expectations  # noqa: F401  (registers the expectation types)
    from great_expectations.expectations.registry import get_expectation_impl

    named: list[str] = []
    for key in get_expectation_impl(kind).domain_keys:
        if key.startswith("column") and key in kwargs:
            value = kwargs[key]
            named += [str(v) for v in value] if isinstance(value, list) else [str(value)]
    return named + _condition_columns(kwargs.get("row_condition"))


def entries(
    path: Path, data: dict[str, Any], parameters: dict[str, Any], questions: list[dict[str, Any]] | None = None
) -> list[Entry]:
    """Every expectation of a suite file as it will run: parameters filled in, templates repeated per question.
    Each entry (and each template as written) names a known expectation type and only parameters it declares."""
    shown = _shown(path)
    listed = data.get("expectations")
    if not isinstance(listed, list):
        raise SuiteError(f"{shown}: 'expectations' must be a list of expectations")
    written = []
    for number, entry in enumerate(listed, start=1):  # every entry as written, before anything is filled in
        if not isinstance(entry, dict):
            raise SuiteError(f"{shown}, expectation {number}: an expectation is an object, not {entry!r}")
        where = Entry(shown, number, None, entry).where
        _expectation_class(entry, where)
        if entry.get("for_each", "question") not in FOR_EACH:
            raise SuiteError(f"{where}: for_each must be one of {sorted(FOR_EACH)}, not {entry['for_each']!r}")
        written.append((number, entry, where))
    out: list[Entry] = []
    for number, entry, where in written:
        kind = entry.get("for_each")
        if kind is None:
            out.append(Entry(shown, number, None, _resolve(entry, parameters, None, where)))
            continue
        template = {k: v for k, v in entry.items() if k != "for_each"}
        for question in questions or []:
            if FOR_EACH[kind](question):
                repeated = Entry(shown, number, question["id"], template).where
                out.append(Entry(shown, number, question["id"], _resolve(template, parameters, question, repeated)))
    return out


def expectation(entry: Entry, columns: Collection[str]) -> Any:
    """The Great Expectations expectation of an entry, checked against the columns of the dataset it validates."""
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    cls = _expectation_class(entry.config, entry.where)
    kwargs = entry.config.get("kwargs", {})
    absent = [c for c in columns_on(entry.config["type"], kwargs) if c not in columns]
    if absent:
        raise SuiteError(
            f"{entry.where}: the dataset it validates has no column(s) {absent} (it has {sorted(columns)})"
        )
    try:
        return ExpectationConfiguration(**{k: v for k, v in entry.config.items() if k != "for_each"}).to_domain_obj()
    except Exception as exc:  # pydantic's validation error, or Great Expectations' own
        errors = getattr(exc, "errors", None)
        reasons = (
            "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors()) if callable(errors) else exc
        )
        raise SuiteError(f"{entry.where}: not a valid {cls.__name__}: {reasons}") from exc


def load_suite(
    path: Path,
    parameters: dict[str, Any] | None = None,
    questions: list[dict[str, Any]] | None = None,
    *,
    columns: Collection[str],
) -> Any:
    """The suite of a file, for a dataset with these columns: every entry of the file (templates repeated) is in
    it, or the load fails naming the entry."""
    import great_expectations as gx

    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not data["name"]:
        raise SuiteError(f"{_shown(path)}: a suite is an object with a name and its expectations")
    listed = entries(path, data, parameters or {}, questions)
    expectations = [expectation(e, columns) for e in listed]
    suite = gx.ExpectationSuite(name=data["name"], expectations=expectations, meta=data.get("meta"))
    if len(suite.expectations) != len(listed):
        raise SuiteError(
            f"{_shown(path)}: {len(listed)} expectations written, {len(suite.expectations)} in the suite "
            "Great Expectations made of them"
        )
    return suite


def _shown(path: Path) -> str:
    """A suite file as a reader finds it: from expectations/ on."""
    parts = path.parts
    if "expectations" not in parts:
        return str(path)
    return "/".join(parts[len(parts) - 1 - parts[::-1].index("expectations") :])
