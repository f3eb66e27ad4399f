-- Every respondent of either load of a step (int_load_steps), matched across the two: by the respondent key, or, for a
-- respondent whose key is only in the earlier load and one whose key is only in the later load, as the same person
-- when both are of the same city and role and gave exactly the same answers (a corrected e-mail address gives a new
-- key to the same answers). Several such respondents alike in all of that are paired in their keys' byte order
-- (any pairing gives the same figures). A respondent left unmatched was added or removed.
with steps as (
    select * from {{ ref('int_load_steps') }}
),

respondents as (
    select
        load_id,
        wave_year,
        respondent_key,
        municipality_code,
        respondent_role_code,
        submitted_at
    from {{ ref('stg_survey__respondents') }}
    where respondent_key is not null
),

-- each respondent's answers as one text (question=answer, in the questions' byte order), compared at once
answered as (
    select
        load_id,
        respondent_key,
        string_agg(question_id || '=' || answer_code, '|' order by {{ bytewise('question_id') }}) as answers_given
    from {{ ref('stg_survey__answers') }}
    where answer_code is not null
    group by load_id, respondent_key
),

described as (
    select
        respondents.*,
        coalesce(answered.answers_given, '') as answers_given
    from respondents
    left join answered
        on respondents.load_id = answered.load_id
        and respondents.respondent_key = answered.respondent_key
),

earlier as (
    select
        steps.load_id as step_load_id,
        described.*
    from steps
    inner join described
        on steps.previous_load_id = described.load_id
),

later as (
    select
        steps.load_id as step_load_id,
        described.*
    from steps
    inner join described
        on steps.load_id = described.load_id
),

gone as (
    select
        earlier.*,
        row_number() over (
            partition by
                earlier.step_load_id, earlier.municipality_code, earlier.respondent_role_code, earlier.answers_given
            order by {{ bytewise('earlier.respondent_key') }}
        ) as place
    from earlier
    where not exists (
        select 1 from later
        where later.step_load_id = earlier.step_load_id and later.respondent_key = earlier.respondent_key
    )
),

arrived as (
    select
        later.*,
        row_number() over (
            partition by later.step_load_id, later.municipality_code, later.respondent_role_code, later.answers_given
            order by {{ bytewise('later.respondent_key') }}
        ) as place
    from later
    where not exists (
        select 1 from earlier
        where earlier.step_load_id = later.step_load_id and earlier.respondent_key = later.respondent_key
    )
),

-- the same person under a new key
relinked as (
    select
        gone.step_load_id,
        gone.respondent_key as previous_respondent_key,
        arrived.respondent_key
    from gone
    inner join arrived
        on gone.step_load_id = arrived.step_load_id
        and gone.municipality_code is not distinct from arrived.municipality_code
        and gone.respondent_role_code is not distinct from arrived.respondent_role_code
        and gone.answers_given = arrived.answers_given
        and gone.place = arrived.place
),

-- each earlier respondent under the key they have in the later load, when they have one
earlier_persons as (
    select
        earlier.*,
        coalesce(relinked.respondent_key, earlier.respondent_key) as person_key,
        relinked.respondent_key is not null as is_key_changed
    from earlier
    left join relinked
        on earlier.step_load_id = relinked.step_load_id
        and earlier.respondent_key = relinked.previous_respondent_key
),

final as (
    select
        coalesce(later.step_load_id, earlier_persons.step_load_id) as load_id,
        steps.previous_load_id,
        steps.wave_year,
        coalesce(later.respondent_key, earlier_persons.person_key) as person_key,
        later.respondent_key,
        earlier_persons.respondent_key as previous_respondent_key,
        later.municipality_code,
        earlier_persons.municipality_code as previous_municipality_code,
        later.respondent_role_code,
        earlier_persons.respondent_role_code as previous_respondent_role_code,
        later.submitted_at,
        earlier_persons.submitted_at as previous_submitted_at,
        coalesce(earlier_persons.is_key_changed, false) as is_key_changed,
        case
            when earlier_persons.respondent_key is null then 'added'
            when later.respondent_key is null then 'removed'
            else 'kept'
        end as presence
    from earlier_persons
    full outer join later
        on earlier_persons.step_load_id = later.step_load_id
        and earlier_persons.person_key = later.respondent_key
    inner join steps
        on coalesce(later.step_load_id, earlier_persons.step_load_id) = steps.load_id
)

select * from final
