"""docs/mart_catalogue.md is generated from the dbt project and must match it (run `make catalogue`)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from conftest import ROOT


def test_mart_catalogue_is_current(manifest: Path) -> None:
    spec = importlib.util.spec_from_file_location("mart_catalogue", ROOT / "scripts" / "mart_catalogue.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    expected = module.catalogue(json.loads(manifest.read_text(encoding="utf-8")))
    committed = (ROOT / "docs" / "mart_catalogue.md").read_text(encoding="utf-8")
    assert committed == expected, "docs/mart_catalogue.md is out of date: run `make catalogue`"
    for mart in ("dim_city", "fct_city_responsibility", "fct_responsibility_shares", "fct_answer_corrections"):
        assert f"## {mart}" in committed
