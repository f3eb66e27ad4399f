{#-
  The city roll-up (docs/layers.md, "The city roll-up"; int_city_responsibilities_rolled_up's description), as common
  table expressions ending in `decided`: per city (and `keys`) that has answers, its primary responsibility, the rule
  that decided it and the counts the rule weighed. Written once, used for the marts' current loads
  (int_city_responsibilities_rolled_up, keys wave_year) and for every load a wave was published from
  (int_city_responsibilities_by_load, keys load_id and wave_year), so that a correction compares results of one rule.

  respondents: a relation with the keys, municipality_code, respondent_key, respondent_role_code, submitted_at;
  lead_answers: a relation with the keys, respondent_key and answer_code (answers to `lead` with a code only).
  Key respondents who agree; else the answer with the most votes; among tied answers, the most senior respondent,
  then the earliest submission, then responsibilities.sort_order (unlisted answers after, by code in byte order).
-#}
{% macro city_rollup(respondents, lead_answers, keys) -%}
{%- set by = keys | join(', ') -%}
votes as (
    select
        {% for key in keys -%}
        {{ respondents }}.{{ key }},
        {% endfor -%}
        {{ respondents }}.municipality_code,
        {{ lead_answers }}.answer_code as responsibility_code,
        case when roles.is_key_respondent then 1 else 0 end as is_key_vote,
        roles.seniority_rank,
        {{ respondents }}.submitted_at
    from {{ respondents }}
    inner join {{ lead_answers }}
        on
            {% for key in keys -%}
            {{ respondents }}.{{ key }} = {{ lead_answers }}.{{ key }} and
            {% endfor -%}
            {{ respondents }}.respondent_key = {{ lead_answers }}.respondent_key
    left join {{ ref('respondent_roles') }} as roles
        on {{ respondents }}.respondent_role_code = roles.role_code
),

-- each answer a city's respondents gave, with what the rule weighs
candidates as (
    select
        {{ by }},
        municipality_code,
        responsibility_code,
        sum(is_key_vote) as key_votes,
        count(*) as all_votes,
        min(seniority_rank) as best_seniority_rank,
        min(submitted_at) as first_submitted_at
    from votes
    group by {{ by }}, municipality_code, responsibility_code
),

cities as (
    select
        {{ by }},
        municipality_code,
        sum(all_votes) as respondents_answered,
        sum(key_votes) as key_respondents_answered,
        count(*) as distinct_answers,
        sum(case when key_votes > 0 then 1 else 0 end) as key_answers
    from candidates
    group by {{ by }}, municipality_code
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
        on
            {% for key in keys -%}
            candidates.{{ key }} = cities.{{ key }} and
            {% endfor -%}
            candidates.municipality_code = cities.municipality_code
    left join {{ ref('responsibilities') }} as responsibilities
        on candidates.responsibility_code = responsibilities.responsibility_code
),

-- rules 2 and 3, step by step: rank() keeps the answers still tied after a step on one rank; row_number() orders
-- them all, the last resort included
ranked as (
    select
        *,
        rank() over (
            partition by {{ by }}, municipality_code
            order by all_votes desc
        ) as rank_by_votes,
        rank() over (
            partition by {{ by }}, municipality_code
            order by all_votes desc, best_seniority_rank asc nulls last
        ) as rank_by_seniority,
        rank() over (
            partition by {{ by }}, municipality_code
            order by all_votes desc, best_seniority_rank asc nulls last, first_submitted_at asc nulls last
        ) as rank_by_submission_time,
        row_number() over (
            partition by {{ by }}, municipality_code
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
            over (partition by {{ by }}, municipality_code)
            as most_voted,
        sum(case when rank_by_seniority = 1 then 1 else 0 end)
            over (partition by {{ by }}, municipality_code)
            as most_voted_and_senior,
        sum(case when rank_by_submission_time = 1 then 1 else 0 end)
            over (partition by {{ by }}, municipality_code)
            as most_voted_senior_and_first
    from ranked
),

-- the city's answer and the first step that left it alone in the lead
decided as (
    select
        {{ by }},
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
)
{%- endmacro %}
