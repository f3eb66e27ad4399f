with cities as (
    select * from {{ ref('cities') }}
),

surveyed as (
    select distinct municipality_code from {{ ref('stg_survey__cities_surveyed') }}
),

final as (
    select
        cast(cities.municipality_code as varchar) as municipality_code,
        cast(cities.name_fi as varchar) as city_name_fi,
        cast(cities.name_sv as varchar) as city_name_sv,
        cast(cities.region_code as varchar) as region_code,
        cast(cities.region_name_fi as varchar) as region_name_fi,
        cast(cities.region_name_sv as varchar) as region_name_sv,
        cast(cities.population_2015 as integer) as population_2015,
        cast(cities.population_2017 as integer) as population_2017,
        cast(cities.population_2018 as integer) as population_2018,
        cast(cities.rank_2018 as integer) as population_rank_2018,
        surveyed.municipality_code is not null as is_surveyed
    from cities
    left join surveyed
        on cities.municipality_code = surveyed.municipality_code
)

select * from final
