-- Question: in which regions (maakunta) does IT management lead digitalisation, wave by wave? Share of the
-- responding surveyed cities of each region where IT management is the primary responsibility.
-- Reads: marts.fct_city_responsibility, marts.dim_city. Small regions have one or two cities: read counts, not
-- only shares. Shares are computed in double precision (an integer divided by an integer is an integer on
-- PostgreSQL) and rounded as numeric (PostgreSQL rounds no double to decimals); ties by region code.
select
    f.wave_year,
    c.region_name_fi,
    count(*) filter (where f.has_responded) as cities_responded,
    count(*) filter (where f.is_it_led) as it_led_cities,
    round(
        cast(
            cast(count(*) filter (where f.is_it_led) as double precision)
            / nullif(count(*) filter (where f.has_responded), 0) as numeric
        ),
        3
    ) as it_led_share
from marts.fct_city_responsibility as f
inner join marts.dim_city as c on f.municipality_code = c.municipality_code and c.is_current
group by f.wave_year, c.region_code, c.region_name_fi
order by f.wave_year asc, it_led_share desc nulls last, c.region_code asc;
