with responsibilities as (
    select * from {{ ref('responsibilities') }}
),

final as (
    select
        cast(responsibility_code as varchar) as responsibility_code,
        cast(label_fi as varchar) as responsibility_label_fi,
        cast(label_en as varchar) as responsibility_label_en,
        cast(is_it_management as boolean) as is_it_management,
        cast(sort_order as integer) as sort_order
    from responsibilities
)

select * from final
