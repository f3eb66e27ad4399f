"""The raw layer's tables: the cells as delivered, what their values resolved to, the quarantine, the load registry
and the builds. Every step that writes or reads raw makes them first (`ensure_raw_schema`); a warehouse made by an
earlier version is brought to this layout in place."""

from __future__ import annotations

import logging

from survey_warehouse.warehouse import Session

log = logging.getLogger(__name__)


RAW_DDL = """
create schema if not exists raw;
create table if not exists raw.load_registry (
    load_id varchar primary key,
    wave_year integer not null,
    file_name varchar not null,
    file_sha256 varchar,
    row_count integer not null,          -- data rows in the file = accepted_count + quarantined_count
    accepted_count integer,
    quarantined_count integer,
    loaded_at timestamp not null,
    status varchar not null,             -- pending | candidate | passed | superseded | failed | withdrawn
    status_at timestamp not null,
    status_message varchar,
    is_current boolean not null default false,
    questionnaire_version varchar not null,
    field_period_start date not null,
    field_period_end date not null,
    wave_spec json not null              -- the wave spec the file was read with, for the audit trail
);
alter table raw.load_registry add column if not exists spec_sha256 varchar;
alter table raw.load_registry add column if not exists codebook_sha256 varchar;
alter table raw.load_registry add column if not exists reader varchar;
alter table raw.load_registry add column if not exists accepted_removals varchar;
-- what the load warned about (usable rows that deserve a look), one warning a line
alter table raw.load_registry add column if not exists warnings varchar;
-- a candidate whose run left the build to a later run (`make run` catching up several waves builds them once)
alter table raw.load_registry add column if not exists build_deferred boolean default false;
create sequence if not exists raw.survey_column_ids;
create table if not exists raw.survey_columns (
    column_id integer not null,          -- one column of one load (raw.survey_column_ids)
    load_id varchar not null,
    wave_year integer not null,
    column_position integer not null,    -- 1-based; positions right of the header hold cells of longer rows
    source_column varchar not null,      -- header as delivered ('' right of the header)
    field_id varchar,                    -- what the wave spec maps the column to; null = kept but not used
    question_text varchar                -- the question as the file words it (an SPSS variable's label), if any
);
create table if not exists raw.survey_cells (
    column_id integer not null,          -- the load and column: raw.survey_columns
    source_row_number integer not null,  -- row in the delivered file (1 = first line / first sheet row)
    cell_value varchar                   -- the cell as delivered, as text
);
create table if not exists raw.cell_resolutions (
    load_id varchar not null,
    wave_year integer not null,
    field_id varchar not null,
    cell_value varchar not null,         -- a distinct delivered value of a mapped column
    match_key varchar,                   -- the value under the matching rule (survey_warehouse.intake.matching)
    resolved_value varchar,              -- municipality code, role or answer code, pseudonym, ISO timestamp
                                         -- (local time in the wave's time zone), minutes
    resolved_number double precision     -- the answer's value on its scale, or minutes
);
create table if not exists raw.quarantine (
    load_id varchar not null,
    wave_year integer not null,
    source_row_number integer not null,  -- the row that cannot be used (staging leaves it out)
    source_column varchar,               -- the column at fault, as delivered
    reason_code varchar not null,        -- ragged_row, repeated_header, missing_required, unknown_city,
                                         -- city_not_surveyed, duplicate_respondent, unknown_answer,
                                         -- out_of_scale, not_on_scale, unreadable_number, unreadable_timestamp,
                                         -- ambiguous_date, outside_wave, unreadable_duration, ambiguous_duration,
                                         -- spreadsheet_error
    message varchar not null             -- what is wrong and what to do, naming the file, row and column
);
create table if not exists raw.wave_cities_surveyed (
    load_id varchar not null,
    wave_year integer not null,
    municipality_code varchar not null
);
"""


def ensure_raw_schema(session: Session) -> None:
    code = "\n".join(line.split("--")[0] for line in RAW_DDL.splitlines())
    for statement in code.split(";"):
        if statement.strip():
            session.execute(statement)
    ensure_builds_schema(session)
    _split_survey_cells(session)
    _add_question_text(session)


def _add_question_text(session: Session) -> None:
    """A warehouse made before files could word their questions (SPSS variable labels) gets the column, empty."""
    (present,) = session.execute(
        "select count(*) from information_schema.columns "
        "where table_schema = 'raw' and table_name = 'survey_columns' and column_name = 'question_text'"
    ).fetchone() or (0,)
    if not present:
        session.execute("alter table raw.survey_columns add column question_text varchar")


def _split_survey_cells(session: Session) -> None:
    """A warehouse made before raw.survey_columns kept each cell's load, wave, column position, header and field
    on the cell itself. In one transaction, each distinct (load, wave, position, header, field) becomes a row of
    raw.survey_columns with a new column_id, and raw.survey_cells is rebuilt as (column_id, row, value). dbt's
    staging views read the old columns; the next `dbt build` makes them again (PostgreSQL drops them with the
    table)."""
    (old_layout,) = session.execute(
        "select count(*) from information_schema.columns "
        "where table_schema = 'raw' and table_name = 'survey_cells' and column_name = 'source_column'"
    ).fetchone() or (0,)
    if not old_layout:
        return
    with session.transaction():
        session.execute(
            "insert into raw.survey_columns (column_id, load_id, wave_year, column_position, source_column, "
            "field_id) select nextval('raw.survey_column_ids'), load_id, wave_year, column_position, source_column, "
            "field_id from (select distinct load_id, wave_year, column_position, source_column, field_id "
            "from raw.survey_cells) as old_columns"
        )
        session.execute(
            "create table raw.survey_cells_split (column_id integer not null, source_row_number integer not null, "
            "cell_value varchar)"
        )
        session.execute(
            "insert into raw.survey_cells_split (column_id, source_row_number, cell_value) "
            "select k.column_id, c.source_row_number, c.cell_value from raw.survey_cells c "
            "join raw.survey_columns k on k.load_id = c.load_id and k.wave_year = c.wave_year "
            "and k.column_position = c.column_position and k.source_column = c.source_column "
            "and k.field_id is not distinct from c.field_id"
        )
        session.execute("drop table raw.survey_cells" + (" cascade" if session.is_postgres else ""))
        session.execute("alter table raw.survey_cells_split rename to survey_cells")
    log.info("raw.survey_cells: the columns' headers and fields moved to raw.survey_columns")


BUILDS_DDL = """
create table if not exists raw.builds (
    build_id varchar primary key,
    run_id varchar,                      -- the Airflow run that builds
    wave_year integer,                   -- the wave of that run
    started_at timestamp not null,
    status varchar not null,             -- building | published | failed | abandoned
    status_at timestamp not null,
    status_message varchar,
    build_fingerprint varchar            -- the dbt project, seeds and suites before the build read them
);
create table if not exists raw.build_loads (
    build_id varchar not null,
    load_id varchar not null,            -- the one load per wave the build's marts are made from
    wave_year integer not null
);
"""


def ensure_builds_schema(session: Session) -> None:
    code = "\n".join(line.split("--")[0] for line in BUILDS_DDL.splitlines())
    for statement in code.split(";"):
        if statement.strip():
            session.execute(statement)
