"""Where the warehouse keeps its files: every path can be moved with an environment variable."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path

from survey_warehouse import secrets

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# dbt's profile (dbt_project/profiles.yml, `profile:` in dbt_project.yml): the DAG's Cosmos group and `dbt parse`
DBT_PROFILE = "survey_warehouse"


@dataclass(frozen=True)
class Paths:
    root: Path
    var: Path
    waves_config: Path
    warehouse: Path
    published: Path
    data_docs: Path
    dbt_project: Path
    # where deliveries are dropped (SURVEY_INBOX_DIR); None: inbox/ under var
    inbox: Path | None = None

    def shown(self, path: Path) -> str:
        """How messages show a path: relative to the project when it is inside it, else as it is."""
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    @classmethod
    def from_env(cls) -> Paths:
        root = Path(os.environ.get("SURVEY_PROJECT_ROOT", PROJECT_ROOT))
        var = Path(os.environ.get("SURVEY_VAR_DIR", root / "var"))
        return cls(
            root=root,
            var=var,
            waves_config=Path(os.environ.get("SURVEY_WAVES_DIR", root / "config" / "waves")),
            warehouse=Path(os.environ.get("SURVEY_WAREHOUSE_PATH", var / "warehouse" / "survey.duckdb")),
            published=Path(os.environ.get("SURVEY_PUBLISHED_PATH", var / "published" / "survey_marts.duckdb")),
            data_docs=Path(os.environ.get("SURVEY_DATA_DOCS_DIR", var / "data_docs")),
            dbt_project=root / "dbt_project",
            inbox=Path(os.environ["SURVEY_INBOX_DIR"]) if os.environ.get("SURVEY_INBOX_DIR") else None,
        )

    @property
    def inbox_dir(self) -> Path:
        return self.inbox or self.var / "inbox"


def get_paths() -> Paths:
    return Paths.from_env()


DEV_PSEUDONYM_KEY = secrets.DEV_PSEUDONYM_KEY


def pseudonym_key() -> str:
    """The key of the respondent pseudonyms (SURVEY_PSEUDONYM_KEY). In production (SURVEY_ENV, any case) it must pass
    the secrets check (survey_warehouse.secrets: set, no placeholder, at least 32 characters); in development an
    unset or empty key is the development key."""
    try:
        return secrets.secret_value("SURVEY_PSEUDONYM_KEY", DEV_PSEUDONYM_KEY)
    except secrets.SecretsError as exc:
        from survey_warehouse.errors import SurveyWarehouseError

        raise SurveyWarehouseError(str(exc)) from None


def inbox_journal_key() -> bytes:
    """The key that signs the journal a run keeps beside the delivery it took (<inbox>/<year>/.taken/<run>/run.json),
    derived from the pseudonym key (SURVEY_PSEUDONYM_KEY, the same on every worker): the inbox acts only on a journal
    the warehouse wrote, never on one written into the inbox by hand."""
    return hmac.new(pseudonym_key().encode(), b"survey_warehouse inbox journal", hashlib.sha256).digest()


# the settings that change what a load and its raw gate make of a file (a kept preview of a draft is made again
# when one of them changes: orchestration.pipeline.draft_preview)
LOAD_SETTINGS = ("SURVEY_MAX_QUARANTINED_SHARE", "SURVEY_MAX_CELL_BYTES", "SURVEY_DBT_TARGET")


def max_quarantined_share() -> float:
    """Above this share of quarantined rows the raw gate fails the load (SURVEY_MAX_QUARANTINED_SHARE)."""
    return float(os.environ.get("SURVEY_MAX_QUARANTINED_SHARE", "0.05"))


def warehouse_pool() -> str:
    """The Airflow pool of the tasks that open the warehouse (SURVEY_WAREHOUSE_POOL): DuckDB allows one writer."""
    default = "duckdb_warehouse" if os.environ.get("SURVEY_DBT_TARGET", "duckdb") == "duckdb" else "default_pool"
    return os.environ.get("SURVEY_WAREHOUSE_POOL", default)


def smtp_conn_id() -> str:
    """The Airflow connection the owner's e-mails go through (SURVEY_SMTP_CONN_ID)."""
    return os.environ.get("SURVEY_SMTP_CONN_ID", "smtp_default")


def wave_due_date(year: int) -> dt.date:
    """The day by which a year's wave should be published (SURVEY_WAVE_DUE, month-day, default 07-01)."""
    value = os.environ.get("SURVEY_WAVE_DUE", "07-01").strip()
    try:
        month, day = (int(part) for part in value.split("-"))
        return dt.date(year, month, day)
    except ValueError:
        from survey_warehouse.errors import SurveyWarehouseError

        raise SurveyWarehouseError(
            f"SURVEY_WAVE_DUE must be a month and a day as MM-DD (e.g. 07-01 for 1 July), not {value!r}"
        ) from None
