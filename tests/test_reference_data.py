"""The project's own reference data: the published headline ranges say what the survey's statements say."""

from __future__ import annotations

import csv

from conftest import PUBLISHED_FIGURES, published_ranges

# What each published statement allows, as a test on "k of n cities" (the article's wording, see README)
STATEMENTS = {
    "over 75 percent": lambda k, n: k / n > 0.75,
    "half": lambda k, n: 2 * k == n,
    "one in three": lambda k, n: abs(k - n / 3) < 1,  # the nearest whole numbers of cities to a third
}


def test_each_published_range_admits_exactly_what_its_statement_says() -> None:
    with open(PUBLISHED_FIGURES, encoding="utf-8") as f:
        rows = {int(r["wave_year"]): r for r in csv.DictReader(f)}
    ranges = published_ranges()
    assert sorted(rows) == [2016, 2018, 2019]
    for year, row in rows.items():
        statement = STATEMENTS[row["published_statement_en"]]
        low, high = ranges[year]
        n = int(row["cities_responded"] or row["cities_surveyed"])
        admitted = {k for k in range(n + 1) if low < k / n <= high}
        expected = {k for k in range(n + 1) if statement(k, n)}
        assert admitted == expected, f"{year}: the range ({low}, {high}] admits {admitted}, the statement {expected}"
