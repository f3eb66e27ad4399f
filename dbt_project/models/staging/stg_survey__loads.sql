with source as (
    select * from {{ source('survey_raw', 'load_registry') }}
),

final as (
    select
        load_id,
        wave_year,
        file_name,
        file_sha256,
        row_count as raw_row_count,
        accepted_count,
        quarantined_count,
        loaded_at,
        status as load_status,
        status_at as load_status_at,
        is_current,
        questionnaire_version,
        field_period_start,
        field_period_end
    from source
)

select * from final
