-- Question: in how many cities did the respondents disagree about who leads digitalisation (is_contested), per
-- wave, and how was the city's answer decided in those cities?
-- Reads: marts.fct_city_responsibility. The share is computed in double precision (an integer divided by an
-- integer is an integer on PostgreSQL) and rounded as numeric.
select
    wave_year,
    count(*) filter (where has_responded) as cities_responded,
    count(*) filter (where is_contested) as contested_cities,
    round(
        cast(
            cast(count(*) filter (where is_contested) as double precision)
            / nullif(count(*) filter (where has_responded), 0) as numeric
        ),
        3
    ) as contested_share,
    count(*) filter (where is_contested and rollup_method = 'key_respondent') as decided_by_key_respondent,
    count(*) filter (where is_contested and rollup_method <> 'key_respondent') as decided_otherwise
from marts.fct_city_responsibility
group by wave_year
order by wave_year;
