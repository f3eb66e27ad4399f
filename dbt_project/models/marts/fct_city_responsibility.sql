with rolled_up as (
    select * from {{ ref('int_city_responsibilities_rolled_up') }}
),

responsibilities as (
    select * from {{ ref('responsibilities') }}
),

final as (
    select
        cast(rolled_up.wave_year as varchar) || '-' || rolled_up.municipality_code as city_wave_id,
        cast(rolled_up.wave_year as integer) as wave_year,
        cast(rolled_up.municipality_code as varchar) as municipality_code,
        cast(rolled_up.has_responded as boolean) as has_responded,
        cast(rolled_up.responsibility_code as varchar) as responsibility_code,
        cast(responsibilities.is_it_management as boolean) as is_it_led,
        cast(rolled_up.rollup_method as varchar) as rollup_method,
        cast(rolled_up.respondents_answered as integer) as respondents_answered,
        cast(rolled_up.key_respondents_answered as integer) as key_respondents_answered,
        cast(rolled_up.respondents_agreeing as integer) as respondents_agreeing,
        cast(rolled_up.is_contested as boolean) as is_contested,
        cast(rolled_up.key_respondents_disagree as boolean) as key_respondents_disagree
    from rolled_up
    left join responsibilities
        on rolled_up.responsibility_code = responsibilities.responsibility_code
)

select * from final
