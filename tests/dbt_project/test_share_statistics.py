"""The share statistics of fct_responsibility_shares at their edges, on DuckDB and PostgreSQL.

Every k of n responding cities for n from 1 to 30 (so 0 of n, n of n and n = 1), some waves with surveyed cities
that did not respond, run through the model's own SQL (rendered with the project's macros, wilson_bound among
them) and compared with a Python Wilson score interval: within 1e-12, and 0 <= lower <= share <= upper <= 1 exactly,
which is what the marts gate (expectations/marts/fct_responsibility_shares.json) requires with no tolerance.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from statistics import NormalDist

import pytest
from test_rollup_rule import DBT, Warehouse, open_warehouse, render_model

MODEL = "models/marts/fct_responsibility_shares.sql"
Z = 1.959964  # the macro's z: the normal distribution's 97.5 % quantile to six decimals
LARGEST_N = 30
OPTIONS = ("it_management", "sector_directors", "city_leadership")  # the last never chosen: its share is 0


def wilson(k: int, n: int) -> tuple[float, float]:
    """The 95 % Wilson score interval of k out of n, kept within [0, 1] and on either side of k / n."""
    p = k / n
    centre = p + Z * Z / (2 * n)
    half = Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n))
    scale = 1 + Z * Z / n
    return min(p, max(0.0, (centre - half) / scale)), max(p, min(1.0, (centre + half) / scale))


def _wave(n: int, k: int) -> int:
    return 100 * n + k


def _not_responding(n: int, k: int) -> int:
    """Surveyed cities that did not respond: none in most waves, one to three in every third."""
    return 0 if (n + k) % 3 else 1 + k % 3


def _rolled_up() -> list[tuple]:
    """k cities led by IT management and n - k by sector directors, for every k of every n up to LARGEST_N."""
    rows = []
    for n in range(1, LARGEST_N + 1):
        for k in range(n + 1):
            wave = _wave(n, k)
            answers = [OPTIONS[0]] * k + [OPTIONS[1]] * (n - k)
            rows += [(wave, f"{i:03d}", True, code) for i, code in enumerate(answers)]
            rows += [(wave, f"{n + i:03d}", False, None) for i in range(_not_responding(n, k))]
    return rows


@pytest.fixture(scope="module", params=["duckdb", "postgres"])
def shares(request: pytest.FixtureRequest) -> Iterator[dict[tuple[int, str], dict]]:
    """The model's rows for the generated waves, by wave and responsibility."""
    with open_warehouse(request.param, "shares") as warehouse:
        _load_inputs(warehouse)
        rows = warehouse.query(render_model(MODEL, warehouse.engine))
        yield {(r["wave_year"], r["responsibility_code"]): r for r in rows}


def _load_inputs(warehouse: Warehouse) -> None:
    warehouse.create(
        {
            "int_city_responsibilities_rolled_up": "wave_year integer, municipality_code varchar, "
            "has_responded boolean, responsibility_code varchar",
            "codebook_answers": "wave_year integer, question_id varchar, answer_code varchar",
            "responsibilities": "responsibility_code varchar, label_en varchar, is_it_management boolean",
        }
    )
    rolled_up = _rolled_up()
    warehouse.replace("int_city_responsibilities_rolled_up", rolled_up)
    warehouse.replace(
        "codebook_answers", [(wave, "lead", code) for wave in sorted({r[0] for r in rolled_up}) for code in OPTIONS]
    )
    with (DBT / "seeds" / "responsibilities.csv").open(encoding="utf-8", newline="") as f:
        seed = [(r["responsibility_code"], r["label_en"], r["is_it_management"] == "true") for r in csv.DictReader(f)]
    warehouse.replace("responsibilities", seed)


def test_z_is_the_normal_quantile_for_95_percent() -> None:
    assert round(NormalDist().inv_cdf(0.975), 6) == Z


def test_every_wave_and_option_has_a_row(shares: dict[tuple[int, str], dict]) -> None:
    waves = {_wave(n, k) for n in range(1, LARGEST_N + 1) for k in range(n + 1)}
    assert set(shares) == {(wave, code) for wave in waves for code in OPTIONS}


def test_the_interval_is_wilsons_and_holds_its_share_exactly(shares: dict[tuple[int, str], dict]) -> None:
    off, out_of_order = [], []
    for n in range(1, LARGEST_N + 1):
        for k in range(n + 1):
            for code, cities in zip(OPTIONS, (k, n - k, 0), strict=True):
                row = shares[(_wave(n, k), code)]
                assert (row["cities"], row["cities_responded"]) == (cities, n)
                assert row["cities_surveyed"] == n + _not_responding(n, k)
                lower, share, upper = row["share_ci_lower_95"], row["share"], row["share_ci_upper_95"]
                expected = wilson(cities, n)
                if abs(lower - expected[0]) > 1e-12 or abs(upper - expected[1]) > 1e-12 or share != cities / n:
                    off.append(f"{code} {cities} of {n}: {lower!r} {share!r} {upper!r}, expected {expected}")
                if not 0 <= lower <= share <= upper <= 1:
                    out_of_order.append(f"{code} {cities} of {n}: {lower!r} <= {share!r} <= {upper!r}")
    assert not off, "\n".join(off[:20])
    assert not out_of_order, "\n".join(out_of_order[:20])


def test_the_edges_are_exact(shares: dict[tuple[int, str], dict]) -> None:
    """None of n: the interval starts at 0; all n: it ends at 1 (a unanimous wave can be published)."""
    for n in range(1, LARGEST_N + 1):
        unanimous = shares[(_wave(n, n), OPTIONS[0])]
        assert (unanimous["share"], unanimous["share_ci_upper_95"]) == (1.0, 1.0), n
        assert 0 < unanimous["share_ci_lower_95"] < 1, n
        nobody = shares[(_wave(n, n), OPTIONS[1])]
        assert (nobody["share"], nobody["share_ci_lower_95"]) == (0.0, 0.0), n
        assert 0 < nobody["share_ci_upper_95"] < 1, n
