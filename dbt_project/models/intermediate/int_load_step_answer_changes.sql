-- Every answer a step (int_load_steps) changed: per respondent (matched across the step's two loads as
-- int_load_step_respondents says) and question, the answer in the earlier load and in the later one, where they
-- differ - changed, added (only in the later load) or removed (only in the earlier).
with persons as (
    select * from {{ ref('int_load_step_respondents') }}
),

answers as (
    select
        load_id,
        respondent_key,
        question_id,
        answer_code
    from {{ ref('stg_survey__answers') }}
    where answer_code is not null
),

earlier_answers as (
    select
        persons.load_id,
        persons.person_key,
        answers.question_id,
        answers.answer_code
    from persons
    inner join answers
        on persons.previous_load_id = answers.load_id
        and persons.previous_respondent_key = answers.respondent_key
),

later_answers as (
    select
        persons.load_id,
        persons.person_key,
        answers.question_id,
        answers.answer_code
    from persons
    inner join answers
        on persons.load_id = answers.load_id
        and persons.respondent_key = answers.respondent_key
),

final as (
    select
        coalesce(later_answers.load_id, earlier_answers.load_id) as load_id,
        coalesce(later_answers.person_key, earlier_answers.person_key) as person_key,
        coalesce(later_answers.question_id, earlier_answers.question_id) as question_id,
        case
            when earlier_answers.person_key is null then 'added'
            when later_answers.person_key is null then 'removed'
            else 'changed'
        end as change_type,
        earlier_answers.answer_code as previous_answer_code,
        later_answers.answer_code as current_answer_code
    from later_answers
    full outer join earlier_answers
        on later_answers.load_id = earlier_answers.load_id
        and later_answers.person_key = earlier_answers.person_key
        and later_answers.question_id = earlier_answers.question_id
    where later_answers.answer_code is distinct from earlier_answers.answer_code
)

select * from final
