with source as (
    select * from {{ source('survey_raw', 'load_registry') }}
),

candidates as (
    select wave_year from source where status = 'candidate'
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
        -- the load the marts are built from: a wave's candidate, else its current load
        coalesce(
            status = 'candidate' or (is_current and wave_year not in (select wave_year from candidates)), false
        ) as is_current_load,
        -- respondents (r-<first 8 characters of the pseudonym>) and cities a re-delivery was allowed to drop
        coalesce(accepted_removals, '') as accepted_removals,
        questionnaire_version,
        field_period_start,
        field_period_end
    from source
)

select * from final
