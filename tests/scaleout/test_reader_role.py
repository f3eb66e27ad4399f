"""The stack's PostgreSQL provisioning (docker/provision_database.py, run by airflow-init on every start) on a
throwaway cluster of its own: passwords follow .env on every start and never reach the server as text; the reader
role, after two publications, reads the marts and nothing else, cannot write by privileges alone, and connects to
the warehouse only.

The cluster is made with initdb as the official postgres image makes it (local socket connections trusted, TCP with
SCRAM passwords) and logs every statement, so the log can be searched for passwords. Its REVOKEs on the cluster's
databases must not touch the shared PostgreSQL the other tests use.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pytest
from conftest import ROOT

from survey_warehouse.publishing import publish
from survey_warehouse.quality.batches import project_marts
from survey_warehouse.raw import builds
from survey_warehouse.raw.schema import ensure_raw_schema
from survey_warehouse.secrets import PASSWORD, generate
from survey_warehouse.warehouse import Session, Warehouse

PROVISION = ROOT / "docker" / "provision_database.py"
MARTS = project_marts(ROOT / "dbt_project")
PASSWORD_VARIABLES = (
    "POSTGRES_PASSWORD",
    "AIRFLOW_DB_PASSWORD",
    "WAREHOUSE_DB_PASSWORD",
    "SURVEY_READER_PASSWORD",
    "SUPERSET_DB_PASSWORD",
)
ROLE_OF = {
    "POSTGRES_PASSWORD": "postgres",
    "AIRFLOW_DB_PASSWORD": "airflow",
    "WAREHOUSE_DB_PASSWORD": "survey_warehouse",
    "SURVEY_READER_PASSWORD": "survey_reader",
    "SUPERSET_DB_PASSWORD": "superset",
}
DATABASE_OF = {"postgres": "postgres", "airflow": "airflow", "survey_warehouse": "survey_warehouse"}
DATABASE_OF |= {"survey_reader": "survey_warehouse", "superset": "superset"}


@dataclass
class Cluster:
    port: int
    socket_dir: Path
    log: Path

    def env(self, passwords: dict[str, str]) -> dict[str, str]:
        """airflow-init's environment: libpq pointed at the socket as the superuser, and .env's values."""
        return {
            "PATH": os.environ["PATH"],
            "PYTHONPATH": str(ROOT / "src"),  # this checkout's package, as the image has it installed
            "PGHOST": str(self.socket_dir),
            "PGPORT": str(self.port),
            "PGUSER": "postgres",
            "PGDATABASE": "postgres",
            "WAREHOUSE_DB_USER": "survey_warehouse",
            "WAREHOUSE_DB_NAME": "survey_warehouse",
            **passwords,
        }

    def connect(self, user: str, password: str, dbname: str | None = None):
        """Over TCP, as a client of the stack would, with a password."""
        return psycopg2.connect(
            host="127.0.0.1",
            port=self.port,
            user=user,
            password=password,
            dbname=dbname or DATABASE_OF[user],
            connect_timeout=5,
        )


def _as_cluster_owner(command: list[str]) -> list[str]:
    """initdb and pg_ctl refuse to run as root: then they run as the user postgres."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _free_port() -> int:
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    binaries = [shutil.which(name) for name in ("initdb", "pg_ctl")]
    if None in binaries or (os.geteuid() == 0 and not shutil.which("runuser")):
        reason = "needs PostgreSQL's initdb and pg_ctl on the PATH (and runuser when run as root)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI must provide them")
        pytest.skip(reason)
    initdb, pg_ctl = binaries
    assert initdb is not None and pg_ctl is not None
    # a short path: a Unix socket's path has a limit of about 100 bytes
    root = Path(tempfile.mkdtemp(prefix="survey-pg-"))
    data, socket_dir, log = root / "data", root / "socket", root / "server.log"
    socket_dir.mkdir()
    log.touch()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(socket_dir, "postgres")
        shutil.chown(log, "postgres")
    port = _free_port()
    initdb_args = ["-D", str(data), "-U", "postgres", "-E", "UTF8", "--auth-local=trust", "--auth-host=scram-sha-256"]
    subprocess.run(_as_cluster_owner([initdb, *initdb_args, "--no-sync"]), check=True, capture_output=True)
    options = f"-p {port} -k {socket_dir} -c listen_addresses=127.0.0.1 -c log_statement=all -c fsync=off"
    subprocess.run(
        _as_cluster_owner([pg_ctl, "-D", str(data), "-o", options, "-l", str(log), "-w", "start"]),
        check=True,
        capture_output=True,
    )
    try:
        yield Cluster(port, socket_dir, log)
    finally:
        subprocess.run(
            _as_cluster_owner([pg_ctl, "-D", str(data), "-m", "immediate", "stop"]), capture_output=True, check=False
        )
        shutil.rmtree(root, ignore_errors=True)


def _passwords() -> dict[str, str]:
    return {variable: generate(PASSWORD) for variable in PASSWORD_VARIABLES}


def _provision(cluster: Cluster, passwords: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, str(PROVISION)], env=cluster.env(passwords), capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def provisioned(cluster: Cluster) -> dict[str, str]:
    passwords = _passwords()
    _provision(cluster, passwords)
    return passwords


def test_every_role_logs_in_with_its_password_from_env(cluster: Cluster, provisioned: dict[str, str]) -> None:
    for variable, password in provisioned.items():
        with closing(cluster.connect(ROLE_OF[variable], password)) as con, con.cursor() as cur:
            cur.execute("select current_user")
            assert cur.fetchone() == (ROLE_OF[variable],)


def test_a_password_changed_in_env_is_the_roles_after_the_next_start(
    cluster: Cluster, provisioned: dict[str, str]
) -> None:
    """Also the superuser's (POSTGRES_PASSWORD): the init reaches the server by its socket, not by that password."""
    changed = _passwords()
    _provision(cluster, changed)
    try:
        for variable in PASSWORD_VARIABLES:
            role = ROLE_OF[variable]
            with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
                cluster.connect(role, provisioned[variable]).close()
            cluster.connect(role, changed[variable]).close()
    finally:
        _provision(cluster, provisioned)  # the module's other tests log in with these


def test_no_password_reaches_the_server_as_text(cluster: Cluster, provisioned: dict[str, str]) -> None:
    _provision(cluster, provisioned)  # (again: the log now certainly holds a provisioning)
    log = cluster.log.read_text(encoding="utf-8", errors="replace")
    assert "alter role" in log.lower(), "the server logs every statement: the provisioning must be in it"
    assert [variable for variable, password in provisioned.items() if password in log] == []


def _warehouse(cluster: Cluster, user: str, password: str) -> Warehouse:
    return Warehouse(
        backend="postgres",
        host="127.0.0.1",
        port=cluster.port,
        user=user,
        password=password,
        dbname="survey_warehouse",
        marts_schema="marts",
        marts_build_schema="marts_next",
        reader_role="survey_reader",
    )


def _publish(builder: Warehouse, swapper: Warehouse, build: str, fingerprint: str) -> None:
    """What dbt leaves in the build schema, made by the warehouse's role (every mart, one column saying which build
    made it), then the swap, by `swapper`."""
    with Session(builder) as session:
        ensure_raw_schema(session)
        session.execute("create schema if not exists marts_next")
        for mart in MARTS:
            session.execute(f"create table marts_next.{mart} as select '{build}'::text as made_by")
    started = builds.begin_build(builder, build, 2019, None, fingerprint)
    publish.swap_marts(swapper, started, build)


@pytest.fixture(scope="module")
def published(cluster: Cluster, provisioned: dict[str, str]) -> Warehouse:
    """Two publications, swapped by the superuser: survey_warehouse.publishing.publish.ensure_reader_role alters the
    reader role's settings, which the warehouse's own role may not (test_the_warehouse_role_publishes, last)."""
    warehouse = _warehouse(cluster, "survey_warehouse", provisioned["WAREHOUSE_DB_PASSWORD"])
    superuser = _warehouse(cluster, "postgres", provisioned["POSTGRES_PASSWORD"])
    _publish(warehouse, superuser, "first", "1" * 64)
    _publish(warehouse, superuser, "second", "2" * 64)
    return warehouse


def _reader(cluster: Cluster, provisioned: dict[str, str], dbname: str = "survey_warehouse"):
    con = cluster.connect("survey_reader", provisioned["SURVEY_READER_PASSWORD"], dbname)
    con.autocommit = True
    return con


def test_after_two_publications_the_reader_reads_every_mart(
    cluster: Cluster, provisioned: dict[str, str], published: Warehouse
) -> None:
    with closing(_reader(cluster, provisioned)) as con, con.cursor() as cur:
        made_by = {}
        for mart in MARTS:
            cur.execute(f"select made_by from marts.{mart}")
            made_by[mart] = cur.fetchone()[0]
    assert made_by == dict.fromkeys(MARTS, "second")


WRITES = [
    "insert into marts.dim_city values ('x')",
    "update marts.dim_city set made_by = 'x'",
    "delete from marts.dim_city",
    "truncate marts.dim_city",
    "select * from marts.dim_city for update",
    "alter table marts.dim_city add column y int",
    "drop table marts.dim_city",
    "create table marts.scratch (x int)",
    "create table public.scratch (x int)",
    "create view public.scratch as select 1 as x",
    "create temporary table scratch (x int)",
    "create schema scratch",
    "select lo_create(0)",
    "select lo_from_bytea(0, 'x')",
    "select count(*) from raw.load_registry",
]


@pytest.mark.parametrize("statement", WRITES)
def test_the_reader_cannot_write_even_with_read_write_transactions(
    cluster: Cluster, provisioned: dict[str, str], published: Warehouse, statement: str
) -> None:
    """default_transaction_read_only is only the reader's default: switched off, the privileges still refuse."""
    with closing(_reader(cluster, provisioned)) as con, con.cursor() as cur:
        cur.execute("set default_transaction_read_only = off")
        cur.execute("show transaction_read_only")
        assert cur.fetchone() == ("off",)
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            cur.execute(statement)


def test_the_reader_holds_no_privilege_beyond_reading_the_marts(
    cluster: Cluster, provisioned: dict[str, str], published: Warehouse
) -> None:
    with closing(_reader(cluster, provisioned)) as con, con.cursor() as cur:
        cur.execute(
            "select n.nspname, c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace "
            "where c.relkind in ('r', 'v', 'm', 'p', 'S') and n.nspname not in ('pg_catalog', 'information_schema') "
            "and (has_table_privilege(c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER') "
            "or (n.nspname <> 'marts' and has_table_privilege(c.oid, 'SELECT'))) order by 1, 2"
        )
        assert cur.fetchall() == []
        cur.execute(
            "select nspname from pg_namespace where has_schema_privilege(oid, 'CREATE') "
            "or (has_schema_privilege(oid, 'USAGE') and nspname not in ('marts', 'public', 'pg_catalog', "
            "'information_schema') and nspname not like 'pg_toast%' and nspname not like 'pg_temp%') order by 1"
        )
        assert cur.fetchall() == []
        cur.execute("select has_database_privilege(current_database(), 'CREATE, TEMPORARY')")
        assert cur.fetchone() == (False,)


@pytest.mark.parametrize("database", ["postgres", "template1", "airflow", "superset"])
def test_the_reader_connects_to_the_warehouse_only(
    cluster: Cluster, provisioned: dict[str, str], published: Warehouse, database: str
) -> None:
    with pytest.raises(psycopg2.OperationalError, match="permission denied for database"):
        _reader(cluster, provisioned, database).close()


OTHERS = [
    (variable, database)
    for variable in PASSWORD_VARIABLES[1:]
    for database in ("postgres", "template1", "airflow", "survey_warehouse", "superset")
    if database != DATABASE_OF[ROLE_OF[variable]]
]


@pytest.mark.parametrize(("variable", "database"), OTHERS)
def test_no_role_connects_to_another_roles_database(
    cluster: Cluster, provisioned: dict[str, str], variable: str, database: str
) -> None:
    """CONNECT is revoked from PUBLIC on every database: each role reaches its own (the reader the warehouse)."""
    with pytest.raises(psycopg2.OperationalError, match="permission denied for database"):
        cluster.connect(ROLE_OF[variable], provisioned[variable], database).close()


def test_the_warehouse_role_publishes(cluster: Cluster, provisioned: dict[str, str], published: Warehouse) -> None:
    """As the stack's workers do: the warehouse's own role, with its password from .env."""
    _publish(published, published, "third", "3" * 64)
    with closing(_reader(cluster, provisioned)) as con, con.cursor() as cur:
        cur.execute("select made_by from marts.dim_city")
        assert cur.fetchone() == ("third",)
