-- Every question as each wave asked it. question_id is the cross-wave concept: a question reworded or rescaled in
-- a later wave keeps its id (answer_score puts every scale on 0-1); a question new in a wave has its own id.
-- Whether answers can be trended as they are: each wave is compared with the previous wave that asked the question,
-- by what its answers are - a category question's options (the codebook's canonical codes, so a renamed option
-- mapped to its old code is the same option), a scale's ends and its labelled points (value and English label).
with questions as (
    select * from {{ ref('codebook_questions') }}
    where question_id <> 'respondent_role'
),

asked as (
    select
        questions.*,
        count(*) over (partition by questions.question_id) as waves_asked,
        min(questions.wave_year) over (partition by questions.question_id) as first_wave_year,
        max(questions.wave_year) over (partition by questions.question_id) as last_wave_year,
        lag(questions.wave_year) over (partition by questions.question_id order by questions.wave_year)
            as previous_wave_year,
        lag(questions.answer_type) over (partition by questions.question_id order by questions.wave_year)
            as previous_answer_type,
        lag(questions.scale_min) over (partition by questions.question_id order by questions.wave_year)
            as previous_scale_min,
        lag(questions.scale_max) over (partition by questions.question_id order by questions.wave_year)
            as previous_scale_max
    from questions
),

-- what a wave's answers are compared by: a category's option codes, a scale's labelled points
points as (
    select distinct
        answers.wave_year,
        answers.question_id,
        case
            when questions.answer_type = 'scale'
                then cast(answers.answer_value as varchar) || '=' || coalesce(answers.answer_label_en, '')
            else answers.answer_code
        end as answer_point
    from {{ ref('codebook_answers') }} as answers
    inner join questions
        on answers.wave_year = questions.wave_year
        and answers.question_id = questions.question_id
),

this_points as (
    select
        asked.question_id,
        asked.wave_year,
        points.answer_point
    from asked
    inner join points
        on asked.question_id = points.question_id
        and asked.wave_year = points.wave_year
    where asked.previous_wave_year is not null
),

previous_points as (
    select
        asked.question_id,
        asked.wave_year,
        points.answer_point
    from asked
    inner join points
        on asked.question_id = points.question_id
        and asked.previous_wave_year = points.wave_year
),

-- points one of two consecutive waves has and the other has not
differing as (
    select
        coalesce(this_points.question_id, previous_points.question_id) as question_id,
        coalesce(this_points.wave_year, previous_points.wave_year) as wave_year,
        count(*) as points_differing
    from this_points
    full outer join previous_points
        on this_points.question_id = previous_points.question_id
        and this_points.wave_year = previous_points.wave_year
        and this_points.answer_point = previous_points.answer_point
    where this_points.answer_point is null or previous_points.answer_point is null
    group by 1, 2
),

changes as (
    select
        asked.*,
        case
            when asked.previous_wave_year is null then null
            when (asked.answer_type is distinct from asked.previous_answer_type) then 'answer_type_changed'
            when
                asked.answer_type = 'scale'
                and (
                    (asked.scale_min is distinct from asked.previous_scale_min)
                    or (asked.scale_max is distinct from asked.previous_scale_max)
                )
                then 'scale_changed'
            when coalesce(differing.points_differing, 0) > 0 and asked.answer_type = 'scale' then 'anchors_changed'
            when coalesce(differing.points_differing, 0) > 0 then 'options_changed'
        end as change_from_previous_wave
    from asked
    left join differing
        on asked.question_id = differing.question_id
        and asked.wave_year = differing.wave_year
),

series as (
    select
        changes.*,
        -- the first wave of the run of waves that asked the question alike, up to this one
        max(
            case
                when changes.change_from_previous_wave is not null or changes.previous_wave_year is null
                    then changes.wave_year
            end
        ) over (
            partition by changes.question_id
            order by changes.wave_year
            rows between unbounded preceding and current row
        ) as comparable_from_wave_year,
        -- the most fundamental change among all the waves that asked it (1: answer type ... 4: options)
        min(
            case changes.change_from_previous_wave
                when 'answer_type_changed' then 1
                when 'scale_changed' then 2
                when 'anchors_changed' then 3
                when 'options_changed' then 4
            end
        ) over (partition by changes.question_id) as first_reason
    from changes
),

final as (
    select
        cast(wave_year as varchar) || '-' || question_id as question_wave_id,
        cast(wave_year as integer) as wave_year,
        cast(question_id as varchar) as question_id,
        cast(question_text_fi as varchar) as question_text_fi,
        cast(question_text_en as varchar) as question_text_en,
        cast(answer_type as varchar) as answer_type,
        cast(scale_min as double precision) as scale_min,
        cast(scale_max as double precision) as scale_max,
        cast(is_required as boolean) as is_required,
        cast(waves_asked as integer) as waves_asked,
        cast(first_wave_year as integer) as first_wave_year,
        cast(last_wave_year as integer) as last_wave_year,
        waves_asked > 1 and first_reason is null as is_comparable_across_waves,
        cast(
            case
                when waves_asked = 1 then 'asked_in_one_wave'
                when first_reason = 1 then 'answer_type_changed'
                when first_reason = 2 then 'scale_changed'
                when first_reason = 3 then 'anchors_changed'
                when first_reason = 4 then 'options_changed'
            end as varchar
        ) as not_comparable_reason,
        cast(change_from_previous_wave as varchar) as change_from_previous_wave,
        cast(comparable_from_wave_year as integer) as comparable_from_wave_year
    from series
)

select * from final
