"""The main job end to end: three waves from empty to published marts, reconciled with the published headline."""

from __future__ import annotations

import csv
import hashlib
import re

import duckdb
import openpyxl
import pytest
from conftest import PipelineRun, published_ranges, task_states

from survey_warehouse.intake.waves import find_wave_spec


def test_every_wave_run_succeeds_and_2017_is_skipped(pipeline_run: PipelineRun) -> None:
    for year, (code, _seconds, log) in pipeline_run.outcomes.items():
        assert code == 0, f"DAG run for {year} failed; see {log}"
    assert "No survey wave in 2017" in pipeline_run.outcomes[2017][2].read_text()
    ran = {t for t, state in task_states(pipeline_run.paths, 2017).items() if state != "skipped"}
    assert ran == {"dbt_build.dbt_producer_watcher_done"}, "nothing but the watcher's empty gate ran"
    assert set(task_states(pipeline_run.paths, 2019).values()) == {"success", "skipped"}
    assert task_states(pipeline_run.paths, 2019)["record_failure"] == "skipped"


def test_the_waves_are_caught_up_with_one_build_by_the_last_run(pipeline_run: PipelineRun) -> None:
    """make run with three waves to do: 2016 and 2018 are loaded, gated and accepted in their own runs; the 2019
    run builds, gates and publishes all three, once."""
    after_build = ("dbt_build.", "validate_marts", "publish_marts")
    for year in (2016, 2018):
        states = task_states(pipeline_run.paths, year)
        assert all(states[t] == "success" for t in ("validate_raw_wave", "accept_raw_wave", "build_in_this_run"))
        assert {s for t, s in states.items() if t.startswith(after_build)} == {"skipped"}, states
    states = task_states(pipeline_run.paths, 2019)
    assert {s for t, s in states.items() if t.startswith(after_build)} == {"success"}, states
    with duckdb.connect(str(pipeline_run.paths.published), read_only=True) as con:
        published = con.execute("select unnest(load_ids) from marts.publication").fetchall()
    with duckdb.connect(str(pipeline_run.paths.warehouse), read_only=True) as con:
        loads = con.execute(
            "select load_id, status, is_current, build_deferred from raw.load_registry order by wave_year"
        ).fetchall()
    assert sorted(r[0] for r in published) == [r[0] for r in loads]
    assert [r[1:] for r in loads] == [("passed", True, True), ("passed", True, True), ("passed", True, False)]
    with duckdb.connect(str(pipeline_run.paths.warehouse), read_only=True) as con:
        waves = [
            r[0] for r in con.execute("select wave_year from raw.load_registry where is_current order by 1").fetchall()
        ]
    assert waves == [2016, 2018, 2019]


def test_it_led_share_reproduces_the_published_headline(pipeline_run: PipelineRun) -> None:
    ranges = published_ranges()
    with duckdb.connect(str(pipeline_run.paths.published), read_only=True) as con:
        shares = dict(
            con.execute(
                "select wave_year, share from marts.fct_responsibility_shares where is_it_management"
            ).fetchall()
        )
        # the share is recomputed from the city-level fact, independently of the aggregate mart
        recomputed = dict(
            con.execute(
                "select wave_year, avg(case when is_it_led then 1.0 else 0.0 end) from marts.fct_city_responsibility "
                "where has_responded group by 1"
            ).fetchall()
        )
    assert sorted(shares) == sorted(ranges)
    for year, (low, high) in ranges.items():
        assert low < shares[year] <= high, f"{year}: IT-led share {shares[year]:.3f} outside ({low}, {high}]"
        assert recomputed[year] == pytest.approx(shares[year])


def test_shares_and_wilson_intervals(pipeline_run: PipelineRun) -> None:
    with duckdb.connect(str(pipeline_run.paths.published), read_only=True) as con:
        rows = con.execute(
            "select wave_year, cities, cities_responded, share, share_ci_lower_95, "
            "share_ci_upper_95 from marts.fct_responsibility_shares"
        ).fetchall()
    totals: dict[int, float] = {}
    z = 1.959964
    for year, k, n, share, low, high in rows:
        totals[year] = totals.get(year, 0) + share
        # the Wilson bounds are the two p where |k/n - p| = z * sqrt(p (1 - p) / n): find them by bisection

        def gap(p: float, k: int = k, n: int = n) -> float:
            return abs(k / n - p) - z * (p * (1 - p) / n) ** 0.5

        def root(lo: float, hi: float) -> float:
            for _ in range(200):
                mid = (lo + hi) / 2
                if (gap(lo) > 0) == (gap(mid) > 0):
                    lo = mid
                else:
                    hi = mid
            return (lo + hi) / 2

        expected_low = 0.0 if k == 0 else root(0.0, k / n)
        expected_high = 1.0 if k == n else root(k / n, 1.0)
        assert low == pytest.approx(expected_low, abs=1e-6)
        assert high == pytest.approx(expected_high, abs=1e-6)
    assert all(t == pytest.approx(1.0) for t in totals.values())


def test_one_row_per_surveyed_city_and_wave(pipeline_run: PipelineRun) -> None:
    paths = pipeline_run.paths
    expected = {(y, c) for y in (2016, 2018, 2019) for c in find_wave_spec(y, paths).cities_surveyed}
    with duckdb.connect(str(paths.published), read_only=True) as con:
        rows = con.execute("select wave_year, municipality_code from marts.fct_city_responsibility").fetchall()
    assert len(rows) == len(expected)
    assert set(rows) == expected


def test_published_file_holds_only_the_marts(pipeline_run: PipelineRun) -> None:
    with duckdb.connect(str(pipeline_run.paths.published), read_only=True) as con:
        schemas = {r[0] for r in con.execute("select distinct table_schema from information_schema.tables").fetchall()}
        loads = con.execute("select load_ids from marts.publication").fetchone()[0]
    assert schemas == {"marts"}
    with duckdb.connect(str(pipeline_run.paths.warehouse), read_only=True) as con:
        current = [
            r[0]
            for r in con.execute("select load_id from raw.load_registry where is_current order by wave_year").fetchall()
        ]
    assert loads == current


def _personal_data(paths) -> tuple[set[str], set[str]]:
    """Names and e-mail addresses in the delivered files, read without the loader."""
    names, emails = set(), set()
    for year in (2016, 2018, 2019):
        spec = find_wave_spec(year, paths)
        if spec.format == "xlsx":
            rows = [
                [str(c or "") for c in r]
                for r in openpyxl.load_workbook(spec.file, read_only=True)[spec.sheet].iter_rows(values_only=True)
            ]
        else:
            with open(spec.file, encoding=spec.encoding, newline="") as f:
                rows = list(csv.reader(f, delimiter=spec.delimiter))
        header = [h.strip() for h in rows[spec.header_row - 1]]
        name_col = header.index(next(h for h, f in spec.columns.items() if f == "respondent_name"))
        email_col = header.index(next(h for h, f in spec.columns.items() if f == "respondent_email"))
        for cells in rows[spec.header_row :]:
            names.add(cells[name_col].strip().lower())
            emails.add(cells[email_col].strip().lower())
    return names, emails


def _text_values(con: duckdb.DuckDBPyConnection, schemas: tuple[str, ...]) -> list[str]:
    values = []
    columns = con.execute(
        "select table_schema, table_name, column_name from information_schema.columns "
        f"where table_schema in {schemas} and data_type = 'VARCHAR'"
    ).fetchall()
    for schema, table, column in columns:
        values += [
            str(v[0]).lower()
            for v in con.execute(
                f'select distinct "{column}" from "{schema}"."{table}" where "{column}" is not null'
            ).fetchall()
        ]
        values.append(column.lower())
    return values


def test_no_names_or_emails_beyond_raw(pipeline_run: PipelineRun) -> None:
    paths = pipeline_run.paths
    names, emails = _personal_data(paths)
    assert len(names) > 20 and len(emails) > 100
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        in_raw = _text_values(con, ("raw", "raw"))
        beyond_raw = _text_values(con, ("staging", "intermediate", "marts"))
    with duckdb.connect(str(paths.published), read_only=True) as con:
        beyond_raw += _text_values(con, ("marts", "marts"))
    assert any(e in in_raw for e in emails), "the raw layer keeps the delivered e-mail addresses"
    phone = re.compile(r"\b0\d{1,2}[ -]?\d{3}[ -]?\d{3,4}\b")
    assert any(phone.search(v) for v in in_raw), "the sample's free text carries a phone number, kept in raw"
    leaked = [v for v in beyond_raw if v in emails or v in names or "@" in v or phone.search(v)]
    assert not leaked, f"personal data beyond raw: {leaked[:5]}"
    unkeyed = {hashlib.sha256(e.encode()).hexdigest() for e in emails}
    assert not unkeyed & set(beyond_raw), "respondent keys must be keyed hashes, not plain sha256 of the address"


def test_data_docs_are_built(pipeline_run: PipelineRun) -> None:
    index = pipeline_run.paths.data_docs / "index.html"
    assert index.exists()
    assert "raw_wave" in index.read_text(encoding="utf-8")


def test_waves_are_harmonised(pipeline_run: PipelineRun) -> None:
    with duckdb.connect(str(pipeline_run.paths.warehouse), read_only=True) as con:
        minutes = con.execute(
            "select count(*), count(response_minutes), "
            "sum(case when response_minutes % 1 = 0.5 then 1 else 0 end) "
            "from staging.stg_survey__respondents where wave_year = 2016"
        ).fetchone()
        unresolved = con.execute(
            "select count(*) from staging.stg_survey__respondents "
            "where municipality_code is null or respondent_role_code is null"
        ).fetchone()[0]
        scores = con.execute(
            "select wave_year, min(answer_score), max(answer_score) from "
            "marts.fct_survey_answers where question_id = 'cooperation' group by 1"
        ).fetchall()
        cdo = dict(
            con.execute(
                "select wave_year, count(*) from marts.fct_survey_answers "
                "where answer_code = 'chief_digital_officer' group by 1"
            ).fetchall()
        )
    total, parsed, halves = minutes
    assert total == parsed and halves > 0, "decimal commas of the 2016 export are read as numbers"
    assert all(lo <= hi for _y, lo, hi in scores)
    assert unresolved == 0
    assert {y for y, _lo, _hi in scores} == {2016, 2018, 2019}
    assert all(0 <= lo <= hi <= 1 for _y, lo, hi in scores)
    assert set(cdo) == {2019}, "the chief digital officer option exists from 2019 on"


def test_census_bounds_and_labels(pipeline_run: PipelineRun) -> None:
    """The share of all 20 surveyed cities lies between the bounds non-response allows; answers carry labels."""
    with duckdb.connect(str(pipeline_run.paths.published), read_only=True) as con:
        bounds = con.execute(
            "select wave_year, cities, cities_responded, cities_surveyed, share_of_surveyed_min, "
            "share_of_surveyed_max from marts.fct_responsibility_shares where is_it_management "
            "order by 1"
        ).fetchall()
        unlabelled = con.execute(
            "select count(*) from marts.fct_survey_answers where answer_label_en is null or "
            "answer_label_en = answer_code"
        ).fetchone()[0]
        planning = con.execute(
            "select distinct answer_label_en from marts.fct_survey_answers where answer_code = 'planning'"
        ).fetchall()
    for _year, k, responded, surveyed, low, high in bounds:
        assert low == pytest.approx(k / surveyed)
        assert high == pytest.approx((k + surveyed - responded) / surveyed)
    assert bounds[0][1:4] == (16, 19, 20) and (bounds[0][4], bounds[0][5]) == pytest.approx((0.80, 0.85))
    assert unlabelled == 0 and planning == [("Planning stage",)]
