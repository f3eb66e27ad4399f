"""The gates can fail: no expectation is vacuous, none can vanish, and the marts' row counts come from outside them.

- Every entry of every suite file, written wrong (an unknown expectation type, a parameter its class does not
  declare, a parameter it requires left out, a column its dataset does not have), stops the suite's load with the
  file and the entry named; a template does so even for a wave none of whose questions it repeats for.
- Both gates pass on the main job's warehouse and report exactly as many expectations as their suite files hold.
- For each expectation of both gates, a copy of the DataFrame the gate validates is broken in the way that
  expectation guards against (a row too few, a key twice, a bound exceeded, a required value missing, an answer
  outside the codebook, ...), and the gate fails naming that expectation. The breakages follow from the
  expectations' types and parameters, so an expectation of a type with no way to break it here fails the test.
- Emptied marts fail the marts gate, each by its row count; a wave that staging loses (and the marts with it)
  fails it too, because the counts come from the load registry, not through staging.
"""

from __future__ import annotations

import json
import numbers
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest
from conftest import ROOT, PipelineRun, copy_state, current_loads, use_paths

from survey_warehouse import quality
from survey_warehouse.errors import SuiteError
from survey_warehouse.intake.codebook import Codebook
from survey_warehouse.intake.waves import WaveSpec, find_wave_spec
from survey_warehouse.quality import batches, suites
from survey_warehouse.quality.reports import GateReport
from survey_warehouse.settings import Paths

EXPECTATIONS = ROOT / "expectations"
SUITE_FILES = sorted(EXPECTATIONS.glob("*.json")) + sorted((EXPECTATIONS / "marts").glob("*.json"))
RAW_WAVE = 2019  # the wave whose load the raw gate's expectations are broken on
CORRECTIONS = "fct_answer_corrections"  # empty until a wave has been corrected, as in the main job


# ------------------------------------------------------------------------------ suite files written wrong


def _raw_inputs() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The raw suites' parameters and questions for RAW_WAVE, from its wave spec and the codebook."""
    spec = WaveSpec.from_file(ROOT / "config" / "waves" / f"{RAW_WAVE}.yml", ROOT)
    codebook = Codebook.from_seeds(ROOT / "dbt_project" / "seeds")
    return batches.raw_wave_parameters(spec, codebook), batches.question_parameters(spec, codebook)


def _parameter_names(node: Any) -> set[str]:
    if isinstance(node, dict):
        if set(node) == {"$PARAMETER"}:
            return {node["$PARAMETER"]}
        return {n for v in node.values() for n in _parameter_names(v)}
    if isinstance(node, list):
        return {n for v in node for n in _parameter_names(v)}
    return set()


def _inputs(path: Path, data: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]] | None]:
    """What a suite file can be loaded with, without a warehouse: the raw suites' parameters from the wave spec and
    the codebook; the marts' (row counts) as 1."""
    if path.parent == EXPECTATIONS:
        return _raw_inputs()
    return dict.fromkeys(_parameter_names(data), 1), None


def _entry_ids() -> list[tuple[Path, int]]:
    return [
        (path, number)
        for path in SUITE_FILES
        for number in range(1, len(json.loads(path.read_text(encoding="utf-8"))["expectations"]) + 1)
    ]


def _misspelled_type(entry: dict[str, Any]) -> bool:
    entry["type"] = entry["type"][:-2] + entry["type"][-1]  # between -> betwen, equal -> eqal
    return True


def _unknown_parameter(entry: dict[str, Any]) -> bool:
    entry["kwargs"]["not_a_parameter"] = 1
    return True


def _required_parameter_left_out(entry: dict[str, Any]) -> bool:
    from great_expectations.expectations.registry import get_expectation_impl

    required = [n for n, f in get_expectation_impl(entry["type"]).__fields__.items() if f.required]
    for name in required:
        del entry["kwargs"][name]
    return bool(required)


def _unknown_column(entry: dict[str, Any]) -> bool:
    kwargs = entry["kwargs"]
    for key in ("column", "column_A", "column_B"):
        if key in kwargs:
            kwargs[key] = "no_such_column"
            return True
    if "column_list" in kwargs:
        kwargs["column_list"] = [*kwargs["column_list"][1:], "no_such_column"]
        return True
    return False


def _takes_a_row_condition(entry: dict[str, Any]) -> bool:
    from great_expectations.expectations.registry import get_expectation_impl

    return "row_condition" in get_expectation_impl(entry["type"]).__fields__


def _row_condition_as_text(entry: dict[str, Any]) -> bool:
    if not _takes_a_row_condition(entry):
        return False
    entry["kwargs"]["row_condition"] = "is_current_load != False"  # pandas' syntax: PostgreSQL's gate cannot read it
    entry["kwargs"]["condition_parser"] = "pandas"
    return True


def _condition_on_an_unknown_column(entry: dict[str, Any]) -> bool:
    if not _takes_a_row_condition(entry):
        return False
    entry["kwargs"]["row_condition"] = {
        "type": "comparison",
        "column": {"name": "no_such_column"},
        "operator": "==",
        "parameter": True,
    }
    return True


# name: (writes the mistake into an entry, or False where it cannot be made; what the error says; whether a template
# is stopped by it as written, with no question to repeat it for)
MISTAKES: dict[str, tuple[Callable[[dict[str, Any]], bool], str, bool]] = {
    "unknown expectation type": (_misspelled_type, "unknown expectation type", True),
    "unknown parameter": (_unknown_parameter, "has no parameter(s) ['not_a_parameter']", True),
    "required parameter left out": (_required_parameter_left_out, "requires the parameter(s)", True),
    "unknown column": (_unknown_column, "has no column(s) ['no_such_column']", False),
    "row condition as text": (_row_condition_as_text, "read by one engine only", True),
    "row condition on an unknown column": (
        _condition_on_an_unknown_column,
        "has no column(s) ['no_such_column']",
        False,
    ),
}


@pytest.mark.parametrize(
    ("path", "number"), _entry_ids(), ids=[f"{p.relative_to(EXPECTATIONS)}#{n}" for p, n in _entry_ids()]
)
def test_an_entry_written_wrong_stops_its_suite_naming_file_and_entry(tmp_path: Path, path: Path, number: int) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    parameters, questions = _inputs(path, data)
    written = suites.entries(path, data, parameters, questions)
    columns = sorted({c for e in written for c in suites.columns_on(e.config["type"], e.config.get("kwargs", {}))})
    assert len(suites.load_suite(path, parameters, questions, columns=columns).expectations) == len(written)
    is_template = "for_each" in data["expectations"][number - 1]
    made = []
    for name, (mistake, says, as_written) in MISTAKES.items():
        wrong = json.loads(json.dumps(data))
        if not mistake(wrong["expectations"][number - 1]):
            continue
        made.append(name)
        copy = tmp_path / path.relative_to(ROOT)
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text(json.dumps(wrong), encoding="utf-8")
        for asked in [questions, []] if is_template and as_written else [questions]:
            with pytest.raises(SuiteError) as stopped:
                suites.load_suite(copy, parameters, asked, columns=columns)
            message = str(stopped.value)
            assert message.startswith(f"{path.relative_to(ROOT).as_posix()}, expectation {number} ("), message
            assert says in message, (name, message)
            if is_template and not as_written:  # found on a question the template was repeated for
                assert ", repeated for question " in message, message
    assert {"unknown expectation type", "unknown parameter"} <= set(made)


# ------------------------------------------------------------------------------ the gates on the main job's warehouse


@pytest.fixture(scope="module")
def built(pipeline_run: PipelineRun) -> Iterator[Paths]:
    paths = copy_state(pipeline_run, "gates_can_fail")
    with pytest.MonkeyPatch.context() as patch:
        use_paths(patch, paths)
        yield paths


@dataclass
class Gate:
    """A gate's checkpoint on the built warehouse, with the DataFrames it validates (its Parquet snapshots)."""

    name: str
    paths: Paths
    batch: str
    checkpoint: Any
    snapshots: dict[str, Path]  # suite -> the snapshot its validation reads
    originals: dict[str, pd.DataFrame]
    expectations: dict[str, list[tuple[str, dict[str, Any]]]]  # suite -> (type, kwargs) of each, in order
    entries: int  # the entries of its suite files, templates repeated

    def run(self, frames: dict[str, pd.DataFrame]) -> GateReport:
        """The gate on these frames (the others as built)."""
        for suite, path in self.snapshots.items():
            frames.get(suite, self.originals[suite]).to_parquet(path, index=False)
        self.checkpoint.run()
        return GateReport.read(quality.report_path(self.paths, self.name, self.batch))


def _gate(name: str, paths: Paths, gx_context: Any) -> Gate:
    codebook = Codebook.from_seeds(paths.dbt_project / "seeds")
    if name == "raw_wave":
        spec = find_wave_spec(RAW_WAVE, paths)
        assert spec is not None
        batch = current_loads(paths)[RAW_WAVE]
        checkpoint = quality.raw_wave_checkpoint(gx_context, spec, batch, paths)
        questions = batches.question_parameters(spec, codebook)
        files = [EXPECTATIONS / "raw_load.json", EXPECTATIONS / "raw_wave.json"]
    else:
        batch = "gates_can_fail"
        checkpoint = quality.marts_checkpoint(gx_context, batch, paths)
        questions = None
        files = sorted((EXPECTATIONS / "marts").glob("*.json"))
    entries = 0  # counted here from the files as written: an entry once, a template once per question it is for
    for file in files:
        for entry in json.loads(file.read_text(encoding="utf-8"))["expectations"]:
            kind = entry.get("for_each")
            entries += 1 if kind is None else sum(kind == "question" or q["is_scale"] for q in questions or [])
    # the gate's verdict is its report; the Data Docs are left out of the many runs here (a second each)
    checkpoint.actions = [a for a in checkpoint.actions if a.name == "record_gate_report"]
    checkpoint.save()
    snapshots, originals, expectations = {}, {}, {}
    for validation in checkpoint.validation_definitions:
        suite = validation.suite.name
        snapshots[suite] = Path(validation.data.data_asset.datasource.base_directory) / f"{batch}.parquet"
        originals[suite] = pd.read_parquet(snapshots[suite])
        expectations[suite] = [(e.configuration.type, e.configuration.kwargs) for e in validation.suite.expectations]
    return Gate(name, paths, batch, checkpoint, snapshots, originals, expectations, entries)


@pytest.fixture(scope="module")
def gates(built: Paths) -> dict[str, Gate]:
    context = quality.file_context(built)
    return {name: _gate(name, built, context) for name in ("raw_wave", "marts")}


@pytest.mark.parametrize("gate", ["raw_wave", "marts"])
def test_a_gate_passes_the_built_warehouse_and_reports_every_entry_of_its_suite_files(
    gates: dict[str, Gate], gate: str
) -> None:
    report = gates[gate].run({})
    assert report.success, report.message()
    assert report.evaluated == gates[gate].entries
    assert sum(len(e) for e in gates[gate].expectations.values()) == gates[gate].entries
    assert f"passed ({gates[gate].entries} expectations)" in report.message()


# --- how to break the data an expectation guards, by its type (each returns a broken copy)

Breaker = Callable[[pd.DataFrame, dict[str, Any]], pd.DataFrame]


def _set(frame: pd.DataFrame, column: str, row: Any, value: Any) -> None:
    numeric = pd.api.types.is_numeric_dtype(frame[column]) and not pd.api.types.is_bool_dtype(frame[column])
    if numeric and (value is None or isinstance(value, numbers.Number)):
        frame[column] = frame[column].astype("float64")
        value = float("nan") if value is None else value
    else:
        frame[column] = frame[column].astype(object)
    frame.at[row, column] = value


def _rows_with(frame: pd.DataFrame, columns: list[str], at_least: int = 1) -> list[Any]:
    rows = list(frame.dropna(subset=columns).index)
    assert len(rows) >= at_least, f"the batch has fewer than {at_least} rows with {columns} to break"
    return rows


def _row_count_not_equal(frame: pd.DataFrame, kwargs: dict[str, Any]) -> pd.DataFrame:
    if kwargs["value"] > 0:
        return frame.iloc[:-1]  # a row too few
    return pd.concat([frame, pd.DataFrame([dict.fromkeys(frame.columns)])], ignore_index=True)  # one too many


def _row_count_out_of_range(frame: pd.DataFrame, kwargs: dict[str, Any]) -> pd.DataFrame:
    if (kwargs.get("min_value") or 0) > 0:
        return frame.iloc[: int(kwargs["min_value"]) - 1]
    assert kwargs.get("max_value") is not None, kwargs
    if not len(frame):  # rows where none may be
        frame = pd.DataFrame([dict.fromkeys(frame.columns)] * (int(kwargs["max_value"]) + 1), columns=frame.columns)
    else:
        frame = pd.concat([frame] * (int(kwargs["max_value"]) // len(frame) + 2), ignore_index=True)
    condition = kwargs.get("row_condition")
    if condition:  # the rows are the ones the expectation counts
        assert condition["type"] == "comparison" and condition["operator"] == "==", f"add a way to meet {condition}"
        frame[condition["column"]["name"]] = condition["parameter"]
    return frame


def _columns_off_the_set(frame: pd.DataFrame, kwargs: dict[str, Any]) -> pd.DataFrame:
    if kwargs.get("exact_match", True):
        return frame.assign(column_not_in_the_set=1)
    present = [c for c in kwargs["column_set"] if c in frame.columns]
    return frame.drop(columns=present[-1:])


def _null(frame: pd.DataFrame, kwargs: dict[str, Any]) -> pd.DataFrame:
    frame = frame.copy()
    _set(frame, kwargs["column"], _rows_with(frame, [kwargs["column"]])[0], None)
    return frame


def _outside_the_set(frame: pd.DataFrame, kwargs: dict[str, Any]) -> pd.DataFrame:
    allowed = list(kwargs["value_set"])
    if allowed and all(isinstance(v, numbers.Number) for v in allowed):
        value: Any = max(allowed) + 1
    else:
        value = "not an option"
        while value in allowed:
            value += "!"
    frame = frame.copy()
    _set(frame, kwargs["column"], frame.index[0], value)
    return frame


def _out_of_range(frame: pd.DataFrame, kwargs: dict[str, Any]) -> pd.DataFrame:
    high, low = kwargs.get("max_value"), kwargs.get("min_value")
    frame = frame.copy()
    _set(frame, kwargs["column"], frame.index[0], high + 1 if high is not None else low - 1)
    return frame


def _duplicated(columns: list[str], frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    first, second = _rows_with(frame, columns, at_least=2)[:2]
    for column in columns:
        _set(frame, column, second, frame.at[first, column])
    return frame


def _not_matching(frame: pd.DataFrame, kwargs: dict[str, Any]) -> pd.DataFrame:
    value = next(v for v in ("x", "", "0", "@", "x y") if not re.search(kwargs["regex"], v))
    frame = frame.copy()
    _set(frame, kwargs["column"], frame.index[0], value)
    return frame


def _matching(frame: pd.DataFrame, kwargs: dict[str, Any]) -> pd.DataFrame:
    from hypothesis import find
    from hypothesis import strategies as st

    value = find(st.from_regex(kwargs["regex"]), lambda _text: True)
    frame = frame.copy()
    _set(frame, kwargs["column"], frame.index[0], value)
    return frame


def _pair_unequal(frame: pd.DataFrame, kwargs: dict[str, Any]) -> pd.DataFrame:
    a, b = kwargs["column_A"], kwargs["column_B"]
    frame = frame.copy()
    row = _rows_with(frame, [a, b])[0]
    value = frame.at[row, a]
    _set(frame, b, row, value + 1 if isinstance(value, numbers.Number) else f"{value}!")
    return frame


def _a_below_b(frame: pd.DataFrame, kwargs: dict[str, Any]) -> pd.DataFrame:
    a, b = kwargs["column_A"], kwargs["column_B"]
    frame = frame.copy()
    row = _rows_with(frame, [a, b])[0]
    _set(frame, a, row, frame.at[row, b] - 1)
    return frame


BREAK: dict[str, Breaker] = {
    "expect_table_row_count_to_equal": _row_count_not_equal,
    "expect_table_row_count_to_be_between": _row_count_out_of_range,
    "expect_table_columns_to_match_set": _columns_off_the_set,
    "expect_column_values_to_not_be_null": _null,
    "expect_column_values_to_be_in_set": _outside_the_set,
    "expect_column_values_to_be_between": _out_of_range,
    "expect_column_values_to_be_unique": lambda frame, kwargs: _duplicated([kwargs["column"]], frame),
    "expect_compound_columns_to_be_unique": lambda frame, kwargs: _duplicated(kwargs["column_list"], frame),
    "expect_column_values_to_match_regex": _not_matching,
    "expect_column_values_to_not_match_regex": _matching,
    "expect_column_pair_values_to_be_equal": _pair_unequal,
    "expect_column_pair_values_a_to_be_greater_than_b": _a_below_b,
}


@pytest.mark.parametrize("gate", ["raw_wave", "marts"])
def test_no_expectation_is_vacuous(gates: dict[str, Gate], gate: str) -> None:
    """Round k breaks the k-th expectation of every suite at once (the suites validate separate DataFrames), and
    each broken expectation must be among the gate's failures, evaluated (not an error)."""
    found = gates[gate]
    kinds = {kind for listed in found.expectations.values() for kind, _kwargs in listed}
    assert not kinds - set(BREAK), f"no way to break {sorted(kinds - set(BREAK))}: add one to BREAK"
    for suite, listed in found.expectations.items():
        named = [(kind, tuple(suites.columns_on(kind, kwargs))) for kind, kwargs in listed]
        assert len(set(named)) == len(named), f"{suite}: two expectations the report could not tell apart"
    vacuous, checked = [], 0
    try:
        for k in range(max(len(listed) for listed in found.expectations.values())):
            broken = {
                suite: BREAK[listed[k][0]](found.originals[suite], listed[k][1])
                for suite, listed in found.expectations.items()
                if k < len(listed)
            }
            report = found.run(broken)
            for suite in broken:
                kind, kwargs = found.expectations[suite][k]
                failed = [
                    f
                    for f in report.failures
                    if (f.suite, f.expectation, f.columns) == (suite, kind, suites.columns_on(kind, kwargs))
                    and not any(str(e).startswith("could not be evaluated") for e in f.examples)
                ]
                checked += 1
                if not failed:
                    vacuous.append(f"{suite}: {kind} {kwargs}")
    finally:
        found.run({})  # the snapshots as built again
    assert not vacuous, "the gate did not fail when the data these guard was broken:\n" + "\n".join(vacuous)
    assert checked == found.entries


# ------------------------------------------------------------------------------ the marts' row counts


def _marts_gate(paths: Paths, batch: str) -> GateReport:
    with pytest.raises(quality.QualityGateFailed):
        quality.run_gate(quality.marts_checkpoint(quality.file_context(paths), batch, paths), paths)
    return GateReport.read(quality.report_path(paths, "marts", batch))


def _row_count_failures(report: GateReport) -> set[str]:
    return {f.suite for f in report.failures if f.expectation.startswith("expect_table_row_count_")}


def test_emptied_marts_fail_the_marts_gate_each_by_its_row_count(
    pipeline_run: PipelineRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = copy_state(pipeline_run, "gates_emptied")
    use_paths(monkeypatch, paths)
    marts = batches.project_marts(paths.dbt_project)
    with duckdb.connect(str(paths.warehouse)) as con:
        for mart in marts:
            con.execute(f'delete from marts."{mart}"')
        corrected = con.execute("select count(*) from raw.load_registry where status = 'superseded'").fetchone()
    assert corrected == (0,), f"no wave of the main job was corrected, so {CORRECTIONS} may be empty"
    report = _marts_gate(paths, "emptied")
    assert _row_count_failures(report) >= set(marts) - {CORRECTIONS}, report.message()


def test_a_wave_lost_before_the_marts_fails_the_marts_gate(
    pipeline_run: PipelineRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Staging loses the 2018 load, and with it the marts lose the wave: everything dbt made agrees with itself,
    but not with the loads the load registry says the marts are made of."""
    paths = copy_state(pipeline_run, "gates_lost_wave")
    use_paths(monkeypatch, paths)
    with duckdb.connect(str(paths.warehouse)) as con:
        con.execute("alter view staging.stg_survey__loads rename to stg_survey__loads_every_wave")
        con.execute(
            "create view staging.stg_survey__loads as select * from staging.stg_survey__loads_every_wave "
            "where wave_year <> 2018"
        )
        for mart in ("dim_year", "fct_city_responsibility", "fct_responsibility_shares", "fct_survey_answers"):
            con.execute(f"delete from marts.{mart} where wave_year = 2018")
        assert con.execute("select count(distinct wave_year) from staging.stg_survey__cities_surveyed").fetchone() == (
            2,
        )
    report = _marts_gate(paths, "lost_wave")
    assert {"dim_year", "fct_city_responsibility", "load_reconciliation"} <= _row_count_failures(report), (
        report.message()
    )


def test_a_mart_without_a_suite_stops_the_marts_gate(built: Paths, tmp_path: Path) -> None:
    shutil.copytree(EXPECTATIONS, tmp_path / "expectations")
    (tmp_path / "expectations" / "marts" / "fct_city_responsibility.json").unlink()
    with pytest.raises(SuiteError, match=r"the marts fct_city_responsibility have no suite in expectations/marts/"):
        quality.marts_checkpoint(quality.file_context(built), "no_suite", replace(built, root=tmp_path))
