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

-- one label per answer option of a wave's question (several delivered spellings may share a code): the first in
-- byte order, the same on every engine whatever the database's collation
options as (
    select
        wave_year,
        question_id,
        answer_code,
        min({{ bytewise('source_label') }}) as label_fi,
        min({{ bytewise('answer_label_en') }}) as label_en,
        min(sort_order) as sort_order
    from {{ ref('codebook_answers') }}
    group by wave_year, question_id, answer_code
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
        cast(questions.question_text_fi as varchar) as question_text_fi,
        cast(questions.question_text_en as varchar) as question_text_en,
        cast(answers.answer_code as varchar) as answer_code,
        -- a number on a scale that the codebook does not label is its own label
        cast(coalesce(options.label_fi, answers.source_label) as varchar) as answer_label_fi,
        cast(coalesce(options.label_en, options.label_fi, answers.source_label) as varchar) as answer_label_en,
        cast(coalesce(options.sort_order, answers.answer_value) as double precision) as answer_sort_order,
        cast(answers.answer_value as double precision) as answer_value,
        cast(answers.answer_score as double precision) as answer_score
    from answers
    inner join respondents
        on answers.load_id = respondents.load_id
        and answers.source_row_number = respondents.source_row_number
    left join roles
        on respondents.respondent_role_code = roles.role_code
    left join questions
        on answers.wave_year = questions.wave_year
        and answers.question_id = questions.question_id
    left join options
        on answers.wave_year = options.wave_year
        and answers.question_id = options.question_id
        and answers.answer_code = options.answer_code
)

select * from final
