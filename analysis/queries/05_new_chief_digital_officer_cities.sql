-- Question: which cities named a chief digital officer (digijohtaja, CDO) as the primary responsible for
-- digitalisation in 2019, and who led digitalisation there in the wave before?
-- Reads: marts.fct_city_responsibility, marts.dim_city, marts.dim_year, marts.fct_city_population,
-- marts.dim_responsibility. The CDO option is new in the 2019 questionnaire. Population: the wave's
-- (dim_year.population_reference_year, the end of the year before the wave).
with history as (
    select
        f.wave_year,
        f.municipality_code,
        f.responsibility_code,
        lag(f.responsibility_code) over (partition by f.municipality_code order by f.wave_year) as previous_code,
        lag(f.wave_year) over (partition by f.municipality_code order by f.wave_year) as previous_wave_year
    from marts.fct_city_responsibility as f
)

select
    c.city_name_fi,
    c.region_name_fi,
    p.population,
    h.previous_wave_year,
    coalesce(prev.responsibility_label_en, '(no response)') as previous_lead,
    f.rollup_method,
    f.is_contested
from history as h
inner join marts.fct_city_responsibility as f
    on h.wave_year = f.wave_year and h.municipality_code = f.municipality_code
inner join marts.dim_city as c on h.municipality_code = c.municipality_code and c.is_current
inner join marts.dim_year as y on h.wave_year = y.wave_year
inner join marts.fct_city_population as p
    on h.municipality_code = p.municipality_code and y.population_reference_year = p.population_year
left join marts.dim_responsibility as prev on h.previous_code = prev.responsibility_code
where h.wave_year = 2019 and h.responsibility_code = 'chief_digital_officer'
order by p.population desc, c.municipality_code asc;
