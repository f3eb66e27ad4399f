"""The warehouse on PostgreSQL: raw load with COPY, GX in the database, dbt-postgres, schema swap, read-only role."""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, replace

import duckdb
import psycopg2
import pytest
from conftest import ROOT, PipelineRun, en_us_database_options, make_paths, published_ranges, require_services

from survey_warehouse import quality
from survey_warehouse.intake.waves import find_wave_spec
from survey_warehouse.operations import faults
from survey_warehouse.publishing.publish import swap_marts
from survey_warehouse.raw import load, registry
from survey_warehouse.raw.builds import begin_build
from survey_warehouse.settings import Paths
from survey_warehouse.warehouse import Session, Warehouse

PG = ("127.0.0.1", 5432)
WAVES = (2016, 2018, 2019)


@dataclass
class PostgresBuild:
    paths: Paths
    warehouse: Warehouse
    env: dict[str, str]
    seconds: float
    summary: str


def _admin():
    con = psycopg2.connect(host=PG[0], port=PG[1], user="postgres", dbname="postgres")
    con.autocommit = True
    return con


@pytest.fixture(scope="module")
def pg_build(manifest) -> Iterator[PostgresBuild]:
    """docs/scale-out.md, "Against an existing PostgreSQL, without containers", as written: a fresh warehouse
    database, the connection in AIRFLOW_CONN_SURVEY_WAREHOUSE, SURVEY_DBT_TARGET=postgres, then `make run`."""
    yield from _make_run_on_postgres("postgres", "")


@pytest.fixture(scope="module")
def pg_build_en_us(manifest) -> Iterator[PostgresBuild]:
    """The same on a database whose text collation is en-US (as the compose image's default locale), where text
    does not sort in byte order."""
    require_services(PG)
    options = en_us_database_options()
    if options is None:
        message = "the PostgreSQL server has no en-US collation (ICU or en_US.UTF-8)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; CI must provide it")
        pytest.skip(message)
    yield from _make_run_on_postgres("postgres_en_us", options)


def _make_run_on_postgres(name: str, options: str) -> Iterator[PostgresBuild]:
    require_services(PG)
    suffix = f"{os.getpid()}_{int(time.time())}"
    database, reader = f"survey_test_wh_{name}_{suffix}", f"survey_reader_test_{name}_{suffix}"
    paths = make_paths(name)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SURVEY_", "AIRFLOW"))},
        "SURVEY_VAR_DIR": str(paths.var),
        "SURVEY_DBT_TARGET": "postgres",
        # no password, as a local server with trust authentication is used (dbt's profile gets an empty one)
        "AIRFLOW_CONN_SURVEY_WAREHOUSE": f"postgresql://postgres@{PG[0]}:{PG[1]}/{database}",
        "SURVEY_READER_ROLE": reader,
    }
    with closing(_admin()) as admin:
        admin.cursor().execute(f'create database "{database}" {options}')
    try:
        warehouse = Warehouse(
            backend="postgres",
            host=PG[0],
            port=PG[1],
            user="postgres",
            dbname=database,
            marts_build_schema="marts_next",
            reader_role=reader,
        )
        started = time.monotonic()
        run = subprocess.run(
            ["make", "--no-print-directory", "run"], cwd=ROOT, env=env, capture_output=True, text=True, check=False
        )
        seconds = time.monotonic() - started
        (paths.var / "make_run.log").write_text(run.stdout + run.stderr, encoding="utf-8")
        assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
        print(f"\nmake run on PostgreSQL (3 waves, setup included): {seconds:.1f} s")
        yield PostgresBuild(paths, warehouse, env, seconds, run.stdout)
    finally:
        with closing(_admin()) as admin:
            cur = admin.cursor()
            cur.execute("select pg_terminate_backend(pid) from pg_stat_activity where datname = %s", [database])
            cur.execute(f'drop database if exists "{database}"')
            cur.execute("select 1 from pg_roles where rolname = %s", [reader])
            if cur.fetchone():
                cur.execute(f'drop role "{reader}"')


def test_the_summary_names_postgresql_and_shows_its_marts(pg_build: PostgresBuild) -> None:
    summary = pg_build.summary
    warehouse = pg_build.warehouse
    assert f"Warehouse: PostgreSQL {warehouse.host}:{warehouse.port}/{warehouse.dbname} (schema marts)" in summary
    assert "survey.duckdb" not in summary, "nothing is read from an embedded warehouse"
    with Session(warehouse, read_only=True) as s:
        headline = s.execute(
            "select wave_year, cities, cities_responded from marts.fct_responsibility_shares "
            "where is_it_management order by 1"
        ).fetchall()
        published_at = s.execute("select published_at from marts.publication").fetchone()[0]
    for year, cities, responded in headline:
        assert re.search(rf"^  {year}\s+{cities}/{responded}\s", summary, re.M), f"{year} not in the summary"
    assert f"published {published_at:%Y-%m-%d %H:%M:%S} UTC" in summary
    assert f"log in as {warehouse.reader_role}" in summary


def test_a_reader_reads_the_marts_as_the_readme_says(pg_build: PostgresBuild) -> None:
    with closing(_reader(pg_build)) as con:
        cur = con.cursor()
        cur.execute("select wave_year, share from marts.fct_responsibility_shares where is_it_management order by 1")
        shares = cur.fetchall()
    assert [year for year, _ in shares] == list(WAVES)


def test_postgres_marts_reproduce_the_headline(pg_build: PostgresBuild) -> None:
    with Session(pg_build.warehouse, read_only=True) as s:
        shares = dict(
            s.execute("select wave_year, share from marts.fct_responsibility_shares where is_it_management").fetchall()
        )
        schemas = {r[0] for r in s.execute("select schema_name from information_schema.schemata").fetchall()}
    for year, (low, high) in published_ranges().items():
        assert low < shares[year] <= high
    assert "marts" in schemas and "marts_next" not in schemas and "marts_previous" not in schemas


# columns that name the run's own loads (the two warehouses loaded the files at different times)
RUN_SPECIFIC = {"load_id", "loaded_at", "previous_load_id", "current_load_id"}


def _comparable(value: object) -> object:
    """One value as both engines must agree on it: numbers to 12 significant digits (the documented rounding of
    double precision arithmetic), times as text, arrays as tuples."""
    import datetime as dt
    from decimal import Decimal

    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float, Decimal)):
        return float(f"{float(value):.12g}")
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return tuple(_comparable(v) for v in value)
    return value


@pytest.mark.parametrize("database", ["pg_build", "pg_build_en_us"])
def test_both_adapters_build_the_same_marts(
    database: str, pipeline_run: PipelineRun, request: pytest.FixtureRequest
) -> None:
    """Every mart, every column but the loads' own ids and times, value for value; on PostgreSQL under the byte
    order collation of the test server and under en-US."""
    pg_build = request.getfixturevalue(database)
    compared = 0
    with (
        Session(pg_build.warehouse, read_only=True) as pg,
        duckdb.connect(str(pipeline_run.paths.published), read_only=True) as dd,
    ):
        for mart in quality.mart_tables(pg_build.warehouse, "marts"):
            columns = [
                r[0]
                for r in dd.execute(
                    "select column_name from information_schema.columns where table_schema = 'marts' "
                    "and table_name = ? order by ordinal_position",
                    [mart],
                ).fetchall()
                if r[0] not in RUN_SPECIFIC
            ]
            sql = f"select {', '.join(columns)} from marts.{mart}"
            on_pg = sorted((tuple(_comparable(v) for v in r) for r in pg.execute(sql).fetchall()), key=repr)
            on_duckdb = sorted((tuple(_comparable(v) for v in r) for r in dd.execute(sql).fetchall()), key=repr)
            assert len(on_pg) == len(on_duckdb), mart
            for pg_row, duck_row in zip(on_pg, on_duckdb, strict=True):
                assert pg_row == duck_row, f"{mart}: {dict(zip(columns, pg_row, strict=True))} on PostgreSQL"
            compared += len(on_pg) * len(columns)
    assert compared > 10_000


def test_contract_types_hold_on_postgres(pg_build: PostgresBuild) -> None:
    with Session(pg_build.warehouse, read_only=True) as s:
        types = dict(
            s.execute(
                "select column_name, data_type from information_schema.columns where "
                "table_schema = 'marts' and table_name = 'fct_responsibility_shares'"
            ).fetchall()
        )
    assert types["share"] == "double precision"
    assert types["cities"] == "integer"
    assert types["wave_responsibility_id"] == "character varying"
    assert types["is_it_management"] == "boolean"


def test_raw_load_on_postgres_is_idempotent(pg_build: PostgresBuild) -> None:
    spec = find_wave_spec(2018, pg_build.paths)
    with Session(pg_build.warehouse, read_only=True) as s:
        before = s.execute("select count(*) from raw.survey_cells").fetchone()[0]
    again = load.load_wave(spec, pg_build.warehouse)
    with Session(pg_build.warehouse, read_only=True) as s:
        after = s.execute("select count(*) from raw.survey_cells").fetchone()[0]
        registry = s.execute("select count(*) from raw.load_registry").fetchone()[0]
    assert again.unchanged and before == after and registry == 3


def test_a_session_the_server_ends_mid_load_keeps_nothing_and_says_why(
    pg_build: PostgresBuild, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server ends the loading session after the load is registered, before its rows are written (a restart, an
    administrator's pg_terminate_backend): the load fails with the cause in words, nothing of it is kept, and the
    same file loads on the next try."""
    spec = find_wave_spec(2019, pg_build.paths)
    lines = spec.file.read_text(encoding="utf-8-sig").splitlines()
    corrected = tmp_path / spec.file.name
    corrected.write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8-sig")
    spec = replace(spec, file=corrected)
    with Session(pg_build.warehouse, read_only=True) as s:
        registry_before = s.execute("select load_id, status, is_current from raw.load_registry order by 1").fetchall()
        cells_before = s.execute("select count(*) from raw.survey_cells").fetchone()[0]
    register = load.register_load

    def register_then_the_server_ends_the_session(session, *args, **kwargs):
        register(session, *args, **kwargs)
        pid = session.execute("select pg_backend_pid()").fetchone()[0]
        with closing(_admin()) as admin:
            admin.cursor().execute("select pg_terminate_backend(%s)", [pid])

    monkeypatch.setattr(load, "register_load", register_then_the_server_ends_the_session)
    with pytest.raises(psycopg2.Error) as failed:
        load.load_wave(spec, pg_build.warehouse, paths=pg_build.paths)
    said = faults.cause(failed.value)
    assert said is not None and said.startswith("the PostgreSQL server ended the session"), faults.described(
        failed.value
    )

    with Session(pg_build.warehouse, read_only=True) as s:
        assert s.execute("select load_id, status, is_current from raw.load_registry order by 1").fetchall() == (
            registry_before
        ), "a load the server cut off left a row in the registry"
        assert s.execute("select count(*) from raw.survey_cells").fetchone()[0] == cells_before
    monkeypatch.undo()
    again = load.load_wave(spec, pg_build.warehouse, paths=pg_build.paths)
    assert not again.unchanged and again.row_count == len(lines) - 2
    with Session(pg_build.warehouse) as s, s.transaction():  # leave the module's warehouse as the other tests expect
        tables = s.execute(
            "select table_name from information_schema.columns where table_schema = 'raw' and column_name = 'load_id'"
        ).fetchall()
        for (table,) in tables:
            s.execute(f'delete from raw."{table}" where load_id = ?', [again.load_id])


def _reader(pg_build: PostgresBuild):
    con = psycopg2.connect(
        host=PG[0], port=PG[1], user=pg_build.warehouse.reader_role, dbname=pg_build.warehouse.dbname
    )
    con.autocommit = True
    return con


@pytest.mark.parametrize(
    "statement",
    [
        "insert into marts.dim_responsibility values ('x', 'x', 'x', false, 9)",
        "delete from marts.fct_city_responsibility",
        "select count(*) from raw.survey_cells",
        "select count(*) from staging.stg_survey__respondents",
        "select count(*) from intermediate.int_city_responsibilities_rolled_up",
        "create table public.scratch (x int)",
    ],
)
def test_read_only_role_cannot_write_or_read_beyond_the_marts(pg_build: PostgresBuild, statement: str) -> None:
    with closing(_reader(pg_build)) as con:
        con.cursor().execute("select count(*) from marts.fct_city_responsibility")
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            con.cursor().execute(statement)


def test_schema_swap_is_atomic_for_readers(pg_build: PostgresBuild) -> None:
    warehouse = pg_build.warehouse
    with Session(warehouse) as s:
        s.execute("create schema marts_next")
        for table in quality.mart_tables(warehouse, "marts"):
            s.execute(f"create table marts_next.{table} as select * from marts.{table}")
        s.execute(
            "update marts_next.dim_responsibility set responsibility_label_en = 'IT management (new)' "
            "where responsibility_code = 'it_management'"
        )
    label = "select responsibility_label_en from marts.dim_responsibility where responsibility_code = 'it_management'"
    reader = _reader(pg_build)
    reader.autocommit = False
    cur = reader.cursor()
    cur.execute(label)
    before = cur.fetchone()[0]
    build = begin_build(warehouse, "swap_test", 2019, None, "f" * 64)
    swap = threading.Thread(target=swap_marts, args=(warehouse, build, "swap_test"))
    swap.start()
    time.sleep(1.5)
    assert swap.is_alive(), "the swap waits for the reader's transaction on the old marts"
    cur.execute(label)
    during = cur.fetchone()[0]
    reader.commit()
    swap.join(timeout=30)
    assert not swap.is_alive()
    cur.execute(label)
    after = cur.fetchone()[0]
    reader.close()
    assert (before, during, after) == ("IT management", "IT management", "IT management (new)")


def test_raw_gate_on_postgres_names_rows(pg_build: PostgresBuild, tmp_path) -> None:
    import dataclasses

    spec = find_wave_spec(2019, pg_build.paths)
    lines = spec.file.read_text(encoding="utf-8-sig").splitlines()
    header = lines[0].split(",")
    for line in range(2, 8):  # file rows 3-8: 6 of the rows, above the 5 % that may be quarantined
        row = lines[line].split(",")
        row[header.index("Organisaatio")] = "Tamperee"
        lines[line] = ",".join(row)
    broken = tmp_path / "broken_2019.csv"
    broken.write_text("\n".join(lines) + "\n", encoding="utf-8-sig")
    loaded = load.load_wave(dataclasses.replace(spec, file=broken), pg_build.warehouse, paths=pg_build.paths)
    context = quality.file_context(pg_build.paths)
    with pytest.raises(quality.QualityGateFailed) as failed:
        quality.run_gate(
            quality.raw_wave_checkpoint(context, spec, loaded.load_id, pg_build.paths, pg_build.warehouse),
            pg_build.paths,
        )
    assert "raw_load: expect_column_values_to_be_between on column 'quarantined_share'" in str(failed.value)
    assert "row 3, column 'Organisaatio': unknown city 'Tamperee'" in quality.quarantine_summary(
        pg_build.warehouse, loaded.load_id
    )


def test_the_warehouse_holds_the_matching_rules_keys_for_the_corpus(pg_build: PostgresBuild, tmp_path) -> None:
    """The shared corpus of awkward strings, loaded into PostgreSQL: the keys raw holds are exactly the rule's,
    the same that the DuckDB warehouse holds (tests/survey_warehouse/test_load.py)."""
    import csv
    import dataclasses

    from conftest import matching_corpus as corpus

    from survey_warehouse.intake.matching import match_key

    spec = find_wave_spec(2019, pg_build.paths)
    with open(spec.file, encoding="utf-8-sig", newline="") as f:
        header, *rows = list(csv.reader(f))
    email = header.index("Email")
    values = [value for _case, value, _key in corpus()]
    path = tmp_path / "corpus.csv"
    with open(path, "w", encoding="utf-8-sig", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for i, value in enumerate(values):
            row = list(rows[i % len(rows)])
            row[email] = value
            writer.writerow(row)
    loaded = load.load_wave(dataclasses.replace(spec, file=path), pg_build.warehouse, paths=pg_build.paths)
    with Session(pg_build.warehouse, read_only=True) as s:
        stored = dict(
            s.execute(
                "select cell_value, match_key from raw.cell_resolutions where load_id = ? and "
                "field_id = 'respondent_email'",
                [loaded.load_id],
            ).fetchall()
        )
        registry.fail_load(pg_build.warehouse, loaded.load_id, "a test load")
    for value in values:
        if value.strip("\r\n") == "":
            continue
        assert stored.get(value, "missing") == match_key(value), repr(value)
