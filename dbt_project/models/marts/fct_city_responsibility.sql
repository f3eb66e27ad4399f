with rollup as (
    select * from {{ ref('int_city_responsibilities_rolled_up') }}
),

responsibilities as (
    select * from {{ ref('responsibilities') }}
),

final as (
    select
        cast(rollup.wave_year as varchar) || '-' || rollup.municipality_code as city_wave_id,
        cast(rollup.wave_year as integer) as wave_year,
        cast(rollup.municipality_code as varchar) as municipality_code,
        cast(rollup.has_responded as boolean) as has_responded,
        cast(rollup.responsibility_code as varchar) as responsibility_code,
        cast(responsibilities.is_it_management as boolean) as is_it_led,
        cast(rollup.rollup_method as varchar) as rollup_method,
        cast(rollup.respondents_answered as integer) as respondents_answered,
        cast(rollup.key_respondents_answered as integer) as key_respondents_answered,
        cast(rollup.respondents_agreeing as integer) as respondents_agreeing,
        cast(rollup.is_contested as boolean) as is_contested
    from rollup
    left join responsibilities
        on rollup.responsibility_code = responsibilities.responsibility_code
)

select * from final
