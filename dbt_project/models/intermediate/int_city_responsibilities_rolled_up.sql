-- The city roll-up: one primary responsibility per surveyed city and wave, by the rule in docs/layers.md ("The
-- city roll-up") and in this model's description (_intermediate__models.yml), where it is unit-tested; the rule itself
-- is the macro city_rollup, which also rolls up every load a wave was published from
-- (int_city_responsibilities_by_load).
-- rollup_method names the rule that decided. Surveyed cities without any answer stay, with has_responded = false.
with surveyed as (
    select * from {{ ref('stg_survey__cities_surveyed') }}
),

respondents as (
    select * from {{ ref('stg_survey__respondents') }}
    where is_current_load
),

lead_answers as (
    select * from {{ ref('stg_survey__answers') }}
    where question_id = 'lead' and is_current_load and answer_code is not null
),

{{ city_rollup('respondents', 'lead_answers', ['wave_year']) }},

final as (
    select
        surveyed.wave_year,
        surveyed.municipality_code,
        decided.responsibility_code is not null as has_responded,
        decided.responsibility_code,
        coalesce(decided.rollup_method, 'no_response') as rollup_method,
        coalesce(decided.respondents_answered, 0) as respondents_answered,
        coalesce(decided.key_respondents_answered, 0) as key_respondents_answered,
        coalesce(decided.respondents_agreeing, 0) as respondents_agreeing,
        coalesce(decided.is_contested, false) as is_contested,
        coalesce(decided.key_respondents_disagree, false) as key_respondents_disagree
    from surveyed
    left join decided
        on surveyed.wave_year = decided.wave_year
        and surveyed.municipality_code = decided.municipality_code
)

select * from final
