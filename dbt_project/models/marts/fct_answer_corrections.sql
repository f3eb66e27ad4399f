-- What a corrected re-delivery changed: for each wave whose current load superseded an earlier one, every answer
-- that differs between the two loads (changed, added or removed), with the respondent's city. A removal the wave
-- spec accepted (accept_removals: a withdrawal) is marked as such.
with loads as (
    select * from {{ ref('stg_survey__loads') }}
),

answers as (
    select * from {{ ref('stg_survey__answers') }}
),

respondents as (
    select * from {{ ref('stg_survey__respondents') }}
),

current_loads as (
    select
        wave_year,
        load_id,
        accepted_removals
    from loads
    where is_current_load
),

-- the load the current one replaced: the latest published load of the wave that is not the current one
previous_loads as (
    select
        wave_year,
        load_id
    from (
        select
            wave_year,
            load_id,
            row_number() over (partition by wave_year order by loaded_at desc) as recency
        from loads
        where load_status in ('passed', 'superseded') and not is_current_load
    ) as published_before
    where recency = 1
),

located_answers as (
    select
        answers.load_id,
        answers.wave_year,
        answers.respondent_key,
        answers.question_id,
        answers.answer_code,
        respondents.municipality_code
    from answers
    inner join respondents
        on answers.load_id = respondents.load_id
        and answers.respondent_key = respondents.respondent_key
),

current_answers as (
    select located_answers.*
    from located_answers
    inner join current_loads
        on located_answers.load_id = current_loads.load_id
    where located_answers.wave_year in (select previous_loads.wave_year from previous_loads)
),

previous_answers as (
    select located_answers.*
    from located_answers
    inner join previous_loads
        on located_answers.load_id = previous_loads.load_id
),

compared as (
    select
        coalesce(current_answers.wave_year, previous_answers.wave_year) as wave_year,
        coalesce(current_answers.respondent_key, previous_answers.respondent_key) as respondent_key,
        coalesce(current_answers.question_id, previous_answers.question_id) as question_id,
        coalesce(current_answers.municipality_code, previous_answers.municipality_code) as municipality_code,
        previous_answers.answer_code as previous_answer_code,
        current_answers.answer_code as current_answer_code,
        case
            when previous_answers.respondent_key is null then 'added'
            when current_answers.respondent_key is null then 'removed'
            else 'changed'
        end as change_type
    from current_answers
    full outer join previous_answers
        on current_answers.wave_year = previous_answers.wave_year
        and current_answers.respondent_key = previous_answers.respondent_key
        and current_answers.question_id = previous_answers.question_id
    where current_answers.answer_code is distinct from previous_answers.answer_code
),

final as (
    select
        cast(compared.wave_year as varchar) || '-' || compared.respondent_key || '-' || compared.question_id
            as answer_correction_id,
        cast(compared.wave_year as integer) as wave_year,
        cast(compared.municipality_code as varchar) as municipality_code,
        cast(compared.respondent_key as varchar) as respondent_key,
        cast(compared.question_id as varchar) as question_id,
        cast(compared.change_type as varchar) as change_type,
        cast(compared.previous_answer_code as varchar) as previous_answer_code,
        cast(compared.current_answer_code as varchar) as current_answer_code,
        cast(previous_loads.load_id as varchar) as previous_load_id,
        cast(current_loads.load_id as varchar) as current_load_id,
        coalesce(compared.change_type = 'removed' and (
            {{ dbt.position("',r-' || substr(compared.respondent_key, 1, 8) || ','",
                            "',' || current_loads.accepted_removals || ','") }} > 0
            or {{ dbt.position("',' || compared.municipality_code || ','",
                               "',' || current_loads.accepted_removals || ','") }} > 0
        ), false) as is_accepted_removal
    from compared
    inner join previous_loads
        on compared.wave_year = previous_loads.wave_year
    inner join current_loads
        on compared.wave_year = current_loads.wave_year
)

select * from final
