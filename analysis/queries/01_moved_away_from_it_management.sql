-- Question: which cities moved responsibility for leading digitalisation away from IT management between the
-- first wave (2016) and the latest (2019), and to whom?
-- Reads: marts.fct_city_responsibility, marts.dim_city, marts.dim_responsibility. Cities that did not respond in
-- either wave are left out (no answer is not a move).
with first_wave as (
    select municipality_code, responsibility_code
    from marts.fct_city_responsibility
    where wave_year = 2016 and has_responded
), last_wave as (
    select municipality_code, responsibility_code
    from marts.fct_city_responsibility
    where wave_year = 2019 and has_responded
)
select c.municipality_code,
       c.city_name_fi,
       c.region_name_fi,
       r_first.responsibility_label_en as lead_2016,
       r_last.responsibility_label_en as lead_2019
from first_wave f
join last_wave l using (municipality_code)
join marts.dim_city c on c.municipality_code = f.municipality_code and c.is_current
join marts.dim_responsibility r_first on r_first.responsibility_code = f.responsibility_code
join marts.dim_responsibility r_last on r_last.responsibility_code = l.responsibility_code
where r_first.is_it_management and not r_last.is_it_management
order by lead_2019, c.city_name_fi;
