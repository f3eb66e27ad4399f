{#- How answers and names are matched to the codebook and the city aliases: case- and space-insensitive. -#}
{% macro normalise_label(expression) -%}
    lower(trim({{ expression }}))
{%- endmacro %}

{#- Decimal commas (2016 export) and points both read as numbers; anything else becomes null. -#}
{% macro parse_decimal(expression) -%}
    {{ return(adapter.dispatch('parse_decimal', 'survey_warehouse')(expression)) }}
{%- endmacro %}

{% macro default__parse_decimal(expression) -%}
    try_cast(replace(trim({{ expression }}), ',', '.') as double precision)
{%- endmacro %}

{% macro postgres__parse_decimal(expression) -%}
    case when replace(trim({{ expression }}), ',', '.') ~ '^-?[0-9]+(\.[0-9]+)?$'
         then cast(replace(trim({{ expression }}), ',', '.') as double precision) end
{%- endmacro %}

{#- Survey tools wrote timestamps as '15.3.2016 14:22' (2016), ISO cells (2018) or ISO text (2019). -#}
{% macro parse_timestamp(expression) -%}
    {{ return(adapter.dispatch('parse_timestamp', 'survey_warehouse')(expression)) }}
{%- endmacro %}

{% macro default__parse_timestamp(expression) -%}
    coalesce(
        try_strptime(trim({{ expression }}), '%d.%m.%Y %H:%M'),
        try_cast(trim({{ expression }}) as timestamp)
    )
{%- endmacro %}

{% macro postgres__parse_timestamp(expression) -%}
    case
        when trim({{ expression }}) ~ '^\d{1,2}\.\d{1,2}\.\d{4} \d{1,2}:\d{2}$'
            then to_timestamp(trim({{ expression }}), 'DD.MM.YYYY HH24:MI')::timestamp
        when trim({{ expression }}) ~ '^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2})?$'
            then cast(trim({{ expression }}) as timestamp)
    end
{%- endmacro %}

{#-
  The cells of every load that passed its gate, without quarantined rows. is_current_load marks the load the
  warehouse uses for its wave; superseded loads are kept so that corrections can be compared.
-#}
{% macro published_survey_cells() -%}
    select
        cells.*,
        loads.is_current as is_current_load
    from {{ source('survey_raw', 'survey_cells') }} as cells
    inner join {{ source('survey_raw', 'load_registry') }} as loads
        on cells.load_id = loads.load_id
    where loads.status in ('passed', 'superseded')
    and not exists (
        select 1
        from {{ source('survey_raw', 'quarantine') }} as quarantined
        where quarantined.load_id = cells.load_id
            and quarantined.source_row_number = cells.source_row_number
    )
{%- endmacro %}
