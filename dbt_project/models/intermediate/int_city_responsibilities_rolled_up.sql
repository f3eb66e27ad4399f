-- The city roll-up: one primary responsibility per surveyed city and wave.
--
-- Rule (documented in _intermediate__models.yml and unit-tested):
--   1. The key respondent (CIO / ICT director) speaks for the city: the answer with the most key-respondent
--      votes wins.
--   2. Without a key respondent (or between key respondents who disagree), the answer with the most votes
--      among all the city's respondents wins.
--   3. A remaining tie goes to the answer of the most senior respondent (respondent_roles.seniority_rank),
--      then to the earliest submitted answer, then alphabetically, so the result is always deterministic.
-- Surveyed cities without any answer stay in the table with has_responded = false.
with surveyed as (
    select * from {{ ref('stg_survey__cities_surveyed') }}
),

respondents as (
    select * from {{ ref('stg_survey__respondents') }}
    where is_current_load
),

lead_answers as (
    select * from {{ ref('stg_survey__answers') }}
    where question_id = 'lead' and is_current_load
),

roles as (
    select * from {{ ref('respondent_roles') }}
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

ranked as (
    select
        candidates.*,
        row_number() over (
            partition by candidates.wave_year, candidates.municipality_code
            order by
                candidates.key_votes desc,
                candidates.all_votes desc,
                candidates.best_seniority_rank asc,
                candidates.first_submitted_at asc,
                candidates.responsibility_code asc
        ) as candidate_rank,
        count(*) over (partition by candidates.wave_year, candidates.municipality_code) as distinct_answers,
        sum(candidates.key_votes)
            over (partition by candidates.wave_year, candidates.municipality_code)
            as city_key_votes,
        sum(candidates.all_votes) over (partition by candidates.wave_year, candidates.municipality_code) as city_votes
    from candidates
),

winner as (
    select * from ranked
    where candidate_rank = 1
),

runner_up as (
    select * from ranked
    where candidate_rank = 2
),

decided as (
    select
        winner.wave_year,
        winner.municipality_code,
        winner.responsibility_code,
        winner.city_votes as respondents_answered,
        winner.city_key_votes as key_respondents_answered,
        winner.all_votes as respondents_agreeing,
        winner.distinct_answers > 1 as is_contested,
        case
            when winner.key_votes > 0 and winner.key_votes > coalesce(runner_up.key_votes, 0)
                then 'key_respondent'
            when winner.all_votes > coalesce(runner_up.all_votes, 0)
                then case when winner.city_key_votes > 0 then 'key_respondents_majority' else 'majority' end
            else 'tie_broken_by_seniority'
        end as rollup_method
    from winner
    left join runner_up
        on winner.wave_year = runner_up.wave_year
        and winner.municipality_code = runner_up.municipality_code
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
        coalesce(decided.is_contested, false) as is_contested
    from surveyed
    left join decided
        on surveyed.wave_year = decided.wave_year
        and surveyed.municipality_code = decided.municipality_code
)

select * from final
