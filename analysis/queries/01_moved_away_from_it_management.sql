-- Question: which cities moved responsibility for leading digitalisation away from IT management between the
-- first wave (2016) and the latest (2019), and to whom?
-- Reads: marts.fct_city_responsibility, marts.dim_city, marts.dim_responsibility. Cities that did not respond in
-- either wave are left out (no answer is not a move). In order of who leads now (as the questionnaire lists the
-- options), then by municipality code (the same order on every database, whatever its collation). The 2019
-- questionnaire added the option chief digital officer (marts.dim_question.change_from_previous_wave): a move to
-- it may be a new name for an arrangement as much as a new arrangement.
with first_wave as (
    select
        municipality_code,
        responsibility_code
    from marts.fct_city_responsibility
    where wave_year = 2016 and has_responded
),

last_wave as (
    select
        municipality_code,
        responsibility_code
    from marts.fct_city_responsibility
    where wave_year = 2019 and has_responded
)

select
    c.municipality_code,
    c.city_name_fi,
    c.region_name_fi,
    r_first.responsibility_label_en as lead_2016,
    r_last.responsibility_label_en as lead_2019
from first_wave as f
inner join last_wave as l on f.municipality_code = l.municipality_code
inner join marts.dim_city as c on f.municipality_code = c.municipality_code and c.is_current
inner join marts.dim_responsibility as r_first on f.responsibility_code = r_first.responsibility_code
inner join marts.dim_responsibility as r_last on l.responsibility_code = r_last.responsibility_code
where r_first.is_it_management and not r_last.is_it_management
order by r_last.sort_order, c.municipality_code;
