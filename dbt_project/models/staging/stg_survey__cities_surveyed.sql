with source as (
    select * from {{ source('survey_raw', 'wave_cities_surveyed') }}
    where load_id in (
        select load_id from {{ source('survey_raw', 'load_registry') }} where is_current
    )
),

final as (
    select
        wave_year,
        municipality_code
    from source
)

select * from final
