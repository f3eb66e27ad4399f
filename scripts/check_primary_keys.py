"""Every dbt model has a primary-key test: a `unique` test on a column or on a combination (dbt's manifest).

    .venv/bin/python scripts/check_primary_keys.py [dbt_project/target/manifest.json]     (make lint runs it)

dbt-project-evaluator's "models without primary key tests" rule, for a project that cannot install dbt packages
(the dbt hub is not reachable here). Exits 1 and names the models that lack one.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def models_without_primary_key_test(manifest: dict) -> list[str]:
    models = {uid: node for uid, node in manifest["nodes"].items() if node["resource_type"] == "model"}
    keyed = set()
    for node in manifest["nodes"].values():
        if node["resource_type"] != "test" or (node.get("test_metadata") or {}).get("name") != "unique":
            continue
        attached = node.get("attached_node") or next(iter(node["depends_on"]["nodes"]), None)
        keyed.add(attached)
    return sorted(node["name"] for uid, node in models.items() if uid not in keyed)


if __name__ == "__main__":
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "dbt_project" / "target" / "manifest.json"
    missing = models_without_primary_key_test(json.loads(path.read_text(encoding="utf-8")))
    if missing:
        print(f"models without a primary-key (unique) test: {', '.join(missing)}")
        sys.exit(1)
    print("every model has a primary-key test")
