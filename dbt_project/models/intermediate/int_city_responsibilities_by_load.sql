-- The city roll-up (macro city_rollup, the rule of int_city_responsibilities_rolled_up) of every load a wave was
-- published from (int_load_steps: both loads of every step): per load and city it surveyed, the city's primary
-- responsibility as that load's answers give it, so that a correction can say what it did to the city's result.
with step_loads as (
    select load_id from {{ ref('int_load_steps') }}
    union
    select previous_load_id as load_id from {{ ref('int_load_steps') }}
),

surveyed as (
    select distinct
        cities.load_id,
        cities.wave_year,
        cities.municipality_code
    from {{ source('survey_raw', 'wave_cities_surveyed') }} as cities
    where cities.load_id in (select step_loads.load_id from step_loads)
),

respondents as (
    select * from {{ ref('stg_survey__respondents') }}
    where load_id in (select step_loads.load_id from step_loads)
),

lead_answers as (
    select * from {{ ref('stg_survey__answers') }}
    where
        question_id = 'lead' and answer_code is not null
        and load_id in (select step_loads.load_id from step_loads)
),

{{ city_rollup('respondents', 'lead_answers', ['load_id', 'wave_year']) }},

final as (
    select
        surveyed.load_id,
        surveyed.wave_year,
        surveyed.municipality_code,
        decided.responsibility_code is not null as has_responded,
        decided.responsibility_code,
        coalesce(decided.rollup_method, 'no_response') as rollup_method
    from surveyed
    left join decided
        on surveyed.load_id = decided.load_id
        and surveyed.municipality_code = decided.municipality_code
)

select * from final
