-- One row per respondent of each usable load: pseudonymised, city resolved to its municipality code, job title
-- mapped to a role (all resolved by the loader). Names and e-mail addresses stop here.
with cells as (
    {{ usable_survey_cells() }}
),

pivoted as (
    select
        load_id,
        wave_year,
        source_row_number,
        is_current_load,
        max(case when field_id = 'respondent_email' then resolved_value end) as respondent_key,
        max(case when field_id = 'city' then cell_value end) as city_as_typed,
        max(case when field_id = 'city' then resolved_value end) as municipality_code,
        max(case when field_id = 'respondent_role' then resolved_value end) as respondent_role_code,
        max(case when field_id = 'submitted_at' then resolved_value end) as submitted_at_iso,
        max(case when field_id = 'response_minutes' then resolved_number end) as response_minutes
    from cells
    group by load_id, wave_year, source_row_number, is_current_load
),

final as (
    select
        respondent_key,
        load_id,
        is_current_load,
        wave_year,
        source_row_number,
        city_as_typed,
        municipality_code,
        respondent_role_code,
        cast(submitted_at_iso as timestamp) as submitted_at,
        response_minutes
    from pivoted
)

select * from final
