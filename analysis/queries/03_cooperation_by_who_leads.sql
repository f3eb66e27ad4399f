-- Question: do respondents rate the cooperation between IT management and the business lines differently
-- depending on who leads digitalisation in their city? Mean cooperation score on the common 0-1 scale
-- (answer_score, comparable across waves although the questionnaire's scale changed), per wave and the city's
-- primary responsibility.
-- Reads: marts.fct_survey_answers, marts.fct_city_responsibility, marts.dim_responsibility.
select
    a.wave_year,
    r.responsibility_label_en as city_led_by,
    count(distinct a.municipality_code) as cities,
    count(*) as respondents,
    round(avg(a.answer_score), 3) as mean_cooperation_score,
    round(min(a.answer_score), 3) as min_score,
    round(max(a.answer_score), 3) as max_score
from marts.fct_survey_answers as a
inner join marts.fct_city_responsibility as f
    on a.wave_year = f.wave_year and a.municipality_code = f.municipality_code
inner join marts.dim_responsibility as r on f.responsibility_code = r.responsibility_code
where a.question_id = 'cooperation' and a.answer_score is not null
group by a.wave_year, r.responsibility_label_en, r.sort_order
order by a.wave_year, r.sort_order;
