"""Great Expectations on the PostgreSQL warehouse keeps the warehouse's password out of every file it writes: its
datasource names the connection string by a ${VAR} reference that GX resolves from the process's environment.

A throwaway database on the local PostgreSQL (trust authentication: the password is never checked, only carried), a
real load of the 2019 wave and its raw gate; then every file under the test's var folder is read for the password.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg2
import pytest
from conftest import make_paths, require_services

from survey_warehouse import quality
from survey_warehouse.intake.waves import find_wave_spec
from survey_warehouse.raw import load
from survey_warehouse.settings import Paths
from survey_warehouse.warehouse import Warehouse

PG = ("127.0.0.1", 5432)
# what a password looks like, with characters a URL escapes, so that an escaped copy is found too
PASSWORD = f"gx-canary-{uuid.uuid4().hex}-p@ss:w/rd"


@dataclass
class Loaded:
    paths: Paths
    warehouse: Warehouse
    load_id: str


def _admin():
    con = psycopg2.connect(host=PG[0], port=PG[1], user="postgres", dbname="postgres")
    con.autocommit = True
    return con


@pytest.fixture
def loaded() -> Iterator[Loaded]:
    require_services(PG)
    database = f"survey_gx_{uuid.uuid4().hex[:10]}"
    with closing(_admin()) as admin:
        admin.cursor().execute(f'create database "{database}"')
    try:
        paths = make_paths(f"gx_credentials_{database}")
        warehouse = Warehouse(
            backend="postgres", host=PG[0], port=PG[1], user="postgres", password=PASSWORD, dbname=database
        )
        spec = find_wave_spec(2019, paths)
        assert spec is not None
        yield Loaded(paths, warehouse, load.load_wave(spec, warehouse, paths=paths).load_id)
    finally:
        with closing(_admin()) as admin:
            cur = admin.cursor()
            cur.execute("select pg_terminate_backend(pid) from pg_stat_activity where datname = %s", [database])
            cur.execute(f'drop database if exists "{database}"')


def _files_with_the_password(var: Path) -> list[str]:
    forms = {PASSWORD.encode(), quote(PASSWORD, safe="").encode(), quote(PASSWORD).encode()}
    return sorted(
        str(path.relative_to(var))
        for path in var.rglob("*")
        if path.is_file() and any(form in path.read_bytes() for form in forms)
    )


def _raw_gate(loaded: Loaded) -> quality.GateReport:
    spec = find_wave_spec(2019, loaded.paths)
    assert spec is not None
    context = quality.file_context(loaded.paths)
    checkpoint = quality.raw_wave_checkpoint(context, spec, loaded.load_id, loaded.paths, loaded.warehouse)
    return quality.run_gate(checkpoint, loaded.paths)


def test_a_postgres_gate_writes_the_warehouse_password_nowhere(loaded: Loaded) -> None:
    report = _raw_gate(loaded)

    assert report.success
    assert _files_with_the_password(loaded.paths.var) == []
    config = (loaded.paths.var / "gx" / "gx" / "great_expectations.yml").read_text(encoding="utf-8")
    assert "connection_string: ${SURVEY_GX_WAREHOUSE_URL_" in config


def test_a_datasource_saved_with_the_password_is_rewritten_without_it(loaded: Loaded) -> None:
    """A GX folder from before: its datasource held the whole connection string."""
    context = quality.file_context(loaded.paths)
    context.data_sources.add_or_update_postgres(
        name="survey_warehouse_postgres", connection_string=loaded.warehouse.sqlalchemy_url
    )
    assert _files_with_the_password(loaded.paths.var) == ["gx/gx/great_expectations.yml"]

    assert _raw_gate(loaded).success
    assert _files_with_the_password(loaded.paths.var) == []
