-- Every wave in one long shape: respondent x question x canonical answer, through the cross-wave codebook.
-- Scales that changed between waves (1-5 agreement, 0-10, 1-4) are also given on a common 0-1 score.
with cells as (
    {{ published_survey_cells() }}
),

questions as (
    select * from {{ ref('codebook_questions') }}
    where question_id <> 'respondent_role'
),

answer_codebook as (
    select * from {{ ref('codebook_answers') }}
),

with_respondent as (
    select
        cells.*,
        max(case when field_id = 'respondent_email' then cell_value end)
            over (partition by load_id, source_row_number) as respondent_email
    from cells
),

answered as (
    select
        with_respondent.*,
        questions.answer_type,
        questions.scale_min,
        questions.scale_max
    from with_respondent
    inner join questions
        on with_respondent.wave_year = questions.wave_year
        and with_respondent.field_id = questions.question_id
    where nullif(trim(with_respondent.cell_value), '') is not null
),

final as (
    select
        {{ respondent_key('answered.respondent_email', 'answered.wave_year', 'answered.source_row_number') }}
            as respondent_key,
        answered.load_id,
        answered.is_current_load,
        answered.wave_year,
        answered.source_row_number,
        answered.field_id as question_id,
        answered.answer_type,
        trim(answered.cell_value) as source_label,
        answer_codebook.answer_code,
        answer_codebook.answer_value,
        case
            when answered.answer_type = 'scale'
                then (answer_codebook.answer_value - answered.scale_min) / (answered.scale_max - answered.scale_min)
        end as answer_score
    from answered
    left join answer_codebook
        on answered.wave_year = answer_codebook.wave_year
        and answered.field_id = answer_codebook.question_id
        and {{ normalise_label('answered.cell_value') }} = {{ normalise_label('answer_codebook.source_label') }}
)

select * from final
