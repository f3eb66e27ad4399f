"""Gate reports: what a failed expectation says (column, count, examples with the file's rows), kept as JSON."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from survey_warehouse.quality import Failure, GateReport, QualityGateFailed
from survey_warehouse.quality.reports import failures, record_action

UNKNOWN_CITY = Failure(
    suite="raw_wave",
    expectation="expect_column_values_to_be_in_set",
    column="city",
    unexpected_count=2,
    examples=["Jyva\u0308skyla\u0308", "Lahtis"],
    rows=[12, 40],
)
TOO_FEW = Failure("raw_load", "expect_table_row_count_to_be_between", None, None, [31], [])
SHARE = Failure("raw_load", "expect_column_values_to_be_between", "quarantined_share", 1, [0.051], [pd.NA])


def test_a_failure_names_column_count_and_rows() -> None:
    assert UNKNOWN_CITY.describe() == (
        "raw_wave: expect_column_values_to_be_in_set on column 'city': 2 unexpected value(s), "
        "e.g. 'Jyva\\u0308skyla\\u0308' (row 12), 'Lahtis' (row 40)"  # combining marks shown, not hidden
    )
    assert TOO_FEW.describe() == "raw_load: expect_table_row_count_to_be_between, e.g. 31"
    # a value of the load as a whole has no file row
    assert SHARE.describe().endswith("on column 'quarantined_share': 1 unexpected value(s), e.g. 0.051")
    assert dataclasses.replace(SHARE, rows=["<NA>"]).describe() == SHARE.describe()  # as read back from JSON


def test_the_message_counts_failed_expectations() -> None:
    failed = GateReport("raw_wave", "2019-load", success=False, evaluated=40, failures=[UNKNOWN_CITY, TOO_FEW])
    lines = failed.message().splitlines()
    assert lines[0] == "raw_wave gate on 2019-load: FAILED (2 of 40 expectations)"
    assert lines[1:] == [f"  - {UNKNOWN_CITY.describe()}", f"  - {TOO_FEW.describe()}"]
    assert GateReport("marts", "run-1", True, 25, []).message() == "marts gate on run-1: passed (25 expectations)"


def test_a_report_reads_back_as_written(tmp_path: Path) -> None:
    report = GateReport("raw_wave", "2019-load", False, 40, [UNKNOWN_CITY, TOO_FEW])
    path = tmp_path / "reports" / "raw_wave" / "2019-load.json"
    report.write(path)
    assert GateReport.read(path) == report
    stored = json.loads(path.read_text(encoding="utf-8"))
    assert stored["message"] == report.message()
    assert "Jyva\u0308skyla\u0308" in path.read_text(encoding="utf-8")  # kept as text, not as \u escapes


def test_a_failure_on_several_columns_names_each() -> None:
    pair = Failure("fct_responsibility_shares", "expect_column_pair_values_a_to_be_greater_than_b", None, 1, [], [])
    pair = dataclasses.replace(pair, columns=["share", "share_ci_lower_95"])
    assert pair.describe() == (
        "fct_responsibility_shares: expect_column_pair_values_a_to_be_greater_than_b on columns 'share', "
        "'share_ci_lower_95': 1 unexpected value(s)"
    )


def test_a_report_written_without_the_columns_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "old.json"
    failure = dataclasses.asdict(TOO_FEW)
    del failure["columns"]
    stored = {"gate": "marts", "batch": "b", "success": False, "evaluated": 3, "failures": [failure]}
    path.write_text(json.dumps(stored), encoding="utf-8")
    assert GateReport.read(path).failures == [TOO_FEW]


def _result(kind: str, success: bool, **kwargs: object) -> SimpleNamespace:
    config = SimpleNamespace(type=kind, kwargs=kwargs)
    return SimpleNamespace(
        success=success, expectation_config=config, result={"unexpected_count": 1}, exception_info={}
    )


def _checkpoint_result(**suites: list[SimpleNamespace]) -> SimpleNamespace:
    runs = {name: SimpleNamespace(suite_name=name, results=results) for name, results in suites.items()}
    return SimpleNamespace(success=all(r.success for rs in suites.values() for r in rs), run_results=runs)


def test_a_failure_names_every_column_of_its_expectation() -> None:
    result = _checkpoint_result(
        shares=[_result("expect_column_pair_values_a_to_be_greater_than_b", False, column_A="a", column_B="b")],
        keys=[_result("expect_compound_columns_to_be_unique", False, column_list=["wave_year", "code"])],
    )
    _success, _evaluated, found = failures(result)
    assert [f.columns for f in found] == [["a", "b"], ["wave_year", "code"]]


def test_a_suite_with_fewer_results_than_its_files_hold_fails_the_gate() -> None:
    ran = _checkpoint_result(marts_x=[_result("expect_table_row_count_to_equal", True, value=1)] * 2)
    assert failures(ran, {"marts_x": 2}) == (True, 2, [])
    success, evaluated, found = failures(ran, {"marts_x": 3, "marts_y": 1})
    assert not success
    assert evaluated == 4, "the report counts what the suite files hold"
    assert [f.describe() for f in found] == [
        "marts_x: 2 of the 3 expectations its suite files hold were evaluated",
        "marts_y: 0 of the 1 expectations its suite files hold were evaluated",
    ]
    report = GateReport("marts", "run-1", success, evaluated, found)
    assert report.message().splitlines()[0] == "marts gate on run-1: FAILED (2 of 4 expectations)"


def test_a_run_that_left_expectations_out_fails_even_when_great_expectations_saw_no_failure(tmp_path: Path) -> None:
    ran = _checkpoint_result(marts_x=[_result("expect_table_row_count_to_equal", True, value=1)])
    file = tmp_path / "report.json"
    action = record_action(name="record", gate="marts", batch="b", report_file=str(file), expected={"marts_x": 2})
    with pytest.raises(QualityGateFailed, match=r"marts_x: 1 of the 2 expectations its suite files hold"):
        action.run(ran)
    assert not GateReport.read(file).success
    complete = record_action(name="record", gate="marts", batch="b", report_file=str(file), expected={"marts_x": 1})
    complete.run(ran)
    assert GateReport.read(file).success
