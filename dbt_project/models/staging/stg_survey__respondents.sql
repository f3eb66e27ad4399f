-- One row per respondent of each published load: pseudonymised, city resolved to its municipality code,
-- job title mapped to a role. Names and e-mail addresses stop here.
with cells as (
    {{ published_survey_cells() }}
),

aliases as (
    select * from {{ ref('city_aliases') }}
),

role_codebook as (
    select * from {{ ref('codebook_answers') }}
    where question_id = 'respondent_role'
),

pivoted as (
    select
        load_id,
        wave_year,
        source_row_number,
        is_current_load,
        max(case when field_id = 'respondent_email' then cell_value end) as respondent_email,
        max(case when field_id = 'city' then cell_value end) as city_as_typed,
        max(case when field_id = 'respondent_role' then cell_value end) as role_label,
        max(case when field_id = 'submitted_at' then cell_value end) as submitted_at_text,
        max(case when field_id = 'response_minutes' then cell_value end) as response_minutes_text
    from cells
    group by load_id, wave_year, source_row_number, is_current_load
),

final as (
    select
        {{ respondent_key('pivoted.respondent_email', 'pivoted.wave_year', 'pivoted.source_row_number') }}
            as respondent_key,
        pivoted.load_id,
        pivoted.is_current_load,
        pivoted.wave_year,
        pivoted.source_row_number,
        trim(pivoted.city_as_typed) as city_as_typed,
        aliases.municipality_code,
        role_codebook.answer_code as respondent_role_code,
        {{ parse_timestamp('pivoted.submitted_at_text') }} as submitted_at,
        {{ parse_decimal('pivoted.response_minutes_text') }} as response_minutes
    from pivoted
    left join aliases
        on {{ normalise_label('pivoted.city_as_typed') }} = aliases.city_alias
    left join role_codebook
        on pivoted.wave_year = role_codebook.wave_year
        and {{ normalise_label('pivoted.role_label') }} = {{ normalise_label('role_codebook.source_label') }}
)

select * from final
