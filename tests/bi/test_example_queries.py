"""Every example query in analysis/queries/ runs on the published marts and gives answers that hold together, and
the same answer on PostgreSQL (the marts of the published file copied into a throwaway database, read as
survey_reader: tests/bi/pg_marts.py). So does the join the mart catalogue gives as its example for dim_city.

The checks compare each answer with what the marts say another way (no hard-coded counts), so they hold for any
data the pipeline publishes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
from conftest import ROOT, PipelineRun
from pg_marts import PG_HOST, PG_PORT, READER, postgres_marts

QUERIES = ROOT / "analysis" / "queries"
QUERY_FILES = sorted(QUERIES.glob("*.sql"))
CATALOGUE = ROOT / "docs" / "mart_catalogue.md"


def _value(v: object) -> object:
    """A value as both engines' drivers can be compared by: numerics (DuckDB's DECIMAL, PostgreSQL's numeric) as
    floats."""
    return float(v) if isinstance(v, Decimal) else v


def rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict]:
    cur = con.execute(sql)
    names = [d[0] for d in cur.description]
    return [{n: _value(v) for n, v in zip(names, r, strict=True)} for r in cur.fetchall()]


def scalar_map(con: duckdb.DuckDBPyConnection, sql: str) -> dict:
    return dict(con.execute(sql).fetchall())


def waves(con: duckdb.DuckDBPyConnection) -> set[int]:
    return {r[0] for r in con.execute("select wave_year from marts.dim_year").fetchall()}


def check_moved_away(con: duckdb.DuckDBPyConnection, result: list[dict]) -> None:
    expected = {
        r[0]
        for r in con.execute("""
        select a.municipality_code from marts.fct_city_responsibility a
        join marts.fct_city_responsibility b on b.municipality_code = a.municipality_code
        where a.wave_year = 2016 and b.wave_year = 2019 and a.is_it_led and b.has_responded and not b.is_it_led
    """).fetchall()
    }
    assert {r["municipality_code"] for r in result} == expected
    assert len(result) == len(expected), "a city listed twice"
    assert all(r["lead_2016"] == "IT management" and r["lead_2019"] != "IT management" for r in result)


def check_by_region(con: duckdb.DuckDBPyConnection, result: list[dict]) -> None:
    assert {r["wave_year"] for r in result} == waves(con)
    for r in result:
        assert 0 <= r["it_led_cities"] <= r["cities_responded"]
        if r["cities_responded"]:
            assert 0 <= r["it_led_share"] <= 1
    headline = scalar_map(con, "select wave_year, cities from marts.fct_responsibility_shares where is_it_management")
    responded = scalar_map(con, "select wave_year, cities_responded from marts.dim_year")
    for year in waves(con):
        assert sum(r["it_led_cities"] for r in result if r["wave_year"] == year) == headline[year]
        assert sum(r["cities_responded"] for r in result if r["wave_year"] == year) == responded[year]


def check_cooperation(con: duckdb.DuckDBPyConnection, result: list[dict]) -> None:
    assert {r["wave_year"] for r in result} == waves(con)
    for r in result:
        assert 0 <= r["min_score"] <= r["mean_cooperation_score"] <= r["max_score"] <= 1
        assert r["respondents"] >= r["cities"] >= 1
    answered = scalar_map(
        con,
        """
        select a.wave_year, count(*) from marts.fct_survey_answers a
        join marts.fct_city_responsibility f using (wave_year, municipality_code)
        where a.question_id = 'cooperation' and a.answer_score is not null and f.has_responded group by 1""",
    )
    for year, count in answered.items():
        assert sum(r["respondents"] for r in result if r["wave_year"] == year) == count


def check_contested(con: duckdb.DuckDBPyConnection, result: list[dict]) -> None:
    assert [r["wave_year"] for r in result] == sorted(waves(con))
    responded = scalar_map(con, "select wave_year, cities_responded from marts.dim_year")
    for r in result:
        assert r["cities_responded"] == responded[r["wave_year"]]
        assert 0 <= r["contested_cities"] <= r["cities_responded"]
        assert r["decided_by_key_respondent"] + r["decided_otherwise"] == r["contested_cities"]
        assert 0 <= r["contested_share"] <= 1


def check_cdo(con: duckdb.DuckDBPyConnection, result: list[dict]) -> None:
    cdo_2019 = con.execute(
        "select cities from marts.fct_responsibility_shares "
        "where wave_year = 2019 and responsibility_code = 'chief_digital_officer'"
    ).fetchone()
    assert cdo_2019 is not None and len(result) == cdo_2019[0] > 0
    assert len({r["city_name_fi"] for r in result}) == len(result)
    assert all(r["previous_lead"] != "Chief digital officer" for r in result), "the CDO option is new in 2019"
    populations = [r["population"] for r in result]
    assert populations == sorted(populations, reverse=True)


def check_vs_published(con: duckdb.DuckDBPyConnection, result: list[dict]) -> None:
    shares = scalar_map(con, "select wave_year, share from marts.fct_responsibility_shares where is_it_management")
    assert {r["wave_year"] for r in result} == set(shares) == waves(con)
    for r in result:
        assert r["it_led_share"] == pytest.approx(shares[r["wave_year"]], abs=5e-4)
        assert r["ci_low"] <= r["it_led_share"] <= r["ci_high"]
        if r["published_it_led_statement_en"] is not None:
            assert r["within_published_range"] is True, r


CHECKS: dict[str, Callable[[duckdb.DuckDBPyConnection, list[dict]], None]] = {
    "01_moved_away_from_it_management.sql": check_moved_away,
    "02_it_led_share_by_region.sql": check_by_region,
    "03_cooperation_by_who_leads.sql": check_cooperation,
    "04_contested_cities_per_wave.sql": check_contested,
    "05_new_chief_digital_officer_cities.sql": check_cdo,
    "06_it_led_share_vs_published.sql": check_vs_published,
}


def test_there_are_example_queries_and_each_has_its_check() -> None:
    assert len(QUERY_FILES) >= 5
    assert {p.name for p in QUERY_FILES} == set(CHECKS), "add a check for every new query (and drop removed ones)"


@pytest.mark.parametrize("path", QUERY_FILES, ids=lambda p: p.stem)
def test_example_query(pipeline_run: PipelineRun, path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.startswith("-- Question:"), f"{path.name} must start with a comment saying the question"
    with duckdb.connect(str(pipeline_run.paths.published), read_only=True) as con:
        result = rows(con, text)
        assert result, f"{path.name} returned no rows"
        for column in result[0]:
            assert any(r[column] is not None for r in result), f"{path.name}: column {column} is always null"
        CHECKS[path.name](con, result)


# ------------------------------------------------------------------------------ the same answers on PostgreSQL


@pytest.fixture(scope="module")
def postgres_database(pipeline_run: PipelineRun) -> Iterator[str]:
    """The published marts in a PostgreSQL database of their own, read as survey_reader."""
    with postgres_marts(pipeline_run.paths.published, tag="queries") as database:
        yield database


def postgres_rows(database: str, sql: str) -> list[dict]:
    import psycopg2

    with psycopg2.connect(host=PG_HOST, port=PG_PORT, user=READER, dbname=database) as conn, conn.cursor() as cur:
        cur.execute(sql)  # no parameters: the queries' text is sent as written
        names = [d[0] for d in cur.description]
        return [{n: _value(v) for n, v in zip(names, r, strict=True)} for r in cur.fetchall()]


def comparable(result: list[dict]) -> list[tuple]:
    """Rows in their order, numbers to 9 decimals (the engines' last bits of a double may differ)."""

    def value(v: object) -> object:
        if isinstance(v, float):
            return None if math.isnan(v) else round(v, 9)
        return v

    return [tuple((k, value(v)) for k, v in r.items()) for r in result]


@pytest.mark.parametrize("path", QUERY_FILES, ids=lambda p: p.stem)
def test_example_query_gives_the_same_result_on_postgresql(
    pipeline_run: PipelineRun, postgres_database: str, path: Path
) -> None:
    text = path.read_text(encoding="utf-8")
    with duckdb.connect(str(pipeline_run.paths.published), read_only=True) as con:
        in_duckdb = rows(con, text)
    assert in_duckdb, path.name
    assert comparable(postgres_rows(postgres_database, text)) == comparable(in_duckdb), path.name


def catalogue_example(mart: str) -> str:
    """The SQL example (`select ...`) the mart catalogue gives in the description of `mart`."""
    section = CATALOGUE.read_text(encoding="utf-8").split(f"\n## {mart}\n", 1)[1].split("\n## ", 1)[0]
    (example,) = re.findall(r"`(select [^`]+)`", section)
    return example


def test_the_catalogues_point_in_time_join_to_dim_city_finds_one_city_row_per_city_and_wave(
    pipeline_run: PipelineRun, postgres_database: str
) -> None:
    example = catalogue_example("dim_city")
    assert "between c.valid_from and c.valid_to" in example
    with duckdb.connect(str(pipeline_run.paths.published), read_only=True) as con:
        found = rows(con, example)
        expected = rows(
            con,
            "select f.wave_year, c.city_name_fi from marts.fct_city_responsibility as f "
            "join marts.dim_city as c on c.municipality_code = f.municipality_code and c.is_current",
        )
    assert found, "the catalogue's join finds no city"
    assert sorted((r["wave_year"], r["city_name_fi"]) for r in found) == sorted(
        (r["wave_year"], r["city_name_fi"]) for r in expected
    ), "every city and wave once, with the name it had then (no city has been renamed)"
    assert sorted(comparable(postgres_rows(postgres_database, example))) == sorted(comparable(found))


def test_each_wave_names_the_population_year_that_goes_with_it(pipeline_run: PipelineRun) -> None:
    """dim_year.population_reference_year joins every surveyed city of a wave to its population, and the
    catalogue says that this is the join."""
    assert "population_reference_year" in CATALOGUE.read_text(encoding="utf-8").split("\n## fct_city_population\n")[1]
    with duckdb.connect(str(pipeline_run.paths.published), read_only=True) as con:
        years = rows(con, "select wave_year, population_reference_year from marts.dim_year")
        available = {r["y"] for r in rows(con, "select distinct population_year as y from marts.fct_city_population")}
        missing = rows(
            con,
            """
            select f.wave_year, f.municipality_code from marts.fct_city_responsibility as f
            join marts.dim_year as y on y.wave_year = f.wave_year
            left join marts.fct_city_population as p
                on p.municipality_code = f.municipality_code and p.population_year = y.population_reference_year
            where p.population is null""",
        )
    assert years
    for r in years:
        wanted = r["wave_year"] - 1
        assert r["population_reference_year"] == (wanted if wanted in available else None), r
    assert missing == [], "a surveyed city without a population for its wave"
