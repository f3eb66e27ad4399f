"""fct_answer_corrections through a wave's history of loads, made by the loader itself on a copy of the main job's
warehouse and published one after the other (2019):

1. a re-delivery: Helsinki's key respondent corrects their answer (the city's result changes with it);
2. the same file read again after an unrelated alias was added to the codebook;
3. a re-delivery that corrects only Helsinki's key respondent's job title, which takes the key role away;
4. a re-delivery that corrects one respondent's e-mail address (the same person, the same answers);
5. the same file read again under a codebook that maps an answer label to another option.

The marts are built by `dbt run` on that warehouse. Each step is reported as what it is, a correction survives later
steps, a change in a city's result is on the city's row with the responsibility before and after and why, a new key
is the same person, and every change in the count of cities per responsibility is accounted for by the changes of
cities' results. The models then run on PostgreSQL (and PostgreSQL with an en-US collation) from the same inputs and
give the same rows.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from itertools import pairwise
from pathlib import Path
from types import SimpleNamespace

import duckdb
import jinja2
import pytest
from conftest import ROOT, PipelineRun, copy_state, current_loads, lines_2019, use_paths
from test_rollup_rule import DATABASES, open_warehouse

from survey_warehouse.intake.codebook import Codebook
from survey_warehouse.intake.matching import match_key
from survey_warehouse.intake.waves import WaveSpec
from survey_warehouse.orchestration import runtime
from survey_warehouse.raw.load import load_wave
from survey_warehouse.raw.registry import mark_load
from survey_warehouse.settings import Paths

DBT = ROOT / "dbt_project"
LEAD = "Q1 Kuka vastaa ensisijaisesti digitalisaation johtamisesta?"
HELSINKI = "091"
REMAPPED = "Toimialajohtajat"  # a 2019 lead label no Helsinki respondent gave
# the models between staging and the mart, in the order they are built; the last two are compared
MODELS = (
    "int_load_steps",
    "int_city_responsibilities_by_load",
    "int_load_step_respondents",
    "int_load_step_answer_changes",
    "int_city_responsibility_changes",
    "fct_answer_corrections",
)


@dataclass
class History:
    paths: Paths
    loads: list[str]  # 2019's loads, oldest first: the main job's, then one per step
    corrected_key: tuple[str, str]  # the respondent whose e-mail address was corrected: key before, key after
    remapped: int  # respondents whose lead answer the label mapped to another option in step 5


class File:
    """The 2019 file as rows of cells, changed one correction at a time."""

    def __init__(self) -> None:
        lines = lines_2019()
        self.header = lines[0].split(",")
        self.rows = [line.split(",") for line in lines[1:]]
        self.codebook = Codebook.from_seeds(DBT / "seeds")

    def col(self, name: str) -> int:
        return self.header.index(name)

    def helsinki_cio(self) -> list[str]:
        key_roles = {
            a.label_key
            for a in self.codebook.answers
            if a.wave_year == 2019 and a.question_id == "respondent_role" and a.answer_code in self.codebook.key_roles
        }
        (row,) = [
            r
            for r in self.rows
            if self.codebook.city_aliases.get(match_key(r[self.col("Organisaatio")])) == HELSINKI
            and match_key(r[self.col("Asema")]) in key_roles
        ]
        return row

    def write(self, path: Path) -> Path:
        path.write_text("\n".join(",".join(r) for r in [self.header, *self.rows]) + "\n", encoding="utf-8-sig")
        return path


def _load(paths: Paths, spec: WaveSpec, codebook: Codebook) -> str:
    result = load_wave(spec, paths.warehouse, codebook, paths)
    assert not result.unchanged
    mark_load(paths.warehouse, result.load_id, True, "published in the test")
    return result.load_id


def _key(paths: Paths, load_id: str, email: str) -> str:
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        (key,) = con.execute(
            "select resolved_value from raw.cell_resolutions where load_id = ? and field_id = 'respondent_email' "
            "and cell_value = ?",
            [load_id, email],
        ).fetchone()
    return key


def _dbt_run(paths: Paths) -> None:
    log = paths.var / "dbt_run.log"
    code = runtime._run(
        [
            runtime._bin("dbt"),
            "run",
            "--select",
            "+fct_answer_corrections",
            "+fct_city_responsibility",
            "--profiles-dir",
            str(DBT),
            "--project-dir",
            str(DBT),
            "--target-path",
            str(paths.var / "target"),
        ],
        runtime.runtime_env(paths),
        log,
        DBT,
    )
    assert code == 0, log.read_text()[-3000:]


@pytest.fixture(scope="module")
def history(pipeline_run: PipelineRun) -> Iterator[History]:
    paths = copy_state(pipeline_run, "corrections")
    with pytest.MonkeyPatch.context() as patch:
        use_paths(patch, paths)
        spec = WaveSpec.from_file(ROOT / "config" / "waves" / "2019.yml", ROOT)
        file = File()
        codebook = file.codebook
        loads = [current_loads(paths)[2019]]

        # 1. Helsinki's key respondent corrects their answer
        cio = file.helsinki_cio()
        assert cio[file.col(LEAD)] == "Digijohtaja (CDO)"
        cio[file.col(LEAD)] = "Tietohallinto"
        corrected = replace(spec, file=file.write(paths.var / "corrected_1.csv"))
        loads.append(_load(paths, corrected, codebook))

        # 2. the same file under a codebook with one more (unrelated) alias
        seeds = paths.var / "seeds"
        shutil.copytree(DBT / "seeds", seeds)
        with open(seeds / "city_aliases.csv", "a", encoding="utf-8") as aliases:
            aliases.write("tampereen kaupunkikonserni,837,organisation_fi\n")
        loads.append(_load(paths, corrected, Codebook.from_seeds(seeds)))

        # 3. Helsinki's key respondent's job title corrected: no longer the key role
        cio[file.col("Asema")] = "Muu johtotehtävä"
        loads.append(_load(paths, replace(spec, file=file.write(paths.var / "corrected_3.csv")), codebook))

        # 4. one respondent's e-mail address corrected, nothing else
        row = next(r for r in file.rows if r is not cio)
        before = row[file.col("Email")]
        row[file.col("Email")] = "corrected." + before
        loads.append(_load(paths, replace(spec, file=file.write(paths.var / "corrected_4.csv")), codebook))

        # 5. the same file under a codebook that maps a lead label of 2019 to another option
        seeds = paths.var / "seeds_remapped"
        shutil.copytree(DBT / "seeds", seeds)
        answers = (seeds / "codebook_answers.csv").read_text(encoding="utf-8")
        label = f"2019,lead,{REMAPPED},sector_directors,,Business-line (sector) directors,2"
        assert label in answers
        remapped = answers.replace(label, f"2019,lead,{REMAPPED},city_leadership,,City leadership,3")
        (seeds / "codebook_answers.csv").write_text(remapped, encoding="utf-8")
        current = replace(spec, file=paths.var / "corrected_4.csv")
        loads.append(_load(paths, current, Codebook.from_seeds(seeds)))

        _dbt_run(paths)
        keys = (_key(paths, loads[3], before), _key(paths, loads[4], row[file.col("Email")]))
        yield History(paths, loads, keys, sum(r[file.col(LEAD)] == REMAPPED for r in file.rows))


def _rows(paths: Paths, sql: str, params: list | None = None) -> list[dict]:
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        cur = con.execute(sql, params or [])
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def _changes(history: History, step: int) -> list[dict]:
    """The mart's rows of step `step` (1-4): the answers history.loads[step] changed."""
    return _rows(
        history.paths,
        "select * from marts.fct_answer_corrections where load_id = ? order by change_type, question_id",
        [history.loads[step]],
    )


def _city_changes(history: History, step: int) -> list[dict]:
    """The cities whose result step `step` changed."""
    return _rows(
        history.paths,
        "select * from intermediate.int_city_responsibility_changes where load_id = ? order by municipality_code",
        [history.loads[step]],
    )


def test_each_step_is_compared_with_the_load_before_it_and_named_for_what_made_it(history: History) -> None:
    steps = _rows(
        history.paths,
        "select load_id, previous_load_id, correction_kind, is_codebook_changed from intermediate.int_load_steps "
        "where wave_year = 2019 order by loaded_at",
    )
    assert [(s["previous_load_id"], s["load_id"]) for s in steps] == list(pairwise(history.loads))
    assert [(s["correction_kind"], s["is_codebook_changed"]) for s in steps] == [
        ("redelivery", False),
        ("codebook", True),
        ("redelivery", True),  # read under the project's codebook again, without the added alias
        ("redelivery", False),
        ("codebook", True),
    ]


def test_a_corrected_answer_stays_reported_after_the_codebook_reads_the_file_again(history: History) -> None:
    (first,) = _changes(history, 1)
    assert (first["change_type"], first["municipality_code"], first["question_id"]) == ("changed", HELSINKI, "lead")
    assert (first["previous_answer_code"], first["current_answer_code"]) == ("chief_digital_officer", "it_management")
    assert (first["correction_kind"], first["is_current_load"]) == ("redelivery", False)
    (city,) = _city_changes(history, 1)
    assert (city["municipality_code"], city["previous_responsibility_code"], city["responsibility_code"]) == (
        HELSINKI,
        "chief_digital_officer",
        "it_management",
    )
    assert city["change_reasons"] == "lead_answer_changed"
    assert _changes(history, 2) == [] and _city_changes(history, 2) == [], "an alias no respondent typed"


def test_a_corrected_job_title_that_moves_a_city_shows_on_the_citys_row_with_before_after_and_why(
    history: History,
) -> None:
    assert _changes(history, 3) == [], "no answer changed"
    (city,) = _rows(
        history.paths,
        "select * from marts.fct_city_responsibility where wave_year = 2019 and municipality_code = ?",
        [HELSINKI],
    )
    assert city["responsibility_code"] != "it_management"
    assert (
        city["corrected_by_load_id"],
        city["correction_kind"],
        city["responded_before_correction"],
        city["responsibility_code_before_correction"],
        city["correction_reasons"],
    ) == (history.loads[3], "redelivery", True, "it_management", "role_changed")
    unchanged = _rows(
        history.paths,
        "select count(*) as n from marts.fct_city_responsibility where corrected_by_load_id is null "
        "and (correction_kind is not null or responsibility_code_before_correction is not null "
        "or correction_reasons is not null)",
    )
    assert unchanged == [{"n": 0}]


def test_a_corrected_email_address_is_the_same_respondent_under_a_new_key_not_a_withdrawal(history: History) -> None:
    fourth = _changes(history, 4)
    assert [(r["change_type"], r["question_id"]) for r in fourth] == [("key_changed", "respondent_key")]
    (row,) = fourth
    assert (row["previous_respondent_key"], row["respondent_key"]) == history.corrected_key
    assert row["previous_respondent_key"] != row["respondent_key"]
    assert not row["is_accepted_removal"]


def test_a_codebook_change_that_changes_answers_and_cities_is_reported_as_a_codebook_change(history: History) -> None:
    fifth = _changes(history, 5)
    assert len(fifth) == history.remapped > 0, "every answer the label gave"
    assert {
        (r["change_type"], r["question_id"], r["previous_answer_code"], r["current_answer_code"], r["correction_kind"])
        for r in fifth
    } == {("changed", "lead", "sector_directors", "city_leadership", "codebook")}
    assert {(r["is_codebook_changed"], r["is_current_load"]) for r in fifth} == {(True, True)}
    cities = _city_changes(history, 5)
    assert cities, "a city whose key respondent gave the label changes with it"
    assert {(c["correction_kind"], c["change_reasons"]) for c in cities} <= {("codebook", "lead_answer_changed")}
    assert {c["municipality_code"] for c in cities} <= {r["municipality_code"] for r in fifth}
    rows = _rows(
        history.paths,
        "select municipality_code, corrected_by_load_id, correction_kind from marts.fct_city_responsibility "
        "where wave_year = 2019 and corrected_by_load_id = ?",
        [history.loads[5]],
    )
    assert {(r["municipality_code"], r["correction_kind"]) for r in rows} == {
        (c["municipality_code"], "codebook") for c in cities
    }


def test_every_change_in_the_cities_per_responsibility_is_a_city_row(history: History) -> None:
    """Per step and option, the change in the number of cities the roll-up gives it (the shares' counts) equals
    the cities whose change moved them to it minus those moved away from it."""
    counts = _rows(
        history.paths,
        "select load_id, coalesce(responsibility_code, '(none)') as code, count(*) as cities "
        "from intermediate.int_city_responsibilities_by_load group by 1, 2",
    )
    per_load: dict[str, Counter] = {}
    for r in counts:
        per_load.setdefault(r["load_id"], Counter())[r["code"]] = r["cities"]
    for step in range(1, len(history.loads)):
        moved: Counter = Counter()
        for r in _city_changes(history, step):
            moved[r["responsibility_code"] or "(none)"] += 1
            moved[r["previous_responsibility_code"] or "(none)"] -= 1
        difference = Counter(per_load[history.loads[step]])
        difference.subtract(per_load[history.loads[step - 1]])
        assert {k: v for k, v in difference.items() if v} == {k: v for k, v in moved.items() if v}, step
    # the title's correction took Helsinki out of the IT-led count
    assert per_load[history.loads[3]]["it_management"] == per_load[history.loads[2]]["it_management"] - 1


# ------------------------------------------------------------------------------ the same models on PostgreSQL

# the relations the models read, as the warehouse has them (dbt's ref and source name them)
INPUTS = {
    "stg_survey__loads": "staging.stg_survey__loads",
    "stg_survey__respondents": "staging.stg_survey__respondents",
    "stg_survey__answers": "staging.stg_survey__answers",
    "respondent_roles": "reference.respondent_roles",
    "responsibilities": "reference.responsibilities",
    "load_registry": "raw.load_registry",
    "wave_cities_surveyed": "raw.wave_cities_surveyed",
}
TYPES = {
    "VARCHAR": "text",
    "INTEGER": "integer",
    "BIGINT": "bigint",
    "DOUBLE": "double precision",
    "BOOLEAN": "boolean",
    "DATE": "date",
    "TIMESTAMP": "timestamp",
    "JSON": "text",
}


def render(model: Path, engine: str) -> str:
    """A model's SQL as dbt compiles it for `engine`, with the project's macros; ref('x') and source(_, 'x') as x."""
    env = jinja2.Environment(extensions=["jinja2.ext.do"], undefined=jinja2.StrictUndefined)  # noqa: S701
    context: dict[str, object] = {
        "ref": lambda name: name,
        "source": lambda _schema, name: name,
        "target": SimpleNamespace(type=engine),
    }
    for file in sorted((DBT / "macros").glob("*.sql")):
        module = env.from_string(file.read_text(encoding="utf-8"), globals=context).module
        context.update({k: v for k, v in vars(module).items() if isinstance(v, jinja2.runtime.Macro)})
    return env.from_string(model.read_text(encoding="utf-8"), globals=context).render()


def _model(name: str) -> Path:
    (path,) = (DBT / "models").rglob(f"{name}.sql")
    return path


def _comparable(rows: list[dict]) -> list[tuple]:
    return sorted((tuple(sorted(r.items())) for r in rows), key=repr)


@pytest.mark.parametrize("database", list(DATABASES))
def test_the_models_give_the_same_rows_on_every_engine(history: History, database: str) -> None:
    compared = {"marts.fct_answer_corrections", "intermediate.int_city_responsibility_changes"}
    with duckdb.connect(str(history.paths.warehouse), read_only=True) as con:
        inputs = {}
        for table, relation in INPUTS.items():
            cur = con.execute(f"select * from {relation}")
            columns = [(d[0], str(d[1])) for d in cur.description]
            inputs[table] = (columns, cur.fetchall())
        expected = {}
        for relation in compared:
            cur = con.execute(f"select * from {relation}")
            names = [d[0] for d in cur.description]
            expected[relation.split(".")[1]] = _comparable([dict(zip(names, r, strict=True)) for r in cur.fetchall()])
    assert {dict(r)["change_type"] for r in expected["fct_answer_corrections"]} >= {"changed", "key_changed"}
    assert expected["int_city_responsibility_changes"]
    with open_warehouse(database, "corrections") as warehouse:
        for table, (columns, rows) in inputs.items():
            warehouse.create({table: ", ".join(f'"{c}" {TYPES[t]}' for c, t in columns)})
            warehouse.replace(table, rows)
        for name in MODELS:
            warehouse._execute(f"create table {name} as {render(_model(name), warehouse.engine)}")
        found = {name: _comparable(warehouse.query(f"select * from {name}")) for name in expected}
    assert found == expected
