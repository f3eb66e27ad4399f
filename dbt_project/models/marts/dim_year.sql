with loads as (
    select * from {{ ref('stg_survey__loads') }}
    where is_current_load
),

rolled_up as (
    select * from {{ ref('int_city_responsibilities_rolled_up') }}
),

respondents as (
    select * from {{ ref('stg_survey__respondents') }}
    where is_current_load
),

published as (
    select * from {{ ref('published_figures') }}
),

-- the years the populations are given for (31 December)
population_years as (
    select distinct population_year from {{ ref('city_populations') }}
),

city_counts as (
    select
        wave_year,
        count(*) as cities_surveyed,
        sum(case when has_responded then 1 else 0 end) as cities_responded
    from rolled_up
    group by wave_year
),

respondent_counts as (
    select
        wave_year,
        count(*) as respondents
    from respondents
    group by wave_year
),

final as (
    select
        cast(loads.wave_year as integer) as wave_year,
        cast(loads.field_period_start as date) as field_period_start,
        cast(loads.field_period_end as date) as field_period_end,
        cast(loads.questionnaire_version as varchar) as questionnaire_version,
        cast(city_counts.cities_surveyed as integer) as cities_surveyed,
        cast(city_counts.cities_responded as integer) as cities_responded,
        cast(coalesce(respondent_counts.respondents, 0) as integer) as respondents,
        cast(loads.load_id as varchar) as load_id,
        cast(loads.file_name as varchar) as source_file_name,
        cast(loads.loaded_at as timestamp) as loaded_at,
        cast(published.published_statement_en as varchar) as published_it_led_statement_en,
        cast(published.published_statement_fi as varchar) as published_it_led_statement_fi,
        cast(published.share_min_exclusive as double precision) as published_it_led_share_min_exclusive,
        cast(published.share_max_inclusive as double precision) as published_it_led_share_max_inclusive,
        -- the cities' size as the wave found them: at the end of the year before the field period
        cast(population_years.population_year as integer) as population_reference_year
    from loads
    left join city_counts
        on loads.wave_year = city_counts.wave_year
    left join respondent_counts
        on loads.wave_year = respondent_counts.wave_year
    left join published
        on loads.wave_year = published.wave_year
    left join population_years
        on loads.wave_year - 1 = population_years.population_year
)

select * from final
