"""Print the mart catalogue (Markdown) from dbt's manifest: every mart, its grain, its columns.

.venv/bin/python scripts/mart_catalogue.py > docs/mart_catalogue.md   (make catalogue)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def catalogue(manifest: dict) -> str:
    marts = sorted(
        (n for n in manifest["nodes"].values() if n["resource_type"] == "model" and n["fqn"][1] == "marts"),
        key=lambda n: n["name"],
    )
    lines = [
        "# Mart catalogue",
        "",
        "Generated from the dbt project by `make catalogue`; do not edit by hand. The marts are in the schema",
        "`marts` of the published DuckDB file (`var/published/survey_marts.duckdb`) and, on the scale-out,",
        "of the PostgreSQL warehouse (read with the role `survey_reader`). Every publication is also exported",
        "as files, one per mart and format (`<mart>.parquet`, `<mart>.csv`), in `var/exports/latest/`.",
        "",
    ]
    lines += ["| Mart | Grain (one row per) |", "| --- | --- |"]
    for node in marts:
        lines.append(f"| [`{node['name']}`](#{node['name']}) | {node['config']['meta']['grain']} |")
    for node in marts:
        lines += [
            "",
            f"## {node['name']}",
            "",
            f"One row per {node['config']['meta']['grain']}. " + " ".join(node["description"].split()),
            "",
            "| Column | Type | Description |",
            "| --- | --- | --- |",
        ]
        for column in node["columns"].values():
            lines.append(f"| `{column['name']}` | {column['data_type']} | {' '.join(column['description'].split())} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "dbt_project" / "target" / "manifest.json"
    sys.stdout.write(catalogue(json.loads(path.read_text(encoding="utf-8"))))
