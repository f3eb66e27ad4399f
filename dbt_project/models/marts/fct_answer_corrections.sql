-- What each later load of a wave changed in its answers, step by step through the wave's published loads
-- (int_load_steps): a re-delivery (another file), or the same file read again under another codebook or wave spec,
-- each said by correction_kind. One row per answer changed, added or removed (int_load_step_answer_changes), and
-- one per respondent whose key changed (the same person, matched as int_load_step_respondents says). What a step
-- did to a city's primary responsibility is in fct_city_responsibility.
with steps as (
    select * from {{ ref('int_load_steps') }}
),

persons as (
    select * from {{ ref('int_load_step_respondents') }}
),

changes as (
    select
        load_id,
        person_key,
        question_id,
        change_type,
        previous_answer_code,
        current_answer_code
    from {{ ref('int_load_step_answer_changes') }}
    union all
    select
        load_id,
        person_key,
        'respondent_key' as question_id,
        'key_changed' as change_type,
        cast(null as varchar) as previous_answer_code,
        cast(null as varchar) as current_answer_code
    from persons
    where is_key_changed
),

final as (
    select
        changes.load_id || '-' || changes.person_key || '-' || changes.question_id as answer_correction_id,
        cast(steps.wave_year as integer) as wave_year,
        cast(coalesce(persons.municipality_code, persons.previous_municipality_code) as varchar)
            as municipality_code,
        cast(changes.person_key as varchar) as respondent_key,
        cast(persons.previous_respondent_key as varchar) as previous_respondent_key,
        cast(changes.question_id as varchar) as question_id,
        cast(changes.change_type as varchar) as change_type,
        cast(steps.correction_kind as varchar) as correction_kind,
        cast(changes.previous_answer_code as varchar) as previous_answer_code,
        cast(changes.current_answer_code as varchar) as current_answer_code,
        cast(steps.previous_load_id as varchar) as previous_load_id,
        cast(steps.load_id as varchar) as load_id,
        cast(steps.is_current_load as boolean) as is_current_load,
        cast(steps.is_codebook_changed as boolean) as is_codebook_changed,
        -- an answer of a respondent the later load dropped and its wave spec allowed to drop (accept_removals:
        -- r-<first 8 characters of the key> or the city's code)
        coalesce(changes.change_type = 'removed' and persons.presence = 'removed' and (
            position(
                ',r-' || substr(persons.previous_respondent_key, 1, 8) || ','
                in ',' || steps.accepted_removals || ','
            ) > 0
            or position(',' || persons.previous_municipality_code || ',' in ',' || steps.accepted_removals || ',') > 0
        ), false) as is_accepted_removal
    from changes
    inner join steps
        on changes.load_id = steps.load_id
    inner join persons
        on changes.load_id = persons.load_id
        and changes.person_key = persons.person_key
)

select * from final
