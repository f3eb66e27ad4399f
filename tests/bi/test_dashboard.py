"""Superset (its own environment, bi/.venv) with the dashboard imported from bi/dashboards/, on the marts of each
engine: the published DuckDB file, and the PostgreSQL warehouse (the same marts copied into a database of their own on
the local PostgreSQL, 127.0.0.1:5432, read as the read-only role survey_reader; tests/bi/pg_marts.py).

For each engine it starts bi/run_superset.py as a subprocess in its own process group (state in var/tests/superset,
var/tests/superset_postgresql), on a free port, waits for /health, and checks through Superset's chart-data API what
every chart shows against SQL on the marts Superset reads: the shares, their Wilson intervals and census bounds, the
IT-led share beside the published statement, every question of marts.dim_question (but `lead`) in the
Other-questions charts with its texts and answer labels in scale order, no raw code (answer codes, question ids)
where a label belongs, and the main chart's legend (one page, IT management first, a colour of its own for every
option). On PostgreSQL it also checks the connection: the reader, read-only, and no password in the bundle on disk.

On DuckDB it also opens the dashboard in headless Chromium until every chart has rendered (screenshot in
var/tests/superset/dashboard.png), picks a region in the native filter Region and compares the city table and the
shares with SQL for that region, checks that a new load renamed over the published file shows up without a restart,
and that a question a new wave adds reaches the Other-questions charts, in words, with no edit to the bundle.
Superset's whole process group is stopped at the end, also on failure; one Superset runs at a time. Without
PostgreSQL the PostgreSQL tests fail (they never skip). (The datasets' SQL on both engines: test_dataset_sql.py.)
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cmp_to_key
from pathlib import Path
from typing import Protocol

import duckdb
import pytest
import yaml
from conftest import ROOT, TEST_VAR, PipelineRun, make_paths
from pg_marts import PG_HOST, PG_PORT, READER, PostgresMarts, postgres_marts

BI = ROOT / "bi"
BUNDLE = BI / "dashboards"
BI_PYTHON = BI / ".venv" / "bin" / "python"
UV = ROOT / ".tools" / "bin" / "uv"
SLUG = "who-leads-digitalisation"
pytestmark = pytest.mark.slow
# the tests that rename files over the published DuckDB file, or drive the browser (once is enough)
DUCKDB_ONLY = pytest.mark.parametrize("superset", ["duckdb"], indirect=True)
ADMIN_PASSWORD = "test-admin-password"  # noqa: S105
STARTUP_TIMEOUT = 420
# The marts Superset reads in these tests: the published DuckDB file, and the PostgreSQL warehouse as survey_reader
ENGINES = ["duckdb", "postgresql"]
# The local PostgreSQL trusts local connections, so any password logs in: this one is only looked for where it must
# not be (the bundle on disk, Superset's metadata in clear)
MARTS_PASSWORD = "reader-password-kept-out-of-the-bundle"  # noqa: S105
Z = 1.959964  # 95 %, as dbt_project/macros' wilson_bound

MAIN_CHART = "Who leads digitalisation - share of responding cities by wave"
IT_LED = "IT-led share beside the published statement"
SHARES_TABLE = "Shares with 95 % intervals and census bounds"
CITY_TABLE = "City history - primary responsibility per wave"
ANSWER_CHART = "Other questions - answers to the question, by wave"
SCORE_CHART = "Other questions - mean score (0-1) of every scale question by wave"
ANSWER_TABLE = "Other questions - every answer per wave"
OTHER_QUESTION_CHARTS = (ANSWER_CHART, SCORE_CHART, ANSWER_TABLE)


def dashboard_chart_count() -> int:
    (dashboard,) = (BUNDLE / "dashboards").glob("*.yaml")
    position = yaml.safe_load(dashboard.read_text())["position"]
    return sum(1 for node in position.values() if isinstance(node, dict) and node.get("type") == "CHART")


def ensure_bi_env() -> None:
    """bi/.venv from bi/uv.lock, as `make dashboard` builds it."""
    if BI_PYTHON.exists():
        return
    env = dict(os.environ)
    if shutil.which("python3.11"):
        env["UV_PYTHON"] = "python3.11"
    started = time.monotonic()
    done = subprocess.run(
        [str(UV), "sync", "--frozen", "--quiet", "--project", str(BI)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    print(f"bi/.venv installed in {time.monotonic() - started:.1f} s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (run_superset.py, gunicorn and its worker), SIGKILL if it lingers."""
    try:
        pgid = os.getpgid(process.pid)
    except ProcessLookupError:
        return
    for sig, grace in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            process.poll()
            try:
                os.killpg(pgid, 0)  # anyone left in the group?
            except ProcessLookupError:
                return
            time.sleep(0.3)
    process.poll()


@dataclass
class Superset:
    engine: str  # "duckdb" or "postgresql": the marts it reads
    url: str
    var: Path
    marts: Marts  # the marts Superset reads, for the expected answers
    published: Path | None  # Superset's copy of the published file (DuckDB only)
    log: Path
    startup_seconds: float

    def api(self, method: str, path: str, token: str | None = None, body: dict | None = None) -> tuple[int, object]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")[:2000]

    def login(self) -> str:
        status, body = self.api(
            "POST", "/api/v1/security/login", body={"username": "admin", "password": ADMIN_PASSWORD, "provider": "db"}
        )
        assert status == 200, body
        return body["access_token"]


@contextmanager
def start_superset(var: Path, settings: dict[str, str]) -> Iterator[tuple[str, Path, float]]:
    """bi/run_superset.py with its state in `var` and the given settings (the marts), on a free port, until /health
    answers; yields the URL, run_superset.py's output and the start-up time, and stops the whole process group."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env = {k: v for k, v in env.items() if k not in ("SURVEY_MARTS_URI", "SURVEY_PUBLISHED_PATH")}
    env.update(
        {"SURVEY_VAR_DIR": str(var), "SUPERSET_ADMIN_PASSWORD": ADMIN_PASSWORD, "SURVEY_ENV": "development", **settings}
    )
    log = var / "run_superset.out"
    started = time.monotonic()
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(BI_PYTHON), str(BI / "run_superset.py"), "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"run_superset.py exited with {process.returncode}:\n{log.read_text()[-4000:]}\n"
                    f"see {var / 'superset' / 'superset.log'}"
                )
            if time.monotonic() - started > STARTUP_TIMEOUT:
                pytest.fail(f"Superset did not start within {STARTUP_TIMEOUT} s:\n{log.read_text()[-4000:]}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            time.sleep(1)
        startup = time.monotonic() - started
        print(f"\nSuperset start-up (db upgrade, init, admin, import, server until /health): {startup:.1f} s")
        (var / "startup_seconds.txt").write_text(f"{startup:.1f}\n")
        yield url, log, startup
    finally:
        stop_group(process)
    with pytest.raises(ProcessLookupError):
        os.killpg(process.pid, 0)  # the whole group is gone


# Superset's metadata as a test session's first start left it, migrated and initialised for this Superset version
# (`superset db upgrade` and `superset init`, about a minute on 2 cores, the same for every engine and session): the
# next sessions on this machine start from it, as a restart of `make dashboard` does. A fresh clone makes it once.
SUPERSET_TEMPLATE = TEST_VAR / "superset_template"


def _metadata(source: Path, target: Path) -> bool:
    """Copy Superset's migrated metadata (superset.db and the stamp naming the version that migrated it), if the
    source has it; whether it did."""
    stamps = sorted(source.glob("initialised-superset-*.stamp"))
    if not stamps or not (source / "superset.db").exists():
        return False
    target.mkdir(parents=True, exist_ok=True)
    for old in target.glob("initialised-superset-*.stamp"):
        old.unlink()
    for file in [source / "superset.db", *stamps]:
        shutil.copy2(file, target / file.name)
    return True


@pytest.fixture(scope="module", params=ENGINES)
def superset(request: pytest.FixtureRequest, pipeline_run: PipelineRun) -> Iterator[Superset]:
    """Superset on the marts of one engine: the published DuckDB file, or the PostgreSQL warehouse (the same marts in
    a database of their own on the local PostgreSQL, read as survey_reader). Tests run on both engines unless they
    are parametrised with one (`indirect=True`); one Superset runs at a time."""
    ensure_bi_env()
    if request.param == "duckdb":
        paths = make_paths("superset")
        # Superset reads its own copy of the published file, so the test can rename a new load over it (as the
        # pipeline does) without touching the session's pipeline run.
        published = paths.var / "published" / "survey_marts.duckdb"
        published.parent.mkdir(parents=True)
        shutil.copy2(pipeline_run.paths.published, published)
        reused = _metadata(SUPERSET_TEMPLATE, paths.var / "superset")
        with start_superset(paths.var, {"SURVEY_PUBLISHED_PATH": str(published)}) as (url, log, startup):
            # a fresh state is migrated; one from the template is not, unless Superset's version changed since
            assert reused or "done before for this Superset" not in log.read_text(), log.read_text()
            yield Superset("duckdb", url, paths.var, DuckDBMarts(pipeline_run.paths.published), published, log, startup)
        _metadata(paths.var / "superset", SUPERSET_TEMPLATE)
    else:
        paths = make_paths("superset_postgresql")
        # Superset's metadata as the DuckDB engine's start left it, migrated and initialised (which does not depend
        # on the engine): this start skips those two steps, as a restart of `make dashboard` does
        earlier = TEST_VAR / "superset" / "superset"
        reused = sorted(earlier.glob("initialised-superset-*.stamp"))
        if reused:
            (paths.var / "superset").mkdir(parents=True)
            for file in [earlier / "superset.db", *reused]:
                shutil.copy2(file, paths.var / "superset" / file.name)
        with postgres_marts(pipeline_run.paths.published, tag="bi_superset") as database:
            # trust auth takes any password: this one only shows that it never reaches the bundle on disk
            uri = f"postgresql://{READER}:{MARTS_PASSWORD}@{PG_HOST}:{PG_PORT}/{database}"
            with start_superset(paths.var, {"SURVEY_MARTS_URI": uri}) as (url, log, startup):
                assert bool(reused) == ("done before for this Superset" in log.read_text()), log.read_text()
                yield Superset("postgresql", url, paths.var, PostgresMarts(database), None, log, startup)


# --- the marts Superset reads, with SQL ---------------------------------------------------------------------------


class Marts(Protocol):
    def query(self, sql: str, params: list | None = None) -> list[dict]: ...


class DuckDBMarts:
    """The published DuckDB file, read-only."""

    def __init__(self, file: Path) -> None:
        self.file = file

    def query(self, sql: str, params: list | None = None) -> list[dict]:
        with duckdb.connect(str(self.file), read_only=True) as con:
            cur = con.execute(sql, params or [])
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=False)) for row in cur.fetchall()]


def query(marts: Marts, sql: str, params: list | None = None) -> list[dict]:
    """The same SQL on either engine (`?` placeholders)."""
    return marts.query(sql, params)


def waves(marts: Marts) -> set[str]:
    return {str(r["wave_year"]) for r in query(marts, "select wave_year from marts.dim_year")}


def wilson(k: int, n: int) -> tuple[float, float]:
    """The 95 % Wilson score interval of k out of n, written out here independently of the SQL."""
    p = k / n
    centre, half = p + Z * Z / (2 * n), Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n))
    return max(0.0, (centre - half) / (1 + Z * Z / n)), min(1.0, (centre + half) / (1 + Z * Z / n))


def expected_shares(marts: Marts, region: str | None = None) -> dict[tuple[str, str], dict]:
    """Per wave and offered option (by its English label): cities, responding and surveyed cities, share, Wilson
    interval and census bounds, computed from the city facts (all cities, or those of one region)."""
    cities = query(
        marts,
        """
        select f.wave_year, f.has_responded, f.responsibility_code
        from marts.fct_city_responsibility f
        where ? is null or f.municipality_code in (
            select municipality_code from marts.dim_city where is_current and region_name_fi = ?)
    """,
        [region, region],
    )
    offered = query(
        marts,
        """
        select s.wave_year, s.responsibility_code, r.responsibility_label_en
        from marts.fct_responsibility_shares s
        join marts.dim_responsibility r using (responsibility_code)
    """,
    )
    out = {}
    for o in offered:
        wave = [c for c in cities if c["wave_year"] == o["wave_year"]]
        n = sum(c["has_responded"] for c in wave)
        k = sum(c["has_responded"] and c["responsibility_code"] == o["responsibility_code"] for c in wave)
        low, high = wilson(k, n) if n else (None, None)
        out[(str(o["wave_year"]), o["responsibility_label_en"])] = {
            "cities": k,
            "cities_responded": n,
            "cities_surveyed": len(wave),
            "share": k / n if n else None,
            "share_ci_lower_95": low,
            "share_ci_upper_95": high,
            "share_of_surveyed_min": k / len(wave),
            "share_of_surveyed_max": (k + len(wave) - n) / len(wave),
        }
    return out


def legend_labels(marts: Marts) -> dict[str, str]:
    """The main chart's series name of each responsibility option: its number in the questionnaire and its label."""
    return {
        r["responsibility_label_en"]: f"{r['sort_order']}. {r['responsibility_label_en']}"
        for r in query(marts, "select responsibility_label_en, sort_order from marts.dim_responsibility")
    }


def other_questions(marts: Marts) -> list[dict]:
    """Every wave x question of marts.dim_question except `lead`, with the question's cross-wave name (its wording
    in the latest wave that asked it)."""
    return query(
        marts,
        """
        select q.wave_year, q.question_id, q.question_text_en, q.question_text_fi, q.answer_type, q.scale_min,
               q.scale_max, latest.question
        from marts.dim_question q
        join (select question_id, question_text_en as question from marts.dim_question d
              where wave_year = (select max(wave_year) from marts.dim_question l where l.question_id = d.question_id)
             ) latest using (question_id)
        where q.question_id <> 'lead'
        order by q.question_id, q.wave_year
    """,
    )


def answer_distribution(marts: Marts, question_id: str) -> list[dict]:
    """The answers to one question per wave in scale order, with their share of the wave's respondents to it."""
    return query(
        marts,
        """
        select wave_year, answer_code, min(answer_label_en) as answer_label_en, min(answer_label_fi) as answer_label_fi,
               min(answer_sort_order) as answer_sort_order, count(*) as respondents,
               count(*) / sum(count(*)) over (partition by wave_year) as share, avg(answer_score) as mean_score
        from marts.fct_survey_answers where question_id = ?
        group by wave_year, answer_code order by wave_year, answer_sort_order
    """,
        [question_id],
    )


def raw_codes(marts: Marts) -> set[str]:
    """Codes that must never stand where a label belongs: answer codes and question ids (and responsibility
    codes, which the dashboard shows by their labels too)."""
    return {
        r["code"]
        for r in query(
            marts,
            """
        select distinct answer_code as code from marts.fct_survey_answers
        union select distinct question_id from marts.fct_survey_answers
        union select distinct question_id from marts.dim_question
        union select responsibility_code from marts.dim_responsibility
    """,
        )
        if r["code"]
    }


# --- Superset's answers ------------------------------------------------------------------------------------------


def dashboard_charts(superset: Superset, token: str) -> dict[str, dict]:
    status, charts = superset.api("GET", f"/api/v1/dashboard/{SLUG}/charts", token)
    assert status == 200, charts
    return {c["slice_name"]: c for c in charts["result"]}


def chart_data(superset: Superset, token: str) -> dict[str, dict]:
    out = {}
    for name, chart in dashboard_charts(superset, token).items():
        status, body = superset.api("GET", f"/api/v1/chart/{chart['id']}/data/", token)
        assert status == 200, f"{name}: {body}"
        out[name] = body["result"][0]
    return out


def chart_data_filtered(superset: Superset, token: str, chart_id: int, filters: list[dict]) -> dict:
    """The chart's saved query with filters added, as a native filter adds them on the dashboard."""
    status, chart = superset.api("GET", f"/api/v1/chart/{chart_id}", token)
    assert status == 200, chart
    context = json.loads(chart["result"]["query_context"])
    for q in context["queries"]:
        q["filters"] = [*q.get("filters", []), *filters]
    status, body = superset.api("POST", "/api/v1/chart/data", token, context)
    assert status == 200, body
    return body["result"][0]


def chart_params(superset: Superset, token: str, name: str) -> dict:
    chart_id = dashboard_charts(superset, token)[name]["id"]
    status, chart = superset.api("GET", f"/api/v1/chart/{chart_id}", token)
    assert status == 200, chart
    return json.loads(chart["result"]["params"])


def dashboard_metadata(superset: Superset, token: str) -> dict:
    status, dashboard = superset.api("GET", f"/api/v1/dashboard/{SLUG}", token)
    assert status == 200, dashboard
    return json.loads(dashboard["result"]["json_metadata"])


def natural_order(names: list[str], ascending: bool = True) -> list[str]:
    """The order the ECharts bar chart gives series sorted by name (Intl.Collator, numeric, base sensitivity)."""

    def key(name: str) -> list:
        return [
            (0, int(part), "") if part.isdigit() else (1, 0, part.casefold())
            for part in re.split(r"(\d+)", name)
            if part
        ]

    def compare(a: str, b: str) -> int:
        return (key(a) > key(b)) - (key(a) < key(b))

    return sorted(names, key=cmp_to_key(compare), reverse=not ascending)


# --- the tests ---------------------------------------------------------------------------------------------------


def test_charts_carry_the_waves_the_shares_intervals_and_census_bounds(superset: Superset) -> None:
    marts = superset.marts
    token = superset.login()
    data = chart_data(superset, token)
    assert len(data) == dashboard_chart_count()
    expected_waves = waves(marts)
    for name, result in data.items():
        assert result["rowcount"] > 0, f"{name}: no rows"
        if name == ANSWER_CHART:  # its bars are named by wave and answer
            assert {r["answer_in_wave"].split(" · ")[0] for r in result["data"]} == expected_waves
        else:
            assert {str(r["wave"]) for r in result["data"]} == expected_waves, name

    mart_shares = {
        (str(r["wave_year"]), r["responsibility_label_en"]): r
        for r in query(
            marts,
            """
        select * from marts.fct_responsibility_shares""",
        )
    }
    # the shares table: every option of every wave, as the marts have it and as computed from the city facts
    table = {(r["wave"], r["responsibility_label_en"]): r for r in data[SHARES_TABLE]["data"]}
    assert set(table) == set(mart_shares)
    computed = expected_shares(marts)
    for key, row in table.items():
        for column in (
            "cities",
            "cities_responded",
            "cities_surveyed",
            "share",
            "share_ci_lower_95",
            "share_ci_upper_95",
            "share_of_surveyed_min",
            "share_of_surveyed_max",
        ):
            assert row[column] == pytest.approx(mart_shares[key][column], abs=1e-9), (key, column)
            assert row[column] == pytest.approx(computed[key][column], abs=1e-9), (key, column)
    assert [(r["wave"], r["responsibility_label_en"]) for r in data[SHARES_TABLE]["data"]] == [
        (str(r["wave_year"]), r["responsibility_label_en"])
        for r in query(
            marts,
            """
            select s.wave_year, r.responsibility_label_en from marts.fct_responsibility_shares s
            join marts.dim_responsibility r using (responsibility_code) order by s.wave_year, r.sort_order""",
        )
    ]

    it_led = {w: r for (w, _), r in mart_shares.items() if r["is_it_management"]}
    beside = {r["wave"]: r for r in data[IT_LED]["data"]}
    assert set(beside) == set(it_led) == expected_waves
    for wave, row in beside.items():
        assert row["it_led_share"] == pytest.approx(it_led[wave]["share"], abs=1e-12)
        assert row["share_of_surveyed_min"] == pytest.approx(it_led[wave]["share_of_surveyed_min"], abs=1e-12)
        assert row["share_of_surveyed_max"] == pytest.approx(it_led[wave]["share_of_surveyed_max"], abs=1e-12)
        assert (
            row["share_of_surveyed_min"] <= row["it_led_share"] <= row["share_of_surveyed_max"]
            or it_led[wave]["cities_responded"] == 0
        )
    statements = {
        str(r["wave_year"]): r["published_it_led_statement_en"]
        for r in query(marts, "select wave_year, published_it_led_statement_en from marts.dim_year")
    }
    assert {w: r["published_statement_en"] for w, r in beside.items()} == {w: s or "-" for w, s in statements.items()}

    labels = legend_labels(marts)
    bars = {(r["wave"], r["responsibility_legend_en"]): r["share"] for r in data[MAIN_CHART]["data"]}
    assert bars == pytest.approx({(w, labels[label]): m["share"] for (w, label), m in mart_shares.items()}, abs=1e-12)
    for wave in expected_waves:  # the shares of each wave add up to 1
        assert sum(s for (w, _), s in bars.items() if w == wave) == pytest.approx(1.0)


def test_main_chart_legend_one_page_it_management_first_with_a_colour_of_its_own(superset: Superset) -> None:
    marts = superset.marts
    token = superset.login()
    params = chart_params(superset, token, MAIN_CHART)
    # a plain legend lists every series; "scroll" pages them ("1/2") when they do not fit
    assert params["show_legend"] is True and params["legendType"] == "plain"
    assert params["sort_series_type"] == "name" and not params.get("legendSort")

    series = sorted({r["responsibility_legend_en"] for r in chart_data(superset, token)[MAIN_CHART]["data"]})
    labels = legend_labels(marts)
    (it_label,) = [
        r["responsibility_label_en"]
        for r in query(marts, "select responsibility_label_en from marts.dim_responsibility where is_it_management")
    ]
    ordered = natural_order(series, ascending=params["sort_series_ascending"])
    assert ordered[0] == labels[it_label], f"the legend starts with {ordered[0]!r}"
    assert ordered == [
        labels[r["responsibility_label_en"]]
        for r in query(
            marts,
            """
        select distinct r.responsibility_label_en, r.sort_order from marts.fct_responsibility_shares s
        join marts.dim_responsibility r using (responsibility_code) order by r.sort_order""",
        )
    ]

    colours = dashboard_metadata(superset, token)["label_colors"]
    every_option = set(labels.values())
    missing = every_option - set(colours)
    assert not missing, f"no colour set for {missing}"
    it_colour = colours[labels[it_label]].lower()
    others = {colours[s].lower() for s in every_option - {labels[it_label]}}
    assert it_colour not in others, "IT management must have a colour of its own"
    assert len(others) == len(every_option) - 1, "every option has its own colour"


def test_other_questions_show_every_question_with_texts_and_labels_in_scale_order(superset: Superset) -> None:
    marts = superset.marts
    token = superset.login()
    charts = dashboard_charts(superset, token)
    data = chart_data(superset, token)
    questions = other_questions(marts)
    assert questions, "dim_question has no question but lead"

    # the table: every wave x question of dim_question (but lead) with the wording that wave asked
    table = data[ANSWER_TABLE]["data"]
    assert {(r["wave"], r["question_as_asked_en"]) for r in table} == {
        (str(q["wave_year"]), q["question_text_en"]) for q in questions
    }
    assert "lead" not in {r["question"] for r in table}

    filters = [f for f in dashboard_metadata(superset, token)["native_filter_configuration"] if f["name"] == "Question"]
    assert len(filters) == 1 and filters[0]["targets"][0]["column"]["name"] == "question"

    for question_id in sorted({q["question_id"] for q in questions}):
        asked = [q for q in questions if q["question_id"] == question_id]
        name = asked[0]["question"]
        expected = answer_distribution(marts, question_id)
        with_filter = [{"col": "question", "op": "IN", "val": [name]}]  # what the Question filter adds

        bars = chart_data_filtered(superset, token, charts[ANSWER_CHART]["id"], with_filter)["data"]
        assert {b["answer_in_wave"].split(" · ")[0] for b in bars} == {str(q["wave_year"]) for q in asked}, name
        # the bars come sorted by wave and position on the scale (descending in a horizontal chart, whose first
        # category is drawn at the bottom)
        order = [b["answer_order"] for b in bars]
        assert order in (sorted(order), sorted(order, reverse=True)), name
        answered = sorted((b for b in bars if b["respondent_share"]), key=lambda b: b["answer_order"])
        # one bar per answer given, labelled with the answer label (a wave without answers has "(no answers)")
        assert [b["answer_in_wave"] for b in answered] == [
            f"{e['wave_year']} · {_bar_label(e, q)}"
            for e in expected
            for q in asked
            if q["wave_year"] == e["wave_year"]
        ], name
        assert [b["respondent_share"] for b in answered] == pytest.approx([e["share"] for e in expected])

        rows = chart_data_filtered(superset, token, charts[ANSWER_TABLE]["id"], with_filter)["data"]
        assert [
            (r["wave"], r["answer_label_en"], r["answer_label_fi"], r["respondents"]) for r in rows if r["respondents"]
        ] == [(str(e["wave_year"]), e["answer_label_en"], e["answer_label_fi"], e["respondents"]) for e in expected], (
            name
        )

    scores = {(r["wave"], r["question"]): r["mean_score"] for r in data[SCORE_CHART]["data"]}
    expected_scores = {}
    for q in questions:
        if q["answer_type"] == "scale":
            given = [e for e in answer_distribution(marts, q["question_id"]) if e["wave_year"] == q["wave_year"]]
            if given:
                expected_scores[(str(q["wave_year"]), q["question"])] = sum(
                    e["mean_score"] * e["respondents"] for e in given
                ) / sum(e["respondents"] for e in given)
    assert expected_scores, "no scale question to score"
    assert scores == pytest.approx(expected_scores, abs=1e-9)


def _bar_label(answer: dict, asked: dict) -> str:
    """The answer chart's bar label: the answer label, with the scale's ends when the point has no words of its own
    (the same label in English and Finnish, e.g. "7" on a 0-10 scale)."""
    label = answer["answer_label_en"]
    if asked["answer_type"] == "scale" and label == answer["answer_label_fi"] and asked["scale_min"] is not None:
        return f"{label} ({int(asked['scale_min'])}-{int(asked['scale_max'])})"
    return label


def test_no_chart_shows_a_raw_code_where_a_label_belongs(superset: Superset) -> None:
    marts = superset.marts
    codes = raw_codes(marts)
    assert {"score_2", "planning", "business_digital_skills"} <= codes  # the codes the dashboard once showed
    token = superset.login()
    charts = dashboard_charts(superset, token)
    results = list(chart_data(superset, token).items())
    for question in sorted({q["question"] for q in other_questions(marts)}):
        for name in (ANSWER_CHART, ANSWER_TABLE):
            results.append(
                (
                    f"{name} [{question}]",
                    chart_data_filtered(
                        superset, token, charts[name]["id"], [{"col": "question", "op": "IN", "val": [question]}]
                    ),
                )
            )
    for name, result in results:
        for row in result["data"]:
            for column, value in row.items():
                if not isinstance(value, str) or column == "matches_published":  # a yes/NO flag, not an answer
                    continue
                assert value not in codes, f"{name}: {column} shows the code {value!r}"
                inside = [c for c in codes if "_" in c and c in value]
                assert not inside, f"{name}: {column} = {value!r} holds the code(s) {inside}"


@pytest.mark.parametrize("superset", ["postgresql"], indirect=True)
def test_postgresql_marts_are_read_as_the_reader_read_only_and_no_password_is_on_disk(superset: Superset) -> None:
    """The bundle's one database definition, set for PostgreSQL: the read-only role, every transaction read-only,
    and the password given beside the bundle (stored encrypted), never written into the bundle file."""
    token = superset.login()
    status, listed = superset.api("GET", "/api/v1/database/", token)
    assert status == 200, listed
    (database,) = listed["result"]
    status, connection = superset.api("GET", f"/api/v1/database/{database['id']}/connection", token)
    assert status == 200, connection
    connection = connection["result"]
    assert connection["backend"] == "postgresql"
    assert connection["database_name"] == "Survey marts (PostgreSQL, read-only)"
    assert re.fullmatch(
        rf"postgresql\+psycopg2://{READER}:X{{10}}@{re.escape(PG_HOST)}:{PG_PORT}/survey_bi_superset_\w+",
        connection["sqlalchemy_uri"],
    ), connection["sqlalchemy_uri"]
    assert not connection["allow_dml"] and not connection["allow_file_upload"]

    # as PostgreSQL sees Superset's connection: a chart-data query of SQL expressions on a dashboard dataset
    chart_id = dashboard_charts(superset, token)[CITY_TABLE]["id"]
    status, chart = superset.api("GET", f"/api/v1/chart/{chart_id}", token)
    assert status == 200, chart
    context = json.loads(chart["result"]["query_context"])
    context["queries"] = [
        {
            "columns": [
                {"expressionType": "SQL", "sqlExpression": "current_user", "label": "role"},
                {
                    "expressionType": "SQL",
                    "sqlExpression": "current_setting('transaction_read_only')",
                    "label": "read_only",
                },
            ],
            "metrics": None,
            "filters": [],
            "orderby": [],
            "row_limit": 1,
        }
    ]
    status, body = superset.api("POST", "/api/v1/chart/data", token, context)
    assert status == 200, body
    assert body["result"][0]["data"] == [{"role": READER, "read_only": "on"}]

    bundle = superset.var / "superset" / "survey_dashboard_bundle.zip"
    with zipfile.ZipFile(bundle) as zipped:
        texts = {name: zipped.read(name).decode() for name in zipped.namelist()}
    (database_yaml,) = [yaml.safe_load(t) for n, t in texts.items() if "/databases/" in n]
    assert database_yaml["sqlalchemy_uri"].startswith(f"postgresql+psycopg2://{READER}:XXXXXXXXXX@")
    assert "engines" not in database_yaml
    assert [n for n, t in texts.items() if MARTS_PASSWORD in t] == []
    for log in (superset.log, superset.var / "superset" / "superset.log"):
        assert MARTS_PASSWORD not in log.read_text(errors="replace"), log
    with sqlite3.connect(superset.var / "superset" / "superset.db") as metadata:
        (stored,) = metadata.execute("select password from dbs where id = ?", [database["id"]]).fetchone()
    assert stored and MARTS_PASSWORD not in str(stored), "the password is kept, encrypted"


@DUCKDB_ONLY
def test_dashboard_renders_and_the_region_filter_narrows_the_cities_and_shares(superset: Superset) -> None:
    chromium = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
    if not chromium.exists():
        reason = f"{chromium} is missing (apt-get install -y chromium chromium-driver)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI must provide it")
        pytest.skip(reason)
    marts = superset.marts
    # the region with the most surveyed cities (a tie goes to the first name)
    region = query(
        marts,
        """
        select region_name_fi, count(*) as cities from marts.dim_city where is_current and is_surveyed
        group by region_name_fi order by cities desc, region_name_fi limit 1""",
    )[0]["region_name_fi"]
    screenshot = superset.var / "dashboard.png"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update({"SUPERSET_ADMIN_PASSWORD": ADMIN_PASSWORD, "CHROMIUM": str(chromium)})
    done = subprocess.run(
        [
            str(BI_PYTHON),
            str(BI / "check_dashboard.py"),
            "--url",
            superset.url,
            "--out",
            str(screenshot),
            "--slug",
            SLUG,
            "--expected-charts",
            str(dashboard_chart_count()),
            "--timeout",
            "180",
            "--region",
            region,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"check_dashboard.py failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    print(
        f"\ndashboard rendered in {report.get('render_seconds')} s (login included, "
        f"{report.get('login_attempts')} attempt(s)); screenshot {screenshot}"
    )
    assert report["problems"] == [], report["problems"]
    assert done.returncode == 0
    assert len(report["charts"]) == dashboard_chart_count()
    assert all(c["rendered"] and not c["error"] for c in report["charts"])
    assert report["external_requests_blocked"] == [], "the dashboard tried to reach another host"
    assert screenshot.exists() and screenshot.stat().st_size > 20_000

    token = superset.login()
    ids = {str(c["id"]): name for name, c in dashboard_charts(superset, token).items()}
    shown = {ids[i]: d for i, d in report["chart_data"].items()}

    # no code in the rendered dashboard's text (tables, titles, the filter bar's values)
    codes = raw_codes(marts)
    text = report["page_text"]
    assert not [c for c in codes if "_" in c and c in text]
    assert "lead" not in {r["question"] for r in shown[ANSWER_TABLE]["data"]}

    # the Question filter picks its first question, and the answer charts show that question only
    first = min(q["question"] for q in other_questions(marts))
    for name in (ANSWER_CHART, ANSWER_TABLE):
        assert {"col": "question", "op": "IN", "val": [first]} in shown[name]["filters"], name
    assert {r["question"] for r in shown[ANSWER_TABLE]["data"]} == {first}

    # after picking the region: the city table lists the region's cities, the shares are the region's
    after = report["region"]
    by_name = {ids[i]: d for i, d in after["chart_data"].items()}
    region_filter = {"col": "region_name_fi", "op": "IN", "val": [region]}
    for name in (CITY_TABLE, MAIN_CHART, SHARES_TABLE):
        assert name in by_name, f"{name} was not queried again after the region was picked"
        assert region_filter in by_name[name]["filters"], name
    for name in set(by_name) - {CITY_TABLE, MAIN_CHART, SHARES_TABLE}:
        assert region_filter not in by_name[name]["filters"], f"{name} is not meant to follow the region"

    expected_cities = query(
        marts,
        """
        select c.city_name_fi, f.wave_year from marts.fct_city_responsibility f
        join marts.dim_city c on c.municipality_code = f.municipality_code and c.is_current
        where c.region_name_fi = ? order by c.city_name_fi, f.wave_year""",
        [region],
    )
    assert expected_cities
    assert after["city_table_cells"] is not None, f"no city table after picking the region: {after['charts']}"
    rendered = [(cells[0], cells[2]) for cells in after["city_table_cells"]]
    assert rendered == [(r["city_name_fi"], str(r["wave_year"])) for r in expected_cities]
    assert {(r["city_name_fi"], r["wave"]) for r in by_name[CITY_TABLE]["data"]} == set(rendered)

    national, regional = expected_shares(marts), expected_shares(marts, region)
    assert regional != national, "pick a region whose shares differ from the national ones"
    labels = legend_labels(marts)
    bars = {}
    for row in by_name[MAIN_CHART]["data"]:  # the browser gets the bars pivoted: a column per series
        for column, value in row.items():
            if column != "wave" and value is not None:  # (None: an option the wave's questionnaire did not offer)
                bars[(row["wave"], column)] = value
    assert bars == pytest.approx(
        {(w, labels[label]): e["share"] for (w, label), e in regional.items() if e["share"] is not None}, abs=1e-9
    )
    table = {(r["wave"], r["responsibility_label_en"]): r for r in by_name[SHARES_TABLE]["data"]}
    assert set(table) == set(regional)
    for key, row in table.items():
        for column, value in regional[key].items():
            assert row[column] == pytest.approx(value, abs=1e-9), (key, column)


@DUCKDB_ONLY
def test_a_new_load_renamed_over_the_published_file_shows_without_restart(superset: Superset) -> None:
    """The pipeline publishes by renaming a new file over the old one: the next query must read the new file."""
    token = superset.login()
    before = chart_data(superset, token)[IT_LED]["data"]
    assert all(r["published_statement_en"] != "changed by the test" for r in before)

    new = superset.published.with_name(".survey_marts.duckdb.test.tmp")
    shutil.copy2(superset.published, new)
    with duckdb.connect(str(new)) as con:
        con.execute(
            "update marts.dim_year set published_it_led_statement_en = 'changed by the test' where wave_year = 2019"
        )
        wave_count = con.execute("select count(*) from marts.dim_year").fetchone()[0]
    os.replace(new, superset.published)

    after = chart_data(superset, token)[IT_LED]["data"]
    assert {r["wave"]: r["published_statement_en"] for r in after}["2019"] == "changed by the test"
    # and Superset never opened the file for writing: a writer can still lock it right now
    with duckdb.connect(str(superset.published)) as con:
        assert con.execute("select count(*) from marts.dim_year").fetchone()[0] == wave_count


NEW_QUESTION = {
    "question_id": "has_digital_strategy",
    "wave_year": 2020,
    "question_text_en": "Has your city adopted a digitalisation strategy?",
    "question_text_fi": "Onko kaupungillanne hyväksytty digitalisaatiostrategia?",
}


@DUCKDB_ONLY
def test_a_question_a_new_wave_adds_shows_without_any_edit(superset: Superset) -> None:
    """A new wave with a question nobody asked before, published as the pipeline publishes (a new file renamed over
    the old one): the Other-questions charts show it, in words, on the next query, with the bundle unchanged."""
    token = superset.login()
    charts = dashboard_charts(superset, token)
    kept = superset.published.with_name("survey_marts.before_new_question.duckdb")
    shutil.copy2(superset.published, kept)
    new = superset.published.with_name(".survey_marts.duckdb.new_question.tmp")
    shutil.copy2(superset.published, new)
    q = NEW_QUESTION
    with duckdb.connect(str(new)) as con:
        con.execute(
            """
            insert into marts.dim_question by name
            select ? as question_wave_id, ? as wave_year, ? as question_id, ? as question_text_fi,
                   ? as question_text_en, 'category' as answer_type, false as is_required, 1 as waves_asked,
                   ? as first_wave_year, ? as last_wave_year, false as is_comparable_across_waves
        """,
            [
                f"{q['wave_year']}-{q['question_id']}",
                q["wave_year"],
                q["question_id"],
                q["question_text_fi"],
                q["question_text_en"],
                q["wave_year"],
                q["wave_year"],
            ],
        )
        # every respondent of the latest wave answers it: two of three yes, the rest no
        con.execute(
            """
            insert into marts.fct_survey_answers by name
            select cast(? as varchar) || '-' || respondent_key || '-' || ? as answer_id, respondent_key,
                   ? as wave_year, municipality_code, respondent_role_code, is_key_respondent, ? as question_id,
                   ? as question_text_fi, ? as question_text_en,
                   case when n % 3 = 0 then 'no' else 'yes' end as answer_code,
                   case when n % 3 = 0 then 'Ei' else 'Kyllä' end as answer_label_fi,
                   case when n % 3 = 0 then 'No' else 'Yes' end as answer_label_en,
                   case when n % 3 = 0 then 2 else 1 end as answer_sort_order
            from (select *, row_number() over (order by respondent_key) as n from marts.fct_survey_answers
                  where question_id = 'lead' and wave_year = (select max(wave_year) from marts.fct_survey_answers))
        """,
            [
                q["wave_year"],
                q["question_id"],
                q["wave_year"],
                q["question_id"],
                q["question_text_fi"],
                q["question_text_en"],
            ],
        )
        expected = dict(
            con.execute(
                """
            select answer_label_en, count(*) from marts.fct_survey_answers where question_id = ?
            group by answer_label_en""",
                [q["question_id"]],
            ).fetchall()
        )
    assert set(expected) == {"Yes", "No"}
    os.replace(new, superset.published)
    try:
        rows = [
            r
            for r in chart_data(superset, token)[ANSWER_TABLE]["data"]
            if r["question_as_asked_en"] == q["question_text_en"]
        ]
        assert {r["wave"] for r in rows} == {str(q["wave_year"])}
        assert {r["question"] for r in rows} == {q["question_text_en"]}  # the name the Question filter offers
        assert {r["question_as_asked_fi"] for r in rows} == {q["question_text_fi"]}
        assert {r["answer_label_en"]: r["respondents"] for r in rows} == expected
        assert {r["answer_label_fi"] for r in rows} == {"Kyllä", "Ei"}
        bars = chart_data_filtered(
            superset,
            token,
            charts[ANSWER_CHART]["id"],
            [{"col": "question", "op": "IN", "val": [q["question_text_en"]]}],
        )["data"]
        assert sorted(bars, key=lambda b: b["answer_order"])[0]["answer_in_wave"] == f"{q['wave_year']} · Yes"
        assert {b["answer_in_wave"] for b in bars} == {f"{q['wave_year']} · Yes", f"{q['wave_year']} · No"}
        assert sum(b["respondent_share"] for b in bars) == pytest.approx(1.0)
        for b in bars + rows:
            assert not {v for v in b.values() if isinstance(v, str)} & {q["question_id"], "yes", "no"}, b
    finally:
        os.replace(kept, superset.published)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-s"]))
