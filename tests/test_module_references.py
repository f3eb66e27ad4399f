"""Every module of the package that the documentation, the dbt project, the configuration or the deployment files
name (`survey_warehouse.raw.load`, `src/survey_warehouse/intake/matching.py`) exists: a module moved or renamed is
followed everywhere it is named. An old path that an existing deployment still holds (Airflow keeps the inbox
trigger's classpath in its database) keeps resolving to the class it named."""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    ROOT / "bi" / "README.md",
    *sorted(
        p
        for p in (ROOT / "dbt_project").rglob("*")
        if p.suffix in {".sql", ".yml", ".md"}
        and "target" not in p.parts
        and "logs" not in p.parts
        and "dbt_packages" not in p.parts
    ),
    *sorted((ROOT / "config").rglob("*.yml")),
    *sorted((ROOT / "docker").glob("*")),
    ROOT / "docker-compose.yml",
    ROOT / "Dockerfile",
    ROOT / "Makefile",
]
DOTTED = re.compile(r"\bsurvey_warehouse(?:\.[A-Za-z_]\w*)+")
PATH = re.compile(r"\bsrc/survey_warehouse/[\w/]+\.py\b")


def _resolves(dotted: str) -> bool:
    """A module, or a name in one (a class, a function, a constant)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 1, -1):
        module = ".".join(parts[:cut])
        try:
            spec = importlib.util.find_spec(module)
        except ModuleNotFoundError:  # a name inside a module, not a submodule
            spec = None
        if spec is not None:
            obj = importlib.import_module(module)
            for name in parts[cut:]:
                if not hasattr(obj, name):
                    return False
                obj = getattr(obj, name)
            return True
    return False


def _references() -> list[tuple[str, str]]:
    found = []
    for source in SOURCES:
        if not source.is_file():
            continue
        text = source.read_text(encoding="utf-8", errors="replace")
        rel = source.relative_to(ROOT).as_posix()
        found += [(rel, m.group(0)) for m in DOTTED.finditer(text)]
        found += [(rel, m.group(0)) for m in PATH.finditer(text)]
    return found


def _dbt_node(reference: str) -> bool:
    """dbt names its nodes after the project (survey_warehouse.dim_city, survey_warehouse.survey_raw.builds)."""
    models = {p.stem for p in (ROOT / "dbt_project").rglob("*.sql")} | {
        p.stem for p in (ROOT / "dbt_project" / "seeds").glob("*.csv")
    }
    parts = reference.split(".")
    return len(parts) >= 2 and (parts[1] in models or parts[1] == "survey_raw")


def test_every_module_named_outside_the_code_exists() -> None:
    references = _references()
    assert references, "no reference found: the scan itself is broken"
    missing = sorted(
        {
            (where, ref)
            for where, ref in references
            if not ((ROOT / ref).is_file() if ref.startswith("src/") else _resolves(ref.rstrip(".")) or _dbt_node(ref))
        }
    )
    assert not missing, "named but not found:\n" + "\n".join(f"  {w}: {r}" for w, r in missing)


@pytest.mark.parametrize(
    "reference", ["survey_warehouse.load", "survey_warehouse.matching", "src/survey_warehouse/delivery.py"]
)
def test_a_moved_module_is_found_missing(reference: str) -> None:
    if reference.startswith("src/"):
        assert not (ROOT / reference).is_file()
    else:
        assert not _resolves(reference) and not _dbt_node(reference)


def test_the_inbox_triggers_old_classpath_still_names_it() -> None:
    from airflow.sdk.module_loading import import_string

    from survey_warehouse.operations.inbox_trigger import InboxTrigger

    assert import_string("survey_warehouse.inbox_trigger.InboxTrigger") is InboxTrigger
