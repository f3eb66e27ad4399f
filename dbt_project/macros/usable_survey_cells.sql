{#-
  The mapped cells of every load the warehouse may use, without quarantined rows, each with what the loader
  resolved it to (survey_warehouse.raw.load: the one matching rule, applied once, so SQL never re-implements it).
  A cell names its load and column through raw.survey_columns (column_id): the column's field, load and wave.

  is_current_load marks the load each wave's marts are built from: the wave's candidate (a new load that passed
  the raw gate, being built and checked before it is published) when there is one, else its current load.
  Superseded loads stay, and loads once published and withdrawn since, so that corrections between loads can be
  compared.
-#}
{% macro usable_survey_cells() -%}
    select
        source_columns.load_id,
        source_columns.wave_year,
        cells.source_row_number,
        source_columns.field_id,
        cells.cell_value,
        resolutions.resolved_value,
        resolutions.resolved_number,
        loads.is_current_load
    from {{ source('survey_raw', 'survey_cells') }} as cells
    inner join {{ source('survey_raw', 'survey_columns') }} as source_columns
        on cells.column_id = source_columns.column_id
    inner join {{ ref('stg_survey__loads') }} as loads
        on source_columns.load_id = loads.load_id
    left join {{ source('survey_raw', 'cell_resolutions') }} as resolutions
        on source_columns.load_id = resolutions.load_id
        and source_columns.field_id = resolutions.field_id
        and cells.cell_value = resolutions.cell_value
    where (loads.load_status in ('candidate', 'passed', 'superseded') or loads.was_published)
        and source_columns.field_id is not null
        and not exists (
            select 1
            from {{ source('survey_raw', 'quarantine') }} as quarantined
            where quarantined.load_id = source_columns.load_id
                and quarantined.source_row_number = cells.source_row_number
        )
{%- endmacro %}
