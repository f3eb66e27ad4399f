with rolled_up as (
    select * from {{ ref('int_city_responsibilities_rolled_up') }}
),

responsibilities as (
    select * from {{ ref('responsibilities') }}
),

-- the latest published load of each wave that changed each city's result (int_city_responsibility_changes)
latest_changes as (
    select * from (
        select
            changes.*,
            row_number() over (
                partition by changes.wave_year, changes.municipality_code order by changes.loaded_at desc
            ) as recency
        from {{ ref('int_city_responsibility_changes') }} as changes
    ) as ranked
    where recency = 1
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
        cast(rolled_up.key_respondents_disagree as boolean) as key_respondents_disagree,
        cast(latest_changes.load_id as varchar) as corrected_by_load_id,
        cast(latest_changes.correction_kind as varchar) as correction_kind,
        cast(latest_changes.previous_has_responded as boolean) as responded_before_correction,
        cast(latest_changes.previous_responsibility_code as varchar) as responsibility_code_before_correction,
        cast(latest_changes.change_reasons as varchar) as correction_reasons
    from rolled_up
    left join responsibilities
        on rolled_up.responsibility_code = responsibilities.responsibility_code
    left join latest_changes
        on rolled_up.wave_year = latest_changes.wave_year
        and rolled_up.municipality_code = latest_changes.municipality_code
)

select * from final
