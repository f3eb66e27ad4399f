{#-
  The mapped cells of every load the warehouse may use, without quarantined rows, each with what the loader
  resolved it to (survey_warehouse.load: the one matching rule, applied once, so SQL never re-implements it).

  is_current_load marks the load each wave's marts are built from: the wave's candidate (a new load that passed
  the raw gate, being built and checked before it is published) when there is one, else its current load.
  Superseded loads stay, so that corrections between loads can be compared.
-#}
{% macro usable_survey_cells() -%}
    select
        cells.load_id,
        cells.wave_year,
        cells.source_row_number,
        cells.field_id,
        cells.cell_value,
        resolutions.resolved_value,
        resolutions.resolved_number,
        loads.is_current_load
    from {{ source('survey_raw', 'survey_cells') }} as cells
    inner join {{ ref('stg_survey__loads') }} as loads
        on cells.load_id = loads.load_id
    left join {{ source('survey_raw', 'cell_resolutions') }} as resolutions
        on cells.load_id = resolutions.load_id
        and cells.field_id = resolutions.field_id
        and cells.cell_value = resolutions.cell_value
    where loads.load_status in ('candidate', 'passed', 'superseded')
        and cells.field_id is not null
        and not exists (
            select 1
            from {{ source('survey_raw', 'quarantine') }} as quarantined
            where quarantined.load_id = cells.load_id
                and quarantined.source_row_number = cells.source_row_number
        )
{%- endmacro %}
