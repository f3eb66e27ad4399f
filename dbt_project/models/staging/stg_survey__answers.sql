-- Every wave in one long shape: respondent x question x canonical answer, as the loader resolved each label
-- through the codebook. Scales that changed between waves (1-5 agreement, 0-10, 1-4) also get a common 0-1 score.
with cells as (
    {{ usable_survey_cells() }}
),

questions as (
    select * from {{ ref('codebook_questions') }}
    where question_id <> 'respondent_role'
),

with_respondent as (
    select
        cells.*,
        max(case when cells.field_id = 'respondent_email' then cells.resolved_value end)
            over (partition by cells.load_id, cells.source_row_number) as respondent_key
    from cells
),

final as (
    select
        with_respondent.respondent_key,
        with_respondent.load_id,
        with_respondent.is_current_load,
        with_respondent.wave_year,
        with_respondent.source_row_number,
        with_respondent.field_id as question_id,
        questions.answer_type,
        with_respondent.cell_value as source_label,
        with_respondent.resolved_value as answer_code,
        with_respondent.resolved_number as answer_value,
        case
            when questions.answer_type = 'scale'
                then
                    (with_respondent.resolved_number - questions.scale_min)
                    / (questions.scale_max - questions.scale_min)
        end as answer_score
    from with_respondent
    inner join questions
        on with_respondent.wave_year = questions.wave_year
        and with_respondent.field_id = questions.question_id
    where with_respondent.resolved_value is not null
)

select * from final
