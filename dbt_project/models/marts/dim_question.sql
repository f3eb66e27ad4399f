-- Every question as each wave asked it. question_id is the cross-wave concept: a question reworded or rescaled in
-- a later wave keeps its id (answer_score puts every scale on 0-1); a question new in a wave has its own id.
with questions as (
    select * from {{ ref('codebook_questions') }}
    where question_id <> 'respondent_role'
),

waves_asked as (
    select
        question_id,
        count(*) as waves_asked,
        min(wave_year) as first_wave_year,
        max(wave_year) as last_wave_year
    from questions
    group by question_id
),

final as (
    select
        cast(questions.wave_year as varchar) || '-' || questions.question_id as question_wave_id,
        cast(questions.wave_year as integer) as wave_year,
        cast(questions.question_id as varchar) as question_id,
        cast(questions.question_text_fi as varchar) as question_text_fi,
        cast(questions.question_text_en as varchar) as question_text_en,
        cast(questions.answer_type as varchar) as answer_type,
        cast(questions.scale_min as double precision) as scale_min,
        cast(questions.scale_max as double precision) as scale_max,
        cast(questions.is_required as boolean) as is_required,
        cast(waves_asked.waves_asked as integer) as waves_asked,
        cast(waves_asked.first_wave_year as integer) as first_wave_year,
        cast(waves_asked.last_wave_year as integer) as last_wave_year,
        waves_asked.waves_asked > 1 as is_comparable_across_waves
    from questions
    inner join waves_asked
        on questions.question_id = waves_asked.question_id
)

select * from final
