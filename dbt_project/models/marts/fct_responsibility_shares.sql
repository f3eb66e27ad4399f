-- For BI: per wave and responsibility, how many of the responding cities gave it primary responsibility and the
-- share. The surveyed cities are the whole population (the 20 largest), not a sample, so two readings are given:
-- the bounds the non-responding cities leave for the share of all surveyed cities (whatever they would have
-- answered), and the 95 % Wilson interval, which reads the responding cities as one draw of a process that goes on
-- from year to year. Every option the wave's questionnaire offered is listed, so shares sum to 1 per wave.
with surveyed as (
    select
        wave_year,
        count(*) as cities_surveyed
    from {{ ref('int_city_responsibilities_rolled_up') }}
    group by wave_year
),

rolled_up as (
    select * from {{ ref('int_city_responsibilities_rolled_up') }}
    where has_responded
),

offered as (
    select distinct
        wave_year,
        answer_code as responsibility_code
    from {{ ref('codebook_answers') }}
    where question_id = 'lead'
),

responsibilities as (
    select * from {{ ref('responsibilities') }}
),

waves as (
    select
        wave_year,
        count(*) as cities_responded
    from rolled_up
    group by wave_year
),

counts as (
    select
        wave_year,
        responsibility_code,
        count(*) as cities
    from rolled_up
    group by wave_year, responsibility_code
),

shares as (
    select
        waves.wave_year,
        offered.responsibility_code,
        waves.cities_responded,
        coalesce(counts.cities, 0) as cities,
        cast(coalesce(counts.cities, 0) as double precision) / waves.cities_responded as share
    from waves
    inner join offered
        on waves.wave_year = offered.wave_year
    left join counts
        on offered.wave_year = counts.wave_year
        and offered.responsibility_code = counts.responsibility_code
),

final as (
    select
        cast(shares.wave_year as varchar) || '-' || shares.responsibility_code as wave_responsibility_id,
        cast(shares.wave_year as integer) as wave_year,
        cast(shares.responsibility_code as varchar) as responsibility_code,
        cast(responsibilities.label_en as varchar) as responsibility_label_en,
        cast(responsibilities.is_it_management as boolean) as is_it_management,
        cast(shares.cities as integer) as cities,
        cast(shares.cities_responded as integer) as cities_responded,
        cast(surveyed.cities_surveyed as integer) as cities_surveyed,
        cast(shares.share as double precision) as share,
        cast(shares.cities as double precision) / surveyed.cities_surveyed as share_of_surveyed_min,
        cast(shares.cities + surveyed.cities_surveyed - shares.cities_responded as double precision)
        / surveyed.cities_surveyed as share_of_surveyed_max,
        cast({{ wilson_bound('shares.share', 'shares.cities_responded', '-') }} as double precision)
            as share_ci_lower_95,
        cast({{ wilson_bound('shares.share', 'shares.cities_responded', '+') }} as double precision)
            as share_ci_upper_95
    from shares
    inner join surveyed
        on shares.wave_year = surveyed.wave_year
    left join responsibilities
        on shares.responsibility_code = responsibilities.responsibility_code
)

select * from final
