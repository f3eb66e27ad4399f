"""The data each gate validates, as SQL that runs on either warehouse.

On DuckDB the batches become Parquet snapshots under var/quality/batches (GX's SQL path does not work on DuckDB),
so a failed gate can be inspected afterwards; on PostgreSQL they are query assets that run inside the database.
Batches hold no personal data: respondents appear as their pseudonyms, names and free text are left out.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from survey_warehouse.intake.codebook import Codebook
from survey_warehouse.intake.waves import WaveSpec
from survey_warehouse.settings import Paths, max_quarantined_share
from survey_warehouse.warehouse import Session, Warehouse, as_warehouse, connect_readonly

if TYPE_CHECKING:
    import pandas as pd

# A load may keep fewer accepted rows than the load it replaces only down to this share, unless removals are
# accepted in the wave spec (accept_removals).
MIN_ACCEPTED_RATIO = 0.9


def sql_text(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _identifier(name: str) -> str:
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ValueError(f"not a field id: {name!r}")
    return f'"{name}"'


# a cell's load and field are those of its column (raw.survey_columns, k)
ACCEPTED_CELLS = """
select c.source_row_number, k.field_id, r.match_key, r.resolved_value, r.resolved_number
from raw.survey_cells c
join raw.survey_columns k on k.column_id = c.column_id
left join raw.cell_resolutions r
    on r.load_id = k.load_id and r.field_id = k.field_id and r.cell_value = c.cell_value
where k.load_id = {load} and k.field_id is not null
    and not exists (select 1 from raw.quarantine q where q.load_id = k.load_id
                    and q.source_row_number = c.source_row_number)
"""

RESPONDENTS = """
select k.load_id, c.source_row_number,
    max(case when k.field_id = 'respondent_email' then r.resolved_value end) as respondent_key,
    max(case when k.field_id = 'city' then r.resolved_value end) as municipality_code
from raw.survey_cells c
join raw.survey_columns k on k.column_id = c.column_id
left join raw.cell_resolutions r
    on r.load_id = k.load_id and r.field_id = k.field_id and r.cell_value = c.cell_value
where k.load_id in ({loads}) and k.field_id in ('respondent_email', 'city')
    and not exists (select 1 from raw.quarantine q where q.load_id = k.load_id
                    and q.source_row_number = c.source_row_number)
group by k.load_id, c.source_row_number
"""


def raw_wave_query(spec: WaveSpec, codebook: Codebook, load_id: str) -> str:
    """One row per accepted row of the load: its pseudonym, city, and per question the resolved answer code, or
    '<unresolved> ' and the match key when the value did not resolve (which no expectation admits)."""
    questions = codebook.questions_for(spec.wave_year)
    columns = [
        "max(case when field_id = 'respondent_email' then resolved_value end) as respondent_ref",
        "max(case when field_id = 'city' then coalesce(resolved_value, '<unresolved> ' || match_key) end) as city",
    ]
    for field_id in spec.columns.values():
        if field_id in questions:
            code = "coalesce(resolved_value, '<unresolved> ' || match_key)"
            columns.append(f"max(case when field_id = {sql_text(field_id)} then {code} end) as {_identifier(field_id)}")
            if questions[field_id].is_scale:
                columns.append(
                    f"max(case when field_id = {sql_text(field_id)} then resolved_number end) "
                    f"as {_identifier(field_id + '__value')}"
                )
    return (
        f"select source_row_number, {', '.join(columns)} from ({ACCEPTED_CELLS.format(load=sql_text(load_id))}) "
        "as cells group by source_row_number"
    )


def as_select(query: str) -> str:
    """GX's SQL query assets take a query that starts with SELECT."""
    return f"select * from ({query.strip()}) as batch"


def raw_load_query(load_id: str) -> str:
    """One row for the load as a whole: every row accounted for, the quarantined share, and what it would drop
    of the current load of its wave (respondents by pseudonym, cities), less the removals the spec accepted."""
    load = sql_text(load_id)
    return f"""
with this as (
    select load_id, wave_year, row_count, coalesce(accepted_removals, '') as accepted_removals
    from raw.load_registry where load_id = {load}
),
current_load as (
    select r.load_id from raw.load_registry r join this on r.wave_year = this.wave_year
    where r.is_current and r.load_id <> this.load_id
),
accepted as (
    select count(distinct c.source_row_number) as n
    from raw.survey_cells c join raw.survey_columns k on k.column_id = c.column_id
    where k.load_id = {load} and not exists (select 1 from raw.quarantine q where q.load_id = k.load_id
                                              and q.source_row_number = c.source_row_number)
),
quarantined as (
    select count(distinct source_row_number) as n from raw.quarantine where load_id = {load}
),
respondents as ({RESPONDENTS.format(loads=f"{load}, (select load_id from current_load)")}),
before as (select * from respondents where load_id = (select load_id from current_load)),
after as (select * from respondents where load_id = {load}),
removed as (
    select before.respondent_key, before.municipality_code,
        position(',r-' || substr(before.respondent_key, 1, 8) || ',' in ',' || this.accepted_removals || ',') > 0
        or position(',' || before.municipality_code || ',' in ',' || this.accepted_removals || ',') > 0
            as is_accepted
    from before cross join this
    where before.respondent_key not in (select respondent_key from after where respondent_key is not null)
),
removed_cities as (
    select before.municipality_code,
        position(',' || before.municipality_code || ',' in ',' || this.accepted_removals || ',') > 0 as is_accepted
    from before cross join this
    where before.municipality_code not in (select municipality_code from after
                                           where municipality_code is not null)
    group by before.municipality_code, this.accepted_removals
)
select this.load_id, this.wave_year, this.row_count,
    cast(null as integer) as source_row_number,  -- the load as a whole has no row (the batches share the column)
    accepted.n as accepted_rows,
    quarantined.n as quarantined_rows,
    accepted.n + quarantined.n as accounted_rows,
    cast(quarantined.n as double precision) / nullif(this.row_count, 0) as quarantined_share,
    (select count(*) from before) as current_respondents,
    (select count(*) from removed where not is_accepted) as respondents_removed,
    (select count(*) from removed where is_accepted) as removals_accepted,
    (select count(*) from removed_cities where not is_accepted) as cities_removed,
    case when (select count(*) from before) = 0 then 1.0
         else cast(accepted.n + (select count(*) from removed where is_accepted) as double precision)
              / (select count(*) from before) end as accepted_ratio
from this cross join accepted cross join quarantined
"""


def removal_summary(target: Warehouse | Path, load_id: str, limit: int = 20) -> str:
    """What a load would drop of its wave's current load, for the rejection message: respondents and cities."""
    with Session(as_warehouse(target), read_only=True) as session:
        found = session.execute(
            f"select respondents_removed, cities_removed, removals_accepted, accepted_ratio, current_respondents "
            f"from ({raw_load_query(load_id)}) as load_check"
        ).fetchone()
        if found is None:
            return ""
        removed, cities, accepted, ratio, current = found
        if not (removed or cities) and ratio >= MIN_ACCEPTED_RATIO:
            return ""
        load = sql_text(load_id)
        rows = session.execute(
            f"""
            with this as (select wave_year, coalesce(accepted_removals, '') as accepted_removals
                          from raw.load_registry where load_id = {load}),
            current_load as (select r.load_id, r.file_name from raw.load_registry r join this using (wave_year)
                             where r.is_current and r.load_id <> {load}),
            respondents as ({RESPONDENTS.format(loads=f"{load}, (select load_id from current_load)")})
            select 'r-' || substr(b.respondent_key, 1, 8), b.municipality_code, b.source_row_number,
                   (select file_name from current_load)
            from respondents b cross join this
            where b.load_id = (select load_id from current_load)
              and b.respondent_key not in (select respondent_key from respondents where load_id = {load}
                                           and respondent_key is not null)
              and position(',r-' || substr(b.respondent_key, 1, 8) || ',' in ',' || this.accepted_removals || ',')
                  = 0
              and position(',' || b.municipality_code || ',' in ',' || this.accepted_removals || ',') = 0
            order by b.source_row_number limit {int(limit)}
            """
        ).fetchall()
    lines = [
        f"this load would drop {removed} of the {current} respondents and {cities} of the cities the current "
        f"load has ({accepted} removals accepted):"
    ]
    lines += [f"  respondent {ref} (city {city}, row {row} of {file})" for ref, city, row, file in rows]
    lines.append(
        "  If these are genuine withdrawals, list them under accept_removals in the wave spec (respondent "
        "references or municipality codes) and run the wave again; otherwise ask for the complete file."
    )
    return "\n".join(lines)


def quarantine_summary(target: Warehouse | Path, load_id: str, limit: int = 10) -> str:
    """The quarantined rows of a load, by reason, with the first messages: for the gate's message."""
    with Session(as_warehouse(target), read_only=True) as session:
        found = session.execute(
            "select row_count, quarantined_count from raw.load_registry where load_id = ?", [load_id]
        ).fetchone()
        if found is None:
            return f"no load {load_id} in raw.load_registry"
        rows, quarantined = found
        reasons = session.execute(
            "select reason_code, count(distinct source_row_number) from raw.quarantine "
            "where load_id = ? group by reason_code order by 2 desc, 1",
            [load_id],
        ).fetchall()
        messages = [
            r[0]
            for r in session.execute(
                "select message from raw.quarantine where load_id = ? order by source_row_number, source_column "
                "limit ?",
                [load_id, limit],
            ).fetchall()
        ]
    if not reasons:
        return f"all {rows} rows accepted, none quarantined"
    share = (quarantined or 0) / rows if rows else 0
    lines = [
        f"{quarantined} of {rows} rows ({share:.1%}) quarantined (at most {max_quarantined_share():.0%} "
        "may be): " + ", ".join(f"{reason} {n}" for reason, n in reasons)
    ]
    lines += [f"  {m}" for m in messages]
    return "\n".join(lines)


def raw_wave_parameters(spec: WaveSpec, codebook: Codebook) -> dict[str, object]:
    surveyed = len(spec.cities_surveyed)
    return {
        "max_quarantined_share": max_quarantined_share(),
        "min_accepted_ratio": MIN_ACCEPTED_RATIO,
        "min_rows": max(1, surveyed // 2),
        "max_rows": max(surveyed, 1) * 10,
        "surveyed_cities": list(spec.cities_surveyed),
        "required_columns": [
            "source_row_number",
            "respondent_ref",
            "city",
            *(f for f in spec.columns.values() if f in codebook.questions_for(spec.wave_year)),
        ],
    }


def question_parameters(spec: WaveSpec, codebook: Codebook) -> list[dict[str, object]]:
    """Per question the wave spec maps, what the raw gate admits: the codebook's codes, and on a scale its points,
    the whole numbers from scale_min to scale_max (`score_N`), as the loader resolves them."""
    import math

    questions = codebook.questions_for(spec.wave_year)
    out = []
    for field_id in spec.columns.values():
        question = questions.get(field_id)
        if question is None:
            continue
        codes = {a.answer_code for a in codebook.answers if a.wave_year == spec.wave_year and a.question_id == field_id}
        if question.is_scale and question.scale_min is not None and question.scale_max is not None:
            points = range(math.ceil(question.scale_min), math.floor(question.scale_max) + 1)
            codes |= {f"score_{n}" for n in points}
        out.append(
            {
                "id": field_id,
                "column": field_id,
                "answer_codes": sorted(codes),
                "is_scale": question.is_scale,
                "value_column": f"{field_id}__value",
                "scale_min": question.scale_min,
                "scale_max": question.scale_max,
            }
        )
    return out


# ------------------------------------------------------------------------------------------ marts


def project_marts(dbt_project: Path) -> list[str]:
    """The marts the dbt project defines: every model of models/marts, by name."""
    return sorted(p.stem for p in (dbt_project / "models" / "marts").glob("*.sql"))


def mart_tables(warehouse: Warehouse, schema: str | None = None, dbt_project: Path | None = None) -> list[str]:
    """The marts dbt built (every model of models/marts), in the schema they were built in. A table the project no
    longer defines (a model removed or renamed) is not a mart; a mart the schema lacks is an error."""
    from survey_warehouse.errors import SurveyWarehouseError
    from survey_warehouse.settings import get_paths

    schema = schema or warehouse.marts_build_schema
    wanted = project_marts(dbt_project or get_paths().dbt_project)
    with Session(warehouse, read_only=True) as session:
        present = {
            r[0]
            for r in session.execute(
                "select table_name from information_schema.tables where table_schema = ?", [schema]
            ).fetchall()
        }
    missing = [t for t in wanted if t not in present]
    if missing:
        raise SurveyWarehouseError(
            f"the marts {', '.join(missing)} of dbt_project/models/marts are not in the schema {schema}: "
            "the dbt build did not make them"
        )
    return wanted


def load_reconciliation_query(marts_schema: str) -> str:
    """Per load the marts are built from: rows in the file = respondents staging kept + rows quarantined."""
    return """
select l.load_id, l.wave_year, l.raw_row_count as row_count,
    coalesce(a.n, 0) as accepted_rows, coalesce(q.n, 0) as quarantined_rows,
    coalesce(a.n, 0) + coalesce(q.n, 0) as accounted_rows
from staging.stg_survey__loads l
left join (select load_id, count(*) as n from staging.stg_survey__respondents group by load_id) a
    on a.load_id = l.load_id
left join (select load_id, count(distinct source_row_number) as n from raw.quarantine group by load_id) q
    on q.load_id = l.load_id
where l.is_current_load
"""


def marts_queries(warehouse: Warehouse, tables: list[str]) -> dict[str, str]:
    """The derived mart batches as SQL over the schema the marts were just built in."""
    schema = warehouse.marts_build_schema
    with Session(warehouse, read_only=True) as session:
        columns = session.execute(
            "select table_name, column_name, data_type from information_schema.columns where table_schema = ? "
            "order by table_name, ordinal_position",
            [schema],
        ).fetchall()
    parts = []
    for table, column, data_type in columns:
        if table not in tables:
            continue
        text = data_type.lower() in ("character varying", "text", "varchar")
        value = f'cast("{column}" as varchar)' if text else "''"
        parts.append(
            f"select distinct {sql_text(table)} as table_name, {sql_text(column)} as column_name, "
            f'{value} as value from "{schema}"."{table}"'
        )
    return {
        "load_reconciliation": load_reconciliation_query(schema),
        "responsibility_share_totals": f'select wave_year, sum(share) as total_share from "{schema}".'
        '"fct_responsibility_shares" group by wave_year',
        "marts_text_values": "\nunion all\n".join(parts),
    }


# The loads the marts are built from, read from the load registry rather than through dbt: those the build in
# progress recorded (raw.build_loads of the one `building` row of raw.builds), or with no build in progress the
# current ones.
BUILD_LOADS = """
select b.load_id, b.wave_year from raw.build_loads b
join raw.builds u on u.build_id = b.build_id where u.status = 'building'
union all
select l.load_id, l.wave_year from raw.load_registry l
where l.is_current and not exists (select 1 from raw.builds where status = 'building')
"""


def answers_query(loads: str, codebook: Codebook, waves: list[int]) -> str:
    """The answers of some loads (`loads`: a query of load ids) as the loader resolved them: per accepted row and
    question of its wave (the codebook's questions, not the respondent's particulars such as the job title), the
    answer code and the respondent's pseudonym."""
    from survey_warehouse.intake.codebook import STRUCTURAL_FIELDS

    asked = []
    for wave in waves:
        questions = sorted(q for q in codebook.questions_for(wave) if q not in STRUCTURAL_FIELDS)
        if questions:
            asked.append(f"(k.wave_year = {int(wave)} and k.field_id in ({', '.join(map(sql_text, questions))}))")
    return f"""
select k.load_id, k.wave_year, k.field_id as question_id, r.resolved_value as answer_code, p.respondent_key
from raw.survey_cells c
join raw.survey_columns k on k.column_id = c.column_id
join raw.cell_resolutions r on r.load_id = k.load_id and r.field_id = k.field_id and r.cell_value = c.cell_value
join (
    select k.load_id, c.source_row_number, r.resolved_value as respondent_key
    from raw.survey_cells c
    join raw.survey_columns k on k.column_id = c.column_id
    join raw.cell_resolutions r on r.load_id = k.load_id and r.field_id = k.field_id and r.cell_value = c.cell_value
    where k.field_id = 'respondent_email' and k.load_id in ({loads})
) p on p.load_id = k.load_id and p.source_row_number = c.source_row_number
where k.load_id in ({loads}) and r.resolved_value is not null and ({" or ".join(asked) or "false"})
    and not exists (select 1 from raw.quarantine q where q.load_id = k.load_id
                    and q.source_row_number = c.source_row_number)
"""


# the loads the marts were ever published from: those of every published build (also withdrawn since)
PUBLISHED_LOADS = """
select build_loads.load_id from raw.build_loads as build_loads
inner join raw.builds as builds on build_loads.build_id = builds.build_id
where builds.status = 'published'
"""


def corrections_query(codebook: Codebook, waves: list[int]) -> str:
    """How many answers differ between each wave's load in the build and the load it replaces (the wave's latest
    load outside the build that the marts were published from, withdrawn since or not): changed, added or
    removed."""
    build = f"select load_id from ({BUILD_LOADS}) as build"
    previous = f"""
select load_id, wave_year from (
    select load_id, wave_year, row_number() over (partition by wave_year order by loaded_at desc) as recency
    from raw.load_registry
    where (status in ('passed', 'superseded') or load_id in ({PUBLISHED_LOADS}))
        and load_id not in ({build})
        and wave_year in (select wave_year from ({BUILD_LOADS}) as build)
) as published_before
where recency = 1
"""
    return f"""
with current_answers as (
    select * from ({answers_query(build, codebook, waves)}) as a
    where a.wave_year in (select wave_year from ({previous}) as previous_loads)
),
previous_answers as ({answers_query(f"select load_id from ({previous}) as previous_loads", codebook, waves)})
select count(*) from current_answers c
full outer join previous_answers p
    on c.wave_year = p.wave_year and c.respondent_key = p.respondent_key and c.question_id = p.question_id
where c.answer_code is distinct from p.answer_code
"""


def _seed_rows(dbt_project: Path, seed: str) -> int:
    import csv

    with open(dbt_project / "seeds" / f"{seed}.csv", encoding="utf-8", newline="") as f:
        return sum(1 for _ in csv.DictReader(f))


def marts_parameters(warehouse: Warehouse, dbt_project: Path) -> dict[str, int]:
    """The rows each mart must have, counted from sources outside the marts' own lineage: the loads the build
    recorded in the load registry, the cities those loads surveyed, their answers as the loader resolved them,
    and the seed files."""
    from survey_warehouse.intake.codebook import STRUCTURAL_FIELDS

    codebook = Codebook.from_seeds(dbt_project / "seeds")
    build = f"select load_id from ({BUILD_LOADS}) as build"
    with Session(warehouse, read_only=True) as session:
        found_waves = session.execute(f"select wave_year from ({BUILD_LOADS}) as build").fetchall()
        waves = sorted({int(r[0]) for r in found_waves})
        found = session.execute(
            f"""select
                (select count(*) from (select distinct wave_year, municipality_code from raw.wave_cities_surveyed
                                       where load_id in ({build})) as surveyed),
                (select count(*) from ({answers_query(build, codebook, waves)}) as answers),
                ({corrections_query(codebook, waves)})"""
        ).fetchone()
    surveyed, answers, corrections = found if found else (0, 0, 0)
    offered = {(a.wave_year, a.answer_code) for a in codebook.answers if a.question_id == "lead"}
    return {
        "waves": len(waves),
        "surveyed_city_waves": int(surveyed),
        "answers": int(answers),
        # the corrections mart links a respondent whose key changed with identical answers into one row, so raw's
        # count of differing answers is its most; any difference at all means at least one row
        "answer_corrections_max": int(corrections),
        "answer_corrections_min": min(int(corrections), 1),
        "responsibility_options": sum(1 for wave, _code in offered if wave in waves),
        "question_waves": sum(1 for _wave, question in codebook.questions if question not in STRUCTURAL_FIELDS),
        "responsibilities": _seed_rows(dbt_project, "responsibilities"),
        "city_periods": _seed_rows(dbt_project, "cities"),
        "city_population_years": _seed_rows(dbt_project, "city_populations"),
    }


def query_columns(warehouse: Warehouse, query: str) -> list[str]:
    """The columns a query returns (its batch's columns), without reading its rows."""
    with Session(warehouse, read_only=True) as session:
        return [str(c) for c in session.execute(f"select * from ({query}) as batch limit 0").df().columns]


def duckdb_frame(path: Path, query: str) -> pd.DataFrame:
    with connect_readonly(path) as con:
        return con.execute(query).df()


def write_snapshot(frame: pd.DataFrame, paths: Paths, dataset: str, batch_name: str) -> Path:
    path = paths.var / "quality" / "batches" / dataset / f"{batch_name}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)
    return path
