-- Every city whose result a step (int_load_steps) changed: its primary responsibility (or whether it responded, or
-- was surveyed) differs between the step's two loads (int_city_responsibilities_by_load, one rule for both), with
-- what changed among the respondents the city had in either load (int_load_step_respondents,
-- int_load_step_answer_changes) as the reasons.
with steps as (
    select * from {{ ref('int_load_steps') }}
),

rolled_up as (
    select * from {{ ref('int_city_responsibilities_by_load') }}
),

persons as (
    select * from {{ ref('int_load_step_respondents') }}
),

lead_changes as (
    select distinct
        load_id,
        person_key
    from {{ ref('int_load_step_answer_changes') }}
    where question_id = 'lead'
),

later_cities as (
    select
        steps.load_id as step_load_id,
        rolled_up.*
    from steps
    inner join rolled_up
        on steps.load_id = rolled_up.load_id
),

earlier_cities as (
    select
        steps.load_id as step_load_id,
        rolled_up.*
    from steps
    inner join rolled_up
        on steps.previous_load_id = rolled_up.load_id
),

changed as (
    select
        coalesce(later_cities.step_load_id, earlier_cities.step_load_id) as load_id,
        coalesce(later_cities.municipality_code, earlier_cities.municipality_code) as municipality_code,
        earlier_cities.has_responded as previous_has_responded,
        earlier_cities.responsibility_code as previous_responsibility_code,
        later_cities.has_responded,
        later_cities.responsibility_code,
        later_cities.municipality_code is null or earlier_cities.municipality_code is null as surveyed_changed
    from later_cities
    full outer join earlier_cities
        on later_cities.step_load_id = earlier_cities.step_load_id
        and later_cities.municipality_code = earlier_cities.municipality_code
    where
        later_cities.has_responded is distinct from earlier_cities.has_responded
        or later_cities.responsibility_code is distinct from earlier_cities.responsibility_code
),

-- each respondent once per city they had in either load
touched as (
    select
        persons.load_id,
        persons.municipality_code,
        persons.person_key
    from persons
    where persons.municipality_code is not null
    union
    select
        persons.load_id,
        persons.previous_municipality_code as municipality_code,
        persons.person_key
    from persons
    where persons.previous_municipality_code is not null
),

reasons as (
    select
        touched.load_id,
        touched.municipality_code,
        max(case when lead_changes.person_key is not null then 1 else 0 end) as lead_answer_changed,
        max(case when persons.presence = 'added' then 1 else 0 end) as respondent_added,
        max(case when persons.presence = 'removed' then 1 else 0 end) as respondent_removed,
        max(
            case
                when
                    persons.presence = 'kept'
                    and persons.respondent_role_code is distinct from persons.previous_respondent_role_code
                    then 1
                else 0
            end
        ) as role_changed,
        max(
            case
                when
                    persons.presence = 'kept'
                    and persons.municipality_code is distinct from persons.previous_municipality_code
                    then 1
                else 0
            end
        ) as city_changed,
        max(
            case
                when persons.presence = 'kept' and persons.submitted_at is distinct from persons.previous_submitted_at
                    then 1
                else 0
            end
        ) as submission_time_changed
    from touched
    inner join persons
        on touched.load_id = persons.load_id
        and touched.person_key = persons.person_key
    left join lead_changes
        on touched.load_id = lead_changes.load_id
        and touched.person_key = lead_changes.person_key
    group by touched.load_id, touched.municipality_code
),

final as (
    select
        changed.load_id,
        steps.previous_load_id,
        steps.wave_year,
        steps.loaded_at,
        steps.correction_kind,
        changed.municipality_code,
        changed.previous_has_responded,
        changed.previous_responsibility_code,
        changed.has_responded,
        changed.responsibility_code,
        concat_ws(
            ',',
            case when reasons.lead_answer_changed = 1 then 'lead_answer_changed' end,
            case when reasons.respondent_added = 1 then 'respondent_added' end,
            case when reasons.respondent_removed = 1 then 'respondent_removed' end,
            case when reasons.role_changed = 1 then 'role_changed' end,
            case when reasons.city_changed = 1 then 'city_changed' end,
            case when reasons.submission_time_changed = 1 then 'submission_time_changed' end,
            case when changed.surveyed_changed then 'surveyed_changed' end
        ) as change_reasons
    from changed
    inner join steps
        on changed.load_id = steps.load_id
    left join reasons
        on changed.load_id = reasons.load_id
        and changed.municipality_code = reasons.municipality_code
)

select * from final
