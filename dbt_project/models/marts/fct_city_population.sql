-- Population of each city on 31 December of a year, and its rank among all Finnish municipalities: one row per
-- city and year, so a new year is new rows.
with populations as (
    select * from {{ ref('city_populations') }}
),

final as (
    select
        cast(municipality_code as varchar) || '-' || cast(population_year as varchar) as city_population_id,
        cast(municipality_code as varchar) as municipality_code,
        cast(population_year as integer) as population_year,
        cast(population as integer) as population,
        cast(population_rank as integer) as population_rank
    from populations
)

select * from final
