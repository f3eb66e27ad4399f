"""The primary-key check over dbt's manifest names the models without a unique test, and passes on this project."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from conftest import ROOT

spec = importlib.util.spec_from_file_location("check_primary_keys", ROOT / "scripts" / "check_primary_keys.py")
check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check)


def test_a_model_without_a_unique_test_is_named() -> None:
    manifest = {
        "nodes": {
            "model.p.keyed": {"resource_type": "model", "name": "keyed"},
            "model.p.unkeyed": {"resource_type": "model", "name": "unkeyed"},
            "test.p.unique_keyed_id": {
                "resource_type": "test",
                "test_metadata": {"name": "unique"},
                "attached_node": "model.p.keyed",
                "depends_on": {"nodes": ["model.p.keyed"]},
            },
            "test.p.not_null_unkeyed_id": {
                "resource_type": "test",
                "test_metadata": {"name": "not_null"},
                "attached_node": "model.p.unkeyed",
                "depends_on": {"nodes": ["model.p.unkeyed"]},
            },
        }
    }
    assert check.models_without_primary_key_test(manifest) == ["unkeyed"]


def test_every_model_of_the_project_has_one(manifest: Path) -> None:
    assert check.models_without_primary_key_test(json.loads(manifest.read_text())) == []
