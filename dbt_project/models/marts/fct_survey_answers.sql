with answers as (
    select * from {{ ref('stg_survey__answers') }}
    where is_current_load
),

respondents as (
    select * from {{ ref('stg_survey__respondents') }}
    where is_current_load
),

roles as (
    select * from {{ ref('respondent_roles') }}
),

questions as (
    select * from {{ ref('codebook_questions') }}
),

final as (
    select
        cast(answers.wave_year as varchar) || '-' || answers.respondent_key || '-' || answers.question_id
            as answer_id,
        cast(answers.respondent_key as varchar) as respondent_key,
        cast(answers.wave_year as integer) as wave_year,
        cast(respondents.municipality_code as varchar) as municipality_code,
        cast(respondents.respondent_role_code as varchar) as respondent_role_code,
        cast(coalesce(roles.is_key_respondent, false) as boolean) as is_key_respondent,
        cast(answers.question_id as varchar) as question_id,
        cast(questions.question_text_en as varchar) as question_text_en,
        cast(answers.answer_code as varchar) as answer_code,
        cast(answers.answer_value as double precision) as answer_value,
        cast(answers.answer_score as double precision) as answer_score
    from answers
    inner join respondents
        on answers.wave_year = respondents.wave_year
        and answers.respondent_key = respondents.respondent_key
    left join roles
        on respondents.respondent_role_code = roles.role_code
    left join questions
        on answers.wave_year = questions.wave_year
        and answers.question_id = questions.question_id
)

select * from final
