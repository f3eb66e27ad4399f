-- Question: do respondents rate the cooperation between IT management and the business lines differently
-- depending on who leads digitalisation in their city? Mean cooperation score on the common 0-1 scale
-- (answer_score), per wave and the city's primary responsibility.
-- Reads: marts.fct_survey_answers, marts.fct_city_responsibility, marts.dim_responsibility, marts.dim_question.
-- Compare waves only within one comparable_from_wave_year: 2016 and 2018 asked for agreement on a 1-5 scale, 2019
-- for a 0-10 rating (dim_question.change_from_previous_wave = scale_changed), and a score on 0-1 does not make a
-- rating an agreement. Within a wave, compare the groups.
select
    a.wave_year,
    q.comparable_from_wave_year,
    r.responsibility_label_en as city_led_by,
    count(distinct a.municipality_code) as cities,
    count(*) as respondents,
    round(cast(avg(a.answer_score) as numeric), 3) as mean_cooperation_score,
    round(cast(min(a.answer_score) as numeric), 3) as min_score,
    round(cast(max(a.answer_score) as numeric), 3) as max_score
from marts.fct_survey_answers as a
inner join marts.fct_city_responsibility as f
    on a.wave_year = f.wave_year and a.municipality_code = f.municipality_code
inner join marts.dim_responsibility as r on f.responsibility_code = r.responsibility_code
inner join marts.dim_question as q on a.wave_year = q.wave_year and a.question_id = q.question_id
where a.question_id = 'cooperation' and a.answer_score is not null
group by a.wave_year, q.comparable_from_wave_year, r.responsibility_label_en, r.sort_order
order by a.wave_year, r.sort_order;
