"""The suites in expectations/ (reviewable JSON), filled in per wave from the wave spec and the codebook.

A value {"$PARAMETER": name} takes the named parameter. An expectation with "for_each": "question" (or
"scale_question") is repeated for every question the wave spec maps that the codebook declares, with
{"$QUESTION": name} taking the question's own values (its column, its answer codes, its scale), so a question new
in a wave is checked without anyone writing an expectation for it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from survey_warehouse.errors import SuiteError

FOR_EACH = {"question": lambda q: True, "scale_question": lambda q: bool(q["is_scale"])}


def _resolve(node: Any, parameters: dict[str, Any], question: dict[str, Any] | None = None) -> Any:
    if isinstance(node, dict):
        if set(node) == {"$PARAMETER"}:
            name = node["$PARAMETER"]
            if name not in parameters:
                raise SuiteError(f"suite parameter {name!r} has no value")
            return parameters[name]
        if set(node) == {"$QUESTION"}:
            if question is None:
                raise SuiteError(f"{node} outside a for_each expectation")
            return question[node["$QUESTION"]]
        return {k: _resolve(v, parameters, question) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(v, parameters, question) for v in node]
    return node


def expand(
    data: dict[str, Any], parameters: dict[str, Any], questions: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The suite with its parameters filled in and its for_each expectations repeated per question."""
    expectations = []
    for expectation in data.get("expectations", []):
        kind = expectation.get("for_each")
        if kind is None:
            expectations.append(_resolve(expectation, parameters))
            continue
        if kind not in FOR_EACH:
            raise SuiteError(f"for_each must be one of {sorted(FOR_EACH)}, not {kind!r}")
        template = {k: v for k, v in expectation.items() if k != "for_each"}
        for question in questions or []:
            if FOR_EACH[kind](question):
                expectations.append(_resolve(template, parameters, question))
    return {**{k: v for k, v in data.items() if k != "expectations"}, "expectations": expectations}


def load_suite(
    path: Path, parameters: dict[str, Any] | None = None, questions: list[dict[str, Any]] | None = None
) -> Any:
    import great_expectations as gx

    data = json.loads(path.read_text(encoding="utf-8"))
    return gx.ExpectationSuite(**expand(data, parameters or {}, questions))
