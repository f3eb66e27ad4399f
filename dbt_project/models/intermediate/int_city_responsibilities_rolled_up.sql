-- The city roll-up: one primary responsibility per surveyed city and wave, by the rule in README ("The city
-- roll-up") and in this model's description (_intermediate__models.yml), where it is unit-tested:
-- key respondents who agree; else the answer with the most votes; among tied answers, the most senior respondent,
-- then the earliest submission, then responsibilities.sort_order (unlisted answers after, by code in byte order).
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

roles as (
    select * from {{ ref('respondent_roles') }}
),

responsibilities as (
    select * from {{ ref('responsibilities') }}
),

votes as (
    select
        respondents.wave_year,
        respondents.municipality_code,
        lead_answers.answer_code as responsibility_code,
        case when roles.is_key_respondent then 1 else 0 end as is_key_vote,
        roles.seniority_rank,
        respondents.submitted_at
    from respondents
    inner join lead_answers
        on respondents.wave_year = lead_answers.wave_year
        and respondents.respondent_key = lead_answers.respondent_key
    left join roles
        on respondents.respondent_role_code = roles.role_code
),

-- each answer a city's respondents gave, with what the rule weighs
candidates as (
    select
        wave_year,
        municipality_code,
        responsibility_code,
        sum(is_key_vote) as key_votes,
        count(*) as all_votes,
        min(seniority_rank) as best_seniority_rank,
        min(submitted_at) as first_submitted_at
    from votes
    group by wave_year, municipality_code, responsibility_code
),

cities as (
    select
        wave_year,
        municipality_code,
        sum(all_votes) as respondents_answered,
        sum(key_votes) as key_respondents_answered,
        count(*) as distinct_answers,
        sum(case when key_votes > 0 then 1 else 0 end) as key_answers
    from candidates
    group by wave_year, municipality_code
),

-- rule 1: the answer of key respondents who all agree
weighed as (
    select
        candidates.*,
        cities.respondents_answered,
        cities.key_respondents_answered,
        cities.distinct_answers,
        cities.key_answers,
        cities.key_answers = 1 and candidates.key_votes > 0 as is_agreed_key_answer,
        responsibilities.sort_order
    from candidates
    inner join cities
        on candidates.wave_year = cities.wave_year
        and candidates.municipality_code = cities.municipality_code
    left join responsibilities
        on candidates.responsibility_code = responsibilities.responsibility_code
),

-- rules 2 and 3, step by step: rank() keeps the answers still tied after a step on one rank; row_number() orders
-- them all, the last resort included
ranked as (
    select
        *,
        rank() over (
            partition by wave_year, municipality_code
            order by all_votes desc
        ) as rank_by_votes,
        rank() over (
            partition by wave_year, municipality_code
            order by all_votes desc, best_seniority_rank asc nulls last
        ) as rank_by_seniority,
        rank() over (
            partition by wave_year, municipality_code
            order by all_votes desc, best_seniority_rank asc nulls last, first_submitted_at asc nulls last
        ) as rank_by_submission_time,
        row_number() over (
            partition by wave_year, municipality_code
            order by
                is_agreed_key_answer desc,
                all_votes desc,
                best_seniority_rank asc nulls last,
                first_submitted_at asc nulls last,
                sort_order asc nulls last,
                {{ bytewise('responsibility_code') }} asc
        ) as candidate_rank
    from weighed
),

-- how many answers are still in the lead after each step
leaders as (
    select
        *,
        sum(case when rank_by_votes = 1 then 1 else 0 end)
            over (partition by wave_year, municipality_code)
            as most_voted,
        sum(case when rank_by_seniority = 1 then 1 else 0 end)
            over (partition by wave_year, municipality_code)
            as most_voted_and_senior,
        sum(case when rank_by_submission_time = 1 then 1 else 0 end)
            over (partition by wave_year, municipality_code)
            as most_voted_senior_and_first
    from ranked
),

-- the city's answer and the first step that left it alone in the lead
decided as (
    select
        wave_year,
        municipality_code,
        responsibility_code,
        respondents_answered,
        key_respondents_answered,
        all_votes as respondents_agreeing,
        distinct_answers > 1 as is_contested,
        key_answers > 1 as key_respondents_disagree,
        case
            when is_agreed_key_answer then 'key_respondent'
            when most_voted = 1 then 'majority'
            when most_voted_and_senior = 1 then 'tie_broken_by_seniority'
            when most_voted_senior_and_first = 1 then 'tie_broken_by_submission_time'
            else 'tie_broken_by_answer_order'
        end as rollup_method
    from leaders
    where candidate_rank = 1
),

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
