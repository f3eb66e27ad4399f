with source as (
    select * from {{ source('survey_raw', 'load_registry') }}
),

candidates as (
    select wave_year from source
    where status = 'candidate'
),

final as (
    select
        source.load_id,
        source.wave_year,
        source.file_name,
        source.file_sha256,
        source.row_count as raw_row_count,
        source.accepted_count,
        source.quarantined_count,
        source.loaded_at,
        source.status as load_status,
        source.status_at as load_status_at,
        source.is_current,
        -- the load the marts are built from: a wave's candidate, else its current load
        coalesce(
            source.status = 'candidate'
            or (source.is_current and source.wave_year not in (select candidates.wave_year from candidates)),
            false
        ) as is_current_load,
        -- respondents (r-<first 8 characters of the pseudonym>) and cities a re-delivery was allowed to drop
        coalesce(source.accepted_removals, '') as accepted_removals,
        source.questionnaire_version,
        source.field_period_start,
        source.field_period_end
    from source
)

select * from final
