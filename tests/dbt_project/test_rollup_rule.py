"""The city roll-up (int_city_responsibilities_rolled_up) against the documented rule, on generated cities.

A plain-Python reading of the rule (docs/layers.md, "The city roll-up") is compared with what the model's own SQL
returns for cities Hypothesis makes up: any number of key and other respondents, disagreeing key respondents, ties,
equal submission times, missing answers, superseded loads, several cities and waves. The SQL is the model file rendered
with the project's macros (ref('x') is a table x made here), run on DuckDB, on PostgreSQL and on a PostgreSQL database
whose text collation is en-US, where text does not sort in byte order.

The helpers (render_model, the warehouses) are also used by test_share_statistics.py.
"""

from __future__ import annotations

import csv
import math
import os
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from types import SimpleNamespace

import duckdb
import jinja2
import pytest
from conftest import ROOT, TEST_VAR, en_us_database_options, require_services
from hypothesis import event, example, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

DBT = ROOT / "dbt_project"
MODEL = "models/intermediate/int_city_responsibilities_rolled_up.sql"
PG = ("127.0.0.1", 5432)
# Hypothesis' files with the tests' other files, not in the clone's root
set_hypothesis_home_dir(TEST_VAR / "hypothesis")


# --------------------------------------------------------------------------------- running a model's SQL


def render_model(model: str, engine: str) -> str:
    """The model's SQL as dbt compiles it for `engine` ('duckdb' or 'postgres'): the project's macros, ref('x')
    as the table x."""
    # SQL, not HTML: nothing to escape (dbt renders without autoescape too)
    env = jinja2.Environment(extensions=["jinja2.ext.do"], undefined=jinja2.StrictUndefined)  # noqa: S701
    context: dict[str, object] = {"ref": lambda name: name, "target": SimpleNamespace(type=engine)}
    for file in sorted((DBT / "macros").glob("*.sql")):
        module = env.from_string(file.read_text(encoding="utf-8"), globals=context).module
        context.update({k: v for k, v in vars(module).items() if isinstance(v, jinja2.runtime.Macro)})
    return env.from_string((DBT / model).read_text(encoding="utf-8"), globals=context).render()


class Warehouse:
    """Tables to fill and SQL to run, on DuckDB (in memory) or on a PostgreSQL database."""

    def __init__(self, engine: str, con) -> None:
        self.engine, self.con = engine, con

    def create(self, tables: dict[str, str]) -> None:
        for name, columns in tables.items():
            self._execute(f"create table {name} ({columns})")

    def replace(self, table: str, rows: list[tuple]) -> None:
        self._execute(f"delete from {table}")
        if not rows:
            return
        if self.engine == "duckdb":
            # one statement per 500 rows: much faster than a statement per row (executemany)
            for start in range(0, len(rows), 500):
                chunk = rows[start : start + 500]
                values = ", ".join(f"({', '.join('?' * len(rows[0]))})" for _ in chunk)
                self.con.execute(f"insert into {table} values {values}", [v for row in chunk for v in row])
        else:
            from psycopg2.extras import execute_values

            with self.con.cursor() as cur:
                execute_values(cur, f"insert into {table} values %s", rows, page_size=1000)

    def query(self, sql: str, params: list | None = None) -> list[dict]:
        if self.engine == "duckdb":
            result = self.con.execute(sql, params or [])
            names = [d[0] for d in result.description]
            return [dict(zip(names, row, strict=True)) for row in result.fetchall()]
        with self.con.cursor() as cur:
            cur.execute(sql.replace("%", "%%").replace("?", "%s"), params or [])
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def _execute(self, sql: str) -> None:
        if self.engine == "duckdb":
            self.con.execute(sql)
        else:
            with self.con.cursor() as cur:
                cur.execute(sql)


def _pg_admin():
    import psycopg2

    con = psycopg2.connect(host=PG[0], port=PG[1], user="postgres", dbname="postgres")
    con.autocommit = True
    return con


# the engines the model runs on: DuckDB, PostgreSQL with the server's default collation, and PostgreSQL with an
# en-US collation (name -> engine, whether en-US)
DATABASES = {"duckdb": ("duckdb", False), "postgres": ("postgres", False), "postgres_en_us": ("postgres", True)}
# texts that sort differently in byte order and under en-US collations (digits and underscores, upper case)
COLLATION_PROBES = ("zz2", "zz_2", "zzB", "zza")


@contextmanager
def open_warehouse(name: str, tag: str) -> Iterator[Warehouse]:
    """A fresh, empty warehouse of DATABASES[name]; a PostgreSQL database is dropped afterwards."""
    engine, en_us = DATABASES[name]
    if engine == "duckdb":
        with duckdb.connect() as con:
            yield Warehouse("duckdb", con)
        return
    require_services(PG)
    import psycopg2

    options = ""
    if en_us:
        found = en_us_database_options()
        if found is None:
            reason = "the PostgreSQL server has no en-US collation (ICU or en_US.UTF-8)"
            if os.environ.get("CI") == "true":
                pytest.fail(f"{reason}; CI must provide it")
            pytest.skip(reason)
        options = found
    dbname = f"survey_{tag}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with closing(_pg_admin()) as admin:
        admin.cursor().execute(f'create database "{dbname}" {options}')
        try:
            con = psycopg2.connect(host=PG[0], port=PG[1], user="postgres", dbname=dbname)
            con.autocommit = True
            with closing(con):
                warehouse = Warehouse("postgres", con)
                if en_us:
                    # the database really sorts text otherwise than by bytes, or this engine would test nothing new
                    found_order = warehouse.query(
                        "select string_agg(t, ' ' order by t) as o from unnest(?::text[]) as t",
                        [list(COLLATION_PROBES)],
                    )[0]["o"]
                    assert found_order != " ".join(sorted(COLLATION_PROBES)), found_order
                yield warehouse
        finally:
            admin.cursor().execute(f'drop database if exists "{dbname}" with (force)')


# --------------------------------------------------------------------------------- the rule, in Python


def _seed(name: str) -> list[dict[str, str]]:
    with (DBT / "seeds" / f"{name}.csv").open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


# role code -> (is a key respondent, seniority rank; 1 is the most senior)
ROLES = {
    r["role_code"]: (r["is_key_respondent"] == "true", int(r["seniority_rank"])) for r in _seed("respondent_roles")
}
# responsibility code -> its place in the list of answers
ANSWER_ORDER = {r["responsibility_code"]: int(r["sort_order"]) for r in _seed("responsibilities")}
ROLLUP_METHODS = (
    "key_respondent",
    "majority",
    "tie_broken_by_seniority",
    "tie_broken_by_submission_time",
    "tie_broken_by_answer_order",
    "no_response",
)


@dataclass(frozen=True)
class Vote:
    answer: str
    is_key: bool
    seniority_rank: int | None
    submitted_at: str | None  # ISO text: its order is the time's


def decide(votes: list[Vote]) -> tuple[str, str]:
    """The documented rule for one city and wave: (the city's answer, the rule that decided it)."""
    key_answers = {v.answer for v in votes if v.is_key}
    if len(key_answers) == 1:
        return key_answers.pop(), "key_respondent"
    counts = Counter(v.answer for v in votes)
    tied = [a for a, c in counts.items() if c == max(counts.values())]
    if len(tied) == 1:
        return tied[0], "majority"
    # the answer whose most senior respondent is the most senior (a respondent without a known role has no rank)
    best_rank = {
        a: min((v.seniority_rank for v in votes if v.answer == a and v.seniority_rank is not None), default=math.inf)
        for a in tied
    }
    tied = [a for a in tied if best_rank[a] == min(best_rank.values())]
    if len(tied) == 1:
        return tied[0], "tie_broken_by_seniority"
    # the answer submitted first (an answer whose respondents have no time after the others: "~" sorts after digits)
    first = {a: min((v.submitted_at for v in votes if v.answer == a and v.submitted_at), default="~") for a in tied}
    tied = [a for a in tied if first[a] == min(first.values())]
    if len(tied) == 1:
        return tied[0], "tie_broken_by_submission_time"
    # the answer listed first in seeds/responsibilities.csv; one not listed there after them, by its code's bytes
    return min(tied, key=lambda a: (ANSWER_ORDER.get(a, math.inf), a.encode())), "tie_broken_by_answer_order"


@dataclass
class Dataset:
    surveyed: list[tuple]  # wave_year, municipality_code
    respondents: list[tuple]  # is_current_load, wave_year, municipality_code, respondent_key, role, submitted_at
    answers: list[tuple]  # is_current_load, wave_year, respondent_key, question_id, answer_code


def roll_up(data: Dataset) -> dict[tuple[int, str], tuple]:
    """Per surveyed city and wave: the columns the model returns, by the documented rule."""
    respondents = {(wave, key): (city, role, at) for current, wave, city, key, role, at in data.respondents if current}
    votes: dict[tuple[int, str], list[Vote]] = defaultdict(list)
    for current, wave, key, question, answer in data.answers:
        if current and question == "lead" and answer is not None and (wave, key) in respondents:
            city, role, at = respondents[(wave, key)]
            is_key, rank = ROLES.get(role, (False, None))
            votes[(wave, city)].append(Vote(answer, is_key, rank, at))
    result = {}
    for wave, city in data.surveyed:
        city_votes = votes[(wave, city)]
        if not city_votes:
            result[(wave, city)] = (False, None, "no_response", 0, 0, 0, False, False)
            continue
        answer, method = decide(city_votes)
        key_answers = {v.answer for v in city_votes if v.is_key}
        result[(wave, city)] = (
            True,
            answer,
            method,
            len(city_votes),
            sum(v.is_key for v in city_votes),
            sum(v.answer == answer for v in city_votes),
            len({v.answer for v in city_votes}) > 1,
            len(key_answers) > 1,
        )
    return result


def test_the_python_rule_reads_the_docs() -> None:
    """The reference itself, on cases worked out by hand from the three rules in docs/layers.md."""
    cio, manager, director, other = (True, 1), (False, 2), (False, 3), (False, 5)

    def votes(*given: tuple[str, tuple[bool, int], str]) -> list[Vote]:
        return [Vote(answer, *role, at) for answer, role, at in given]

    t1, t2, t3 = "2018-03-01 10:00:00", "2018-03-02 10:00:00", "2018-03-03 10:00:00"
    # 1. the key respondent speaks for the city, against everyone else
    assert decide(
        votes(("it_management", cio, t3), ("city_leadership", other, t1), ("city_leadership", other, t1))
    ) == ("it_management", "key_respondent")
    # 2. key respondents who disagree: the answer most respondents gave, although no key respondent gave it
    assert decide(
        votes(
            ("it_management", cio, t1),
            ("sector_directors", cio, t1),
            *[("city_leadership", other, t2)] * 3,
        )
    ) == ("city_leadership", "majority")
    # 3. a tie: the most senior respondent, then the earliest submitted, then the order of the answers
    assert decide(votes(("sector_directors", director, t1), ("no_designated_lead", manager, t3))) == (
        "no_designated_lead",
        "tie_broken_by_seniority",
    )
    assert decide(votes(("sector_directors", director, t2), ("city_leadership", director, t1))) == (
        "city_leadership",
        "tie_broken_by_submission_time",
    )
    assert decide(votes(("city_leadership", director, t1), ("sector_directors", director, t1))) == (
        "sector_directors",
        "tie_broken_by_answer_order",
    )


# --------------------------------------------------------------------------------- generated cities

WAVES = (2016, 2018, 2019)
CITIES = ("091", "049", "092", "853", "837")
# answers: the listed ones and a few that are not (a code the list does not have yet), which sort differently by
# bytes and by en-US collation
ANSWERS = (*ANSWER_ORDER, *COLLATION_PROBES)
# the key role twice, so that cities with several key respondents are common; a role not in the seed; none
ROLE_CODES = (*ROLES, next(r for r, (key, _) in ROLES.items() if key), "unknown_role", None)
# few distinct times, so that equal submission times are common; a respondent without one
TIMES = ("2018-03-01 10:00:00", "2018-03-01 10:05:00", "2018-03-02 09:00:00", None)
NO_ROW, NULL_ANSWER = "(no answer row)", "(answer row without a code)"


@st.composite
def datasets(draw: st.DrawFn) -> Dataset:
    waves = draw(st.lists(st.sampled_from(WAVES), min_size=1, max_size=2, unique=True))
    cities = draw(st.lists(st.sampled_from(CITIES), min_size=1, max_size=4, unique=True))
    # a few answers, roles and times per data set, so that cities often tie, also on seniority and on time
    pool = draw(st.lists(st.sampled_from(ANSWERS), min_size=1, max_size=4, unique=True))
    roles = draw(st.lists(st.sampled_from(ROLE_CODES), min_size=1, max_size=4, unique=True))
    times = draw(st.lists(st.sampled_from(TIMES), min_size=1, max_size=3, unique=True))
    answers = st.sampled_from([*pool, NO_ROW, NULL_ANSWER])
    data = Dataset([], [], [])
    n = 0
    for wave in waves:
        # a city whose respondents were not surveyed that wave (left out of the roll-up)
        unsurveyed = draw(st.sampled_from([None, "999"]))
        for city in [*cities, unsurveyed] if unsurveyed else cities:
            if city != unsurveyed:
                data.surveyed.append((wave, city))
            kind = draw(st.sampled_from(["tied on votes", "tied on everything", "any", "any"]))
            if kind.startswith("tied"):
                # answers with as many votes each; from respondents of one role at one time, or of any
                tied = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=3, unique=True))
                votes = draw(st.integers(1, 2))
                if kind == "tied on everything":
                    role, at = draw(st.sampled_from(roles)), draw(st.sampled_from(times))
                    given = [(role, at, answer) for answer in tied for _ in range(votes)]
                else:
                    given = [
                        (draw(st.sampled_from(roles)), draw(st.sampled_from(times)), answer)
                        for answer in tied
                        for _ in range(votes)
                    ]
            else:
                given = draw(st.lists(st.tuples(st.sampled_from(roles), st.sampled_from(times), answers), max_size=6))
            for role, at, answer in given:
                n += 1
                key = f"r{n}"
                data.respondents.append((True, wave, city, key, role, at))
                if answer != NO_ROW:
                    data.answers.append((True, wave, key, "lead", None if answer == NULL_ANSWER else answer))
                if draw(st.booleans()):
                    # an answer to another question, and the same respondent in a superseded load
                    data.answers.append((True, wave, key, "cooperation", draw(st.sampled_from(pool))))
                    data.respondents.append((False, wave, city, key, "cio", TIMES[0]))
                    data.answers.append((False, wave, key, "lead", draw(st.sampled_from(ANSWERS))))
    return data


def _city(wave: int, city: str, *respondents: tuple[str, str | None, str | None]) -> Dataset:
    """A city from (role, answer, submitted at) per respondent."""
    return Dataset(
        [(wave, city)],
        [(True, wave, city, f"{city}-{i}", role, at) for i, (role, _, at) in enumerate(respondents)],
        [(True, wave, f"{city}-{i}", "lead", answer) for i, (_, answer, _) in enumerate(respondents)],
    )


# two CIOs who disagree, three other managers who agree: the majority, not the first CIO's answer
CIOS_DISAGREE = _city(
    2019,
    "837",
    ("cio", "it_management", "2019-03-01 10:00:00"),
    ("cio", "sector_directors", "2019-03-02 10:00:00"),
    *[("other_manager", "city_leadership", "2019-03-03 10:00:00")] * 3,
)
# two sector directors, one answer each: the earlier submission decides, not seniority
DIRECTORS_TIE = _city(
    2018,
    "743",
    ("sector_director", "sector_directors", "2018-03-02 10:00:00"),
    ("sector_director", "city_leadership", "2018-03-01 10:00:00"),
)


def _cities(*cities: Dataset) -> Dataset:
    return Dataset(
        *([row for city in cities for row in getattr(city, f)] for f in ("surveyed", "respondents", "answers"))
    )


# answers not in the list, tied on everything else: decided by the codes' bytes, whatever the database's collation
CODES_TIE = _cities(
    *(
        _city(2019, city, *[("other_manager", code, "2019-03-01 10:00:00") for code in codes])
        for city, codes in [("091", ("zz_2", "zz2")), ("049", ("zza", "zzB"))]
    )
)


STAGING = {
    "stg_survey__cities_surveyed": "wave_year integer, municipality_code varchar",
    "stg_survey__respondents": "is_current_load boolean, wave_year integer, municipality_code varchar, "
    "respondent_key varchar, respondent_role_code varchar, submitted_at timestamp",
    "stg_survey__answers": "is_current_load boolean, wave_year integer, respondent_key varchar, question_id varchar, "
    "answer_code varchar",
}
SEEDS = {
    "respondent_roles": "role_code varchar, is_key_respondent boolean, seniority_rank integer",
    "responsibilities": "responsibility_code varchar, sort_order integer",
}


class ModelRun:
    """A model's SQL and the warehouse it runs on (shown by its name in Hypothesis' reports)."""

    def __init__(self, warehouse: Warehouse, sql: str, name: str) -> None:
        self.warehouse, self.sql, self.name = warehouse, sql, name

    def __repr__(self) -> str:
        return self.name

    def run(self) -> list[dict]:
        return self.warehouse.query(self.sql)


@pytest.fixture(scope="module", params=list(DATABASES))
def rollup_model(request: pytest.FixtureRequest) -> Iterator[ModelRun]:
    """The roll-up on an empty warehouse with its inputs as tables (the seeds as the project has them)."""
    with open_warehouse(request.param, "rollup") as warehouse:
        warehouse.create({**STAGING, **SEEDS})
        warehouse.replace("respondent_roles", [(code, key, rank) for code, (key, rank) in ROLES.items()])
        warehouse.replace("responsibilities", list(ANSWER_ORDER.items()))
        yield ModelRun(warehouse, render_model(MODEL, warehouse.engine), f"the roll-up on {request.param}")


@settings(derandomize=True, max_examples=150, deadline=None)
@example(data=CIOS_DISAGREE)
@example(data=DIRECTORS_TIE)
@example(data=CODES_TIE)
@given(data=datasets())
def test_the_model_rolls_up_cities_by_the_documented_rule(rollup_model: ModelRun, data: Dataset) -> None:
    warehouse = rollup_model.warehouse
    warehouse.replace("stg_survey__cities_surveyed", data.surveyed)
    warehouse.replace("stg_survey__respondents", data.respondents)
    warehouse.replace("stg_survey__answers", data.answers)
    found = {
        (r["wave_year"], r["municipality_code"]): (
            r["has_responded"],
            r["responsibility_code"],
            r["rollup_method"],
            int(r["respondents_answered"]),
            int(r["key_respondents_answered"]),
            int(r["respondents_agreeing"]),
            r["is_contested"],
            r["key_respondents_disagree"],
        )
        for r in rollup_model.run()
    }
    expected = roll_up(data)
    for _, answer, method, *_ in expected.values():
        event(method if answer not in COLLATION_PROBES else f"{method}, an answer not in the list")
    assert found == expected
    assert {row[2] for row in found.values()} <= set(ROLLUP_METHODS)


def test_the_worked_examples_are_decided_as_the_docs_say() -> None:
    """The two cities the property test always runs, with the answers written out."""
    assert roll_up(CIOS_DISAGREE)[(2019, "837")][1:3] == ("city_leadership", "majority")
    assert roll_up(CIOS_DISAGREE)[(2019, "837")][7] is True  # the key respondents disagree
    assert roll_up(DIRECTORS_TIE)[(2018, "743")][1:3] == ("city_leadership", "tie_broken_by_submission_time")
