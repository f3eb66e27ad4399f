-- One row per city and period in which its name, code and region held: a municipal merger or a renaming is a new
-- row (valid_from / valid_to), not a new column. Populations by year are in fct_city_population. A period open at
-- either end (empty in the seed) runs from 1900-01-01 or to 9999-12-31, so that a date joins with `between`.
with cities as (
    select * from {{ ref('cities') }}
),

surveyed as (
    select distinct municipality_code from {{ ref('stg_survey__cities_surveyed') }}
),

final as (
    select
        cast(cities.municipality_code as varchar) || '-'
        || coalesce(cast(cities.valid_from as varchar), 'always') as city_key,
        cast(cities.municipality_code as varchar) as municipality_code,
        cast(cities.name_fi as varchar) as city_name_fi,
        cast(cities.name_sv as varchar) as city_name_sv,
        cast(cities.region_code as varchar) as region_code,
        cast(cities.region_name_fi as varchar) as region_name_fi,
        cast(cities.region_name_sv as varchar) as region_name_sv,
        cast(coalesce(cities.valid_from, cast('1900-01-01' as date)) as date) as valid_from,
        cast(coalesce(cities.valid_to, cast('9999-12-31' as date)) as date) as valid_to,
        cities.valid_to is null as is_current,
        surveyed.municipality_code is not null as is_surveyed
    from cities
    left join surveyed
        on cities.municipality_code = surveyed.municipality_code
)

select * from final
