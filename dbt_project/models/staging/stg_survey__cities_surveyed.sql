with source as (
    select * from {{ source('survey_raw', 'wave_cities_surveyed') }}
),

loads as (
    select * from {{ ref('stg_survey__loads') }}
    where is_current_load
),

final as (
    select
        source.wave_year,
        source.municipality_code
    from source
    inner join loads
        on source.load_id = loads.load_id
)

select * from final
