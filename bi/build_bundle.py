"""Zip the dashboard kept as code (bi/dashboards/) into a Superset import bundle, for the marts on DuckDB or on
PostgreSQL.

    bi/.venv/bin/python bi/build_bundle.py --marts var/published/survey_marts.duckdb --out var/superset/bundle.zip
    bi/.venv/bin/python bi/build_bundle.py --marts postgresql://survey_reader@db.example:5432/survey_warehouse \
        --out var/superset/bundle.zip

What it changes on the way (the YAML files in the repository stay as they are):
- the database (databases/survey_marts.yaml, one definition for both engines) gets the engine's sqlalchemy_uri,
  database_name and engine_params (its `engines` entry): duckdb:///<absolute path of the published file>, or
  postgresql+psycopg2://<user>@<host>:<port>/<database> for the PostgreSQL warehouse. A password in the marts URI is
  never written into the bundle: the URI carries Superset's mask (XXXXXXXXXX) and marts_connection() hands the
  password to the import (ImportAssetsCommand's `passwords`), which stores it encrypted;
- charts without a saved query_context get one built from their params (the query the chart runs), so that
  GET /api/v1/chart/<id>/data/ works for them (reports, the dashboard test) without opening them in Explore first;
- metadata.yaml's type is `Dashboard` (what `superset import-dashboards` and the UI's import accept) or, with
  --type assets, `assets`: the bundle ImportAssetsCommand takes, which overwrites the database, datasets and charts
  too. `superset import-dashboards` overwrites only the dashboard and keeps an existing database, datasets and
  charts as they were: a changed dataset SQL or a moved published file would not reach Superset.

The datasets' SQL is the same on both engines (tests/bi/test_dataset_sql.py runs it on both).
Only PyYAML is needed (it is in Superset's environment and in the pipeline's).
"""

from __future__ import annotations

import argparse
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import yaml

BI_DIR = Path(__file__).resolve().parent
SOURCE = BI_DIR / "dashboards"
ROOT_FOLDER = "survey_dashboard"
# Superset's mask for a password (superset.constants.PASSWORD_MASK): an imported URI with it keeps the password the
# import is given beside the bundle, instead of clearing it.
PASSWORD_MASK = "X" * 10
POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg2")


@dataclass(frozen=True)
class MartsConnection:
    """Where the dashboard reads the marts: the engine, the URI as the bundle holds it, and the password (if any)
    that goes to the import beside the bundle."""

    engine: str  # "duckdb" or "postgresql", a key of `engines` in databases/*.yaml
    sqlalchemy_uri: str  # never holds a password
    password: str | None = None

    def describe(self) -> str:
        return self.sqlalchemy_uri.replace(f":{PASSWORD_MASK}@", "@")


def load_source(source: Path = SOURCE) -> dict[str, dict[str, Any]]:
    """Every YAML file of the bundle folder, by its path relative to the folder."""
    files = {
        p.relative_to(source).as_posix(): yaml.safe_load(p.read_text(encoding="utf-8"))
        for p in sorted(source.rglob("*.yaml"))
    }
    if "metadata.yaml" not in files:
        raise FileNotFoundError(f"{source}/metadata.yaml is missing")
    return files


def duckdb_uri(published: Path) -> str:
    return f"duckdb:///{published.resolve()}"


def marts_connection(marts: str | Path) -> MartsConnection:
    """The marts from a path to the published DuckDB file (or duckdb:///<path>) or a PostgreSQL URI
    (postgresql://<user>[:<password>]@<host>[:<port>]/<database>[?<options>], the password percent-encoded)."""
    text = str(marts)
    if "://" not in text:
        return MartsConnection("duckdb", duckdb_uri(Path(text)))
    parts = urlsplit(text)
    if parts.scheme == "duckdb":
        return MartsConnection("duckdb", duckdb_uri(Path(text.removeprefix("duckdb:///"))))
    if parts.scheme not in POSTGRES_SCHEMES:
        raise ValueError(f"the marts are a DuckDB file or a PostgreSQL URI (postgresql://...), not {parts.scheme}://")
    database = parts.path.lstrip("/")
    if not (parts.username and parts.hostname and database):
        raise ValueError(
            "a PostgreSQL marts URI names the user, host and database: "
            "postgresql://survey_reader[:<password>]@<host>[:<port>]/<database>"
        )
    password = unquote(parts.password) if parts.password is not None else None
    user = quote(unquote(parts.username), safe="")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    uri = (
        f"postgresql+psycopg2://{user}{':' + PASSWORD_MASK if password else ''}@{host}"
        f"{f':{parts.port}' if parts.port else ''}/{database}{f'?{parts.query}' if parts.query else ''}"
    )
    return MartsConnection("postgresql", uri, password or None)


def _filters(params: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for f in params.get("adhoc_filters") or []:
        if f.get("expressionType") != "SIMPLE":
            raise ValueError(f"only SIMPLE adhoc filters are supported here, got {f}")
        out.append({"col": f["subject"], "op": f["operator"], "val": f["comparator"]})
    return out


def query_context(params: dict[str, Any]) -> dict[str, Any]:
    """The query context the chart's params describe, for the chart types of this dashboard."""
    viz = params["viz_type"]
    query: dict[str, Any] = {
        "filters": _filters(params),
        "extras": {"having": "", "where": ""},
        "applied_time_extras": {},
        "row_limit": params.get("row_limit") or 1000,
        "annotation_layers": [],
        "url_params": {},
        "custom_params": {},
        "custom_form_data": {},
        "series_limit": 0,
        "order_desc": True,
    }
    sort_metric = params.get("timeseries_limit_metric")
    if viz == "table" and params.get("query_mode") == "raw":
        # metrics None (not []): Superset groups by the columns whenever metrics is a list, even an empty one
        query.update(
            columns=list(params["all_columns"]),
            metrics=None,
            orderby=[json.loads(o) for o in params.get("order_by_cols") or []],
        )
    elif viz == "table" and params.get("query_mode") == "aggregate":
        # as the table's buildQuery: ordered by the "sort by" metric (not shown), else by the first metric, descending
        metrics = list(params["metrics"])
        orderby = [[sort_metric, not params.get("order_desc", True)]] if sort_metric else [[metrics[0], False]]
        query.update(columns=list(params.get("groupby") or []), metrics=metrics, orderby=orderby)
    elif viz == "echarts_timeseries_bar":
        x_axis = params["x_axis"]
        groupby = list(params.get("groupby") or [])
        metrics = list(params["metrics"])
        orderby = [[metrics[0], False]]
        if not groupby and sort_metric and params.get("x_axis_sort") == sort_metric:
            # the bars are sorted by a metric that is queried but not drawn (the chart's x_axis_sort): here it is
            # returned as a column, and the rows come in that order
            metrics.append(sort_metric)
            orderby = [[sort_metric, bool(params.get("x_axis_sort_asc", True))]]
        query.update(
            columns=[
                {"columnType": "BASE_AXIS", "sqlExpression": x_axis, "label": x_axis, "expressionType": "SQL"},
                *groupby,
            ],
            metrics=metrics,
            orderby=orderby,
            series_columns=groupby,
        )
    else:
        raise ValueError(f"no query context builder for viz_type {viz!r} (query_mode {params.get('query_mode')!r})")
    return {
        "datasource": {"id": 0, "type": "table"},
        "force": False,
        "queries": [query],
        "form_data": params,
        "result_format": "json",
        "result_type": "full",
    }


def database(doc: dict[str, Any], connection: MartsConnection) -> dict[str, Any]:
    """A database of the bundle for the connection's engine: its URI, and its `engines` entry's name and
    engine_params."""
    engines = doc.pop("engines", None) or {}
    if connection.engine not in engines:
        raise ValueError(f"{doc.get('database_name')!r} has no `engines: {connection.engine}:` entry")
    chosen = engines[connection.engine]
    doc["database_name"] = chosen["database_name"]
    doc["sqlalchemy_uri"] = connection.sqlalchemy_uri
    doc["extra"] = {**(doc.get("extra") or {}), "engine_params": chosen.get("engine_params") or {}}
    return doc


def render(
    files: dict[str, dict[str, Any]], marts: str | Path | MartsConnection, bundle_type: str = "Dashboard"
) -> dict[str, str]:
    """The bundle's files as YAML text, with the database set for the marts' engine, query contexts and metadata
    type set."""
    connection = marts if isinstance(marts, MartsConnection) else marts_connection(marts)
    out: dict[str, str] = {}
    for name, source in files.items():
        doc = json.loads(json.dumps(source))  # a deep copy
        if name == "metadata.yaml":
            doc["type"] = bundle_type
        elif name.startswith("databases/"):
            doc = database(doc, connection)
        elif name.startswith("charts/") and not doc.get("query_context"):
            doc["query_context"] = json.dumps(query_context(doc["params"]))
        out[name] = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    return out


def build(
    marts: str | Path | MartsConnection, out: Path, bundle_type: str = "Dashboard", source: Path = SOURCE
) -> Path:
    """The bundle for the marts (see marts_connection) zipped to `out`; it holds no password."""
    rendered = render(load_source(source), marts, bundle_type)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name, text in rendered.items():
            bundle.writestr(f"{ROOT_FOLDER}/{name}", text)
    tmp.replace(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--marts",
        "--published",
        required=True,
        help="the published DuckDB marts file, or the PostgreSQL marts as postgresql://<user>@<host>:<port>/<database>",
    )
    parser.add_argument("--out", type=Path, required=True, help="the zip to write")
    parser.add_argument("--type", dest="bundle_type", choices=["Dashboard", "assets"], default="Dashboard")
    args = parser.parse_args()
    print(build(args.marts, args.out, args.bundle_type))


if __name__ == "__main__":
    main()
