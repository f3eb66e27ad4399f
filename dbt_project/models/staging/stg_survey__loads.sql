with source as (
    select * from {{ source('survey_raw', 'load_registry') }}
),

-- the build in progress (survey_warehouse.raw.builds): at most one; none outside a run's build
building as (
    select builds.build_id from {{ source('survey_raw', 'builds') }} as builds
    where builds.status = 'building'
),

built as (
    select build_loads.load_id from {{ source('survey_raw', 'build_loads') }} as build_loads
    where build_loads.build_id in (select building.build_id from building)
),

-- the loads the marts were ever published from: those of every published build
published as (
    select build_loads.load_id from {{ source('survey_raw', 'build_loads') }} as build_loads
    inner join {{ source('survey_raw', 'builds') }} as builds
        on build_loads.build_id = builds.build_id
    where builds.status = 'published'
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
        -- the load the marts are built from: the one the build in progress recorded for its wave, else (no build
        -- in progress) the wave's current load, the one the published marts hold
        coalesce(
            case
                when exists (select 1 from building) then source.load_id in (select built.load_id from built)
                else source.is_current
            end,
            false
        ) as is_current_load,
        -- whether the marts were ever published from this load (a load later superseded, or withdrawn with its
        -- wave, too); a load that passed its gate before builds were recorded was
        (
            source.load_id in (select published.load_id from published)
            or source.status in ('passed', 'superseded')
        ) as was_published,
        -- respondents (r-<first 8 characters of the pseudonym>) and cities a re-delivery was allowed to drop
        coalesce(source.accepted_removals, '') as accepted_removals,
        source.questionnaire_version,
        source.field_period_start,
        source.field_period_end
    from source
)

select * from final
