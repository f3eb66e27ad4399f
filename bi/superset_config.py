"""Superset's configuration for the survey warehouse (loaded through SUPERSET_CONFIG_PATH by bi/run_superset.py).

Settings from the environment:

| Variable              | Default                                   | Meaning                                              |
| --------------------- | ----------------------------------------- | ---------------------------------------------------- |
| SURVEY_VAR_DIR        | <repo>/var                                | Superset's state goes to <SURVEY_VAR_DIR>/superset/ |
| SUPERSET_SECRET_KEY   | DEVELOPMENT_SECRET_KEY below              | signs sessions, encrypts database credentials        |
| SURVEY_ENV            | development                               | `production` (any case) runs the secrets check       |
| SUPERSET_BEHIND_PROXY | false                                     | `true` behind a TLS proxy: its headers trusted, secure cookies |

In production every Superset process refuses to start, naming the variable, when SUPERSET_SECRET_KEY or
SUPERSET_ADMIN_PASSWORD is missing, a placeholder (`change-me...`), a development default or too short, and when the
password in SUPERSET__SQLALCHEMY_DATABASE_URI or SURVEY_MARTS_URI is one: the project's one secrets check
(src/survey_warehouse/secrets.py, loaded by its path; the Superset image has that file at the same place).

Superset's metadata (users, the imported dashboard) lives in SQLite at <SURVEY_VAR_DIR>/superset/superset.db, or
where SUPERSET__SQLALCHEMY_DATABASE_URI says (Superset applies that variable after this file; docker-compose puts the
metadata in PostgreSQL with it).
The marts are read either from the published DuckDB file, read-only, with a new connection for every query (the
pipeline publishes by renaming a new file over the old one, and a fresh connection always opens the newest file; a
pooled connection would keep reading the replaced one), or from the PostgreSQL warehouse as the role survey_reader,
in read-only transactions (bi/run_superset.py, SURVEY_MARTS_URI).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
VAR_DIR = Path(os.environ.get("SURVEY_VAR_DIR") or REPO_ROOT / "var")
SUPERSET_HOME = VAR_DIR / "superset"
SUPERSET_HOME.mkdir(parents=True, exist_ok=True)


def survey_secrets() -> ModuleType:
    """survey_warehouse.secrets, loaded by its path: Superset's environment has no survey_warehouse package."""
    name = "survey_warehouse_secrets"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "src" / "survey_warehouse" / "secrets.py")
        if spec is None or spec.loader is None:
            raise RuntimeError(f"cannot load the secrets check from {REPO_ROOT / 'src' / 'survey_warehouse'}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # before running it: its dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules[name]


# --- secrets ---------------------------------------------------------------------------------------------------
# Refuses (SecretsError, a RuntimeError) to configure a production Superset with a missing, placeholder, development
# or short secret. The development key is for a developer's machine only (Superset itself refuses its own built-in
# default key).
_secrets = survey_secrets()
_secrets.check("superset")
DEVELOPMENT_SECRET_KEY = _secrets.DEV_SUPERSET_SECRET_KEY
SECRET_KEY = os.environ.get("SUPERSET_SECRET_KEY") or DEVELOPMENT_SECRET_KEY

# --- where Superset keeps its state ----------------------------------------------------------------------------
DATA_DIR = str(SUPERSET_HOME)
SQLALCHEMY_DATABASE_URI = f"sqlite:///{SUPERSET_HOME / 'superset.db'}?check_same_thread=false"
UPLOAD_FOLDER = str(SUPERSET_HOME / "uploads") + "/"
IMG_UPLOAD_FOLDER = str(SUPERSET_HOME / "img_uploads") + "/"

# --- feature flags ---------------------------------------------------------------------------------------------
# Dashboards (with native filters) import from a v1 bundle without any extra flag in 6.1; the ones below keep the
# dashboard simple and offline: no thumbnails (they need a Celery worker and a browser), no template processing.
FEATURE_FLAGS: dict[str, bool] = {
    "THUMBNAILS": False,
    "ALERT_REPORTS": False,
    "ENABLE_TEMPLATE_PROCESSING": False,
    "DASHBOARD_RBAC": False,
    "TAGGING_SYSTEM": False,
    # Render every chart when the dashboard opens (not only those scrolled into view): the dashboard is small, and
    # a full-page screenshot or a printout then shows all charts.
    "DASHBOARD_VIRTUALIZATION": False,
}

# --- offline: no telemetry, no CDN, no external map tiles --------------------------------------------------------
# The front end embeds a telemetry pixel (Scarf) and map/tile hosts; the content security policy below allows only
# this server, so a browser never fetches them. Superset serves its own JS/CSS (no STATIC_ASSETS_PREFIX).
STATIC_ASSETS_PREFIX = ""
MAPBOX_API_KEY = ""
_SELF_ONLY_CSP: dict[str, Any] = {
    "content_security_policy": {
        "base-uri": ["'self'"],
        "default-src": ["'self'"],
        "img-src": ["'self'", "blob:", "data:"],
        "worker-src": ["'self'", "blob:"],
        "connect-src": ["'self'"],
        "object-src": "'none'",
        "style-src": ["'self'", "'unsafe-inline'"],
        "font-src": ["'self'", "data:"],
        "script-src": ["'self'", "'strict-dynamic'"],
    },
    "content_security_policy_nonce_in": ["script-src"],
    "force_https": False,
    "session_cookie_secure": False,
}
# Behind a reverse proxy that terminates TLS (SUPERSET_BEHIND_PROXY=true; docs/scale-out.md): the proxy's
# X-Forwarded-* headers are trusted, so redirects and links say https, and the session cookie goes over HTTPS only.
_behind_proxy = os.environ.get("SUPERSET_BEHIND_PROXY", "").strip().lower() in ("1", "true", "yes")
ENABLE_PROXY_FIX = _behind_proxy
SESSION_COOKIE_SECURE = _behind_proxy
_SELF_ONLY_CSP["session_cookie_secure"] = _behind_proxy
TALISMAN_ENABLED = True
TALISMAN_CONFIG = _SELF_ONLY_CSP
TALISMAN_DEV_CONFIG = _SELF_ONLY_CSP
THEME_FONT_URL_ALLOWED_DOMAINS: list[str] = []
CONTENT_SECURITY_POLICY_WARNING = False

# No caching of chart data: a new load must show up on the next refresh, not after a cache timeout.
CACHE_CONFIG = {"CACHE_TYPE": "NullCache"}
DATA_CACHE_CONFIG = {"CACHE_TYPE": "NullCache"}

# --- the marts: DuckDB read-only with a new connection per query, or PostgreSQL read-only ----------------------
# DuckDB settings of every connection to the published file: read-only, no file access outside the database (no
# read_csv('/etc/...') from SQL Lab), and no extension downloads (they fail offline).
DUCKDB_CONNECT_ARGS: dict[str, Any] = {
    "read_only": True,
    "config": {
        "enable_external_access": False,
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
    },
}


# PostgreSQL: every transaction read-only (the role survey_reader can only SELECT on the marts anyway).
POSTGRES_READ_ONLY_OPTION = "-c default_transaction_read_only=on"


def DB_CONNECTION_MUTATOR(uri, params, username, security_manager, source):
    """Enforce read-only, unpooled DuckDB connections, and read-only PostgreSQL transactions, whatever the
    database's settings in the UI say."""
    from sqlalchemy.pool import NullPool

    if uri.drivername.startswith("postgresql"):
        connect_args = params.setdefault("connect_args", {})
        options = connect_args.get("options") or ""
        if POSTGRES_READ_ONLY_OPTION not in options:
            connect_args["options"] = f"{options} {POSTGRES_READ_ONLY_OPTION}".strip()
    if uri.drivername.startswith("duckdb"):
        params["poolclass"] = NullPool
        connect_args = params.setdefault("connect_args", {})
        connect_args["read_only"] = True
        config = connect_args.setdefault("config", {})
        for key, value in DUCKDB_CONNECT_ARGS["config"].items():
            config[key] = value
    return uri, params


# SQL Lab: the marts are for reading; no DML, no CTAS (the file is opened read-only anyway).
SQLLAB_CTAS_NO_LIMIT = False
PREVENT_UNSAFE_DB_CONNECTIONS = True
SQL_MAX_ROW = 100000
ROW_LIMIT = 50000

# The default of "5 per second" on the login endpoint is enough; keep Flask-Limiter's in-memory storage quiet.
RATELIMIT_STORAGE_URI = "memory://"
