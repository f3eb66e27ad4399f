-- Each wave's published history, step by step: every load the wave's marts were published from, up to the load they
-- are built from now, paired with the load before it. A step is what the later load changed, and the kind says what
-- made that load: another file (a re-delivery), or the same file read again under another codebook or wave spec.
with loads as (
    select * from {{ ref('stg_survey__loads') }}
),

-- what each load's reading depended on besides the file (the loader's fingerprints)
readings as (
    select
        load_id,
        spec_sha256,
        codebook_sha256
    from {{ source('survey_raw', 'load_registry') }}
),

built as (
    select
        wave_year,
        loaded_at
    from loads
    where is_current_load
),

-- published once (even if later superseded or withdrawn) or being published now, never after the load the marts are
-- built from
published as (
    select
        loads.load_id,
        loads.wave_year,
        loads.file_sha256,
        loads.loaded_at,
        loads.accepted_removals,
        loads.is_current_load,
        readings.spec_sha256,
        readings.codebook_sha256
    from loads
    inner join built
        on loads.wave_year = built.wave_year
        and loads.loaded_at <= built.loaded_at
    left join readings
        on loads.load_id = readings.load_id
    where loads.is_current_load or loads.was_published
),

paired as (
    select
        published.*,
        lag(published.load_id) over (partition by published.wave_year order by published.loaded_at)
            as previous_load_id,
        lag(published.file_sha256) over (partition by published.wave_year order by published.loaded_at)
            as previous_file_sha256,
        lag(published.spec_sha256) over (partition by published.wave_year order by published.loaded_at)
            as previous_spec_sha256,
        lag(published.codebook_sha256) over (partition by published.wave_year order by published.loaded_at)
            as previous_codebook_sha256
    from published
),

final as (
    select
        load_id,
        previous_load_id,
        wave_year,
        loaded_at,
        accepted_removals,
        is_current_load,
        case
            when (file_sha256 is distinct from previous_file_sha256) then 'redelivery'
            when (codebook_sha256 is distinct from previous_codebook_sha256) then 'codebook'
            when (spec_sha256 is distinct from previous_spec_sha256) then 'wave_spec'
            else 'reread'
        end as correction_kind,
        (codebook_sha256 is distinct from previous_codebook_sha256) as is_codebook_changed
    from paired
    where previous_load_id is not null
)

select * from final
