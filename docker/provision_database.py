"""The stack's PostgreSQL roles, databases and privileges, made to match .env: run by airflow-init on every start.

Connects as the superuser over PostgreSQL's Unix socket, which the postgres service shares with airflow-init alone
(the volume postgres-socket); the official image trusts local socket connections, so this needs no password and
still works after POSTGRES_PASSWORD has been changed in .env. Every step is idempotent:

- every role's password is set from .env (POSTGRES_PASSWORD for the superuser itself, AIRFLOW_DB_PASSWORD,
  WAREHOUSE_DB_PASSWORD, SURVEY_READER_PASSWORD, SUPERSET_DB_PASSWORD): changing one in .env and starting again
  changes it. The passwords are read from the environment, never from a command line, and go to the server only as
  SCRAM verifiers computed here (libpq's PQencryptPasswordConn), so no statement or server log holds one.
- the databases airflow, superset and the warehouse (WAREHOUSE_DB_NAME), each owned by its role.
- CONNECT (and TEMPORARY) on every database of the cluster is revoked from PUBLIC: each role reaches the database it
  owns; the reader (SURVEY_READER_ROLE, survey_reader) gets CONNECT on the warehouse and nothing else, so it cannot
  connect to postgres, template1, airflow or superset.

What the reader may do in the warehouse, by privileges alone (no setting it could change):
- read the published marts: USAGE on the schema marts and SELECT on its tables. The publication grants both on each
  new marts schema before swapping it in (survey_warehouse.publishing.publish.swap_marts), so they hold after every
  swap; the schema made here only serves readers until the first publication.
- nothing else: no CREATE on any schema (public's is revoked from PUBLIC), no TEMPORARY, no grant on raw, staging or
  intermediate, no large objects (creating one is revoked from PUBLIC in the warehouse); no write on a mart.
The role also defaults to read-only transactions (default_transaction_read_only), which it can switch off for its
own session; that is a convenience, not part of the guarantee. Its sessions left idle inside a transaction end after
SURVEY_READER_IDLE_TIMEOUT (survey_warehouse.publishing.publish.reader_idle_timeout), set here because only a
superuser (or a CREATEROLE role) may change another role's settings, and the warehouse's role is neither.

    python docker/provision_database.py      # libpq's PG* variables say where to connect (PGHOST: the socket)
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass

import psycopg2
from psycopg2 import sql
from psycopg2.extensions import encrypt_password

from survey_warehouse.publishing.publish import reader_idle_timeout


@dataclass(frozen=True)
class Role:
    name: str
    password_variable: str
    database: str | None = None  # the database it owns


def roles(env: Mapping[str, str]) -> list[Role]:
    return [
        Role("airflow", "AIRFLOW_DB_PASSWORD", "airflow"),
        Role(env["WAREHOUSE_DB_USER"], "WAREHOUSE_DB_PASSWORD", env["WAREHOUSE_DB_NAME"]),
        Role(env.get("SURVEY_READER_ROLE") or "survey_reader", "SURVEY_READER_PASSWORD"),
        Role("superset", "SUPERSET_DB_PASSWORD", "superset"),
    ]


def _password(env: Mapping[str, str], variable: str) -> str:
    value = env.get(variable) or ""
    if not value:
        sys.exit(f"{variable} is empty: run `make secrets` to write a .env with fresh values")
    return value


def _set_password(cur, role: str, password: str, attributes: str = "") -> None:
    verifier = encrypt_password(password, role, cur.connection)
    cur.execute(sql.SQL("alter role {} with " + attributes + " password %s").format(sql.Identifier(role)), [verifier])


def provision(con, env: Mapping[str, str]) -> None:
    """Roles, passwords, databases and privileges as .env says (`con`: a superuser, autocommit)."""
    wanted = roles(env)
    reader = wanted[2].name
    with con.cursor() as cur:
        cur.execute("select current_user, current_setting('is_superuser')")
        superuser, is_superuser = cur.fetchone()
        if is_superuser != "on":
            sys.exit(f"provisioning needs a superuser; connected as {superuser}")
        names = [role.name for role in wanted]
        if superuser in names or len(set(names)) != len(names):
            sys.exit(f"the roles {', '.join(names)} must be distinct and none of them the superuser {superuser}")
        _set_password(cur, superuser, _password(env, "POSTGRES_PASSWORD"))
        for role in wanted:
            cur.execute("select 1 from pg_roles where rolname = %s", [role.name])
            if cur.fetchone() is None:
                cur.execute(sql.SQL("create role {} login").format(sql.Identifier(role.name)))
            _set_password(
                cur,
                role.name,
                _password(env, role.password_variable),
                "login nosuperuser nocreatedb nocreaterole noreplication nobypassrls",
            )
        cur.execute(sql.SQL("alter role {} set default_transaction_read_only = on").format(sql.Identifier(reader)))
        cur.execute(
            sql.SQL("alter role {} set idle_in_transaction_session_timeout = %s").format(sql.Identifier(reader)),
            [reader_idle_timeout()],
        )
        for role in wanted:
            if role.database is None:
                continue
            cur.execute("select 1 from pg_database where datname = %s", [role.database])
            if cur.fetchone() is None:
                cur.execute(
                    sql.SQL("create database {} owner {}").format(
                        sql.Identifier(role.database), sql.Identifier(role.name)
                    )
                )
            cur.execute(
                sql.SQL("alter database {} owner to {}").format(
                    sql.Identifier(role.database), sql.Identifier(role.name)
                )
            )
        # every database of the cluster: no CONNECT or TEMPORARY for PUBLIC (template0 takes no connections at all)
        cur.execute("select datname from pg_database where datallowconn order by 1")
        for (database,) in cur.fetchall():
            cur.execute(sql.SQL("revoke all on database {} from public").format(sql.Identifier(database)))
            cur.execute(
                sql.SQL("revoke all on database {} from {}").format(sql.Identifier(database), sql.Identifier(reader))
            )
        warehouse_db, warehouse_user = wanted[1].database, wanted[1].name
        cur.execute(
            sql.SQL("grant connect on database {} to {}").format(sql.Identifier(warehouse_db), sql.Identifier(reader))
        )
    dsn = con.get_dsn_parameters()
    warehouse = psycopg2.connect(host=dsn.get("host"), port=dsn.get("port"), user=dsn.get("user"), dbname=warehouse_db)
    warehouse.autocommit = True
    try:
        with warehouse.cursor() as cur:
            cur.execute("revoke create on schema public from public")
            cur.execute(
                "revoke execute on function lo_creat(integer), lo_create(oid), lo_from_bytea(oid, bytea), "
                "lo_import(text), lo_import(text, oid) from public"
            )
            cur.execute(
                sql.SQL("create schema if not exists marts authorization {}").format(sql.Identifier(warehouse_user))
            )
            cur.execute(sql.SQL("grant usage on schema marts to {}").format(sql.Identifier(reader)))
            cur.execute(sql.SQL("grant select on all tables in schema marts to {}").format(sql.Identifier(reader)))
    finally:
        warehouse.close()


def main() -> None:
    con = psycopg2.connect("")  # PGHOST, PGPORT, PGUSER, PGDATABASE
    con.autocommit = True
    try:
        provision(con, os.environ)
    finally:
        con.close()
    print("PostgreSQL roles, passwords, databases and privileges match .env", flush=True)  # noqa: T201


if __name__ == "__main__":
    main()
