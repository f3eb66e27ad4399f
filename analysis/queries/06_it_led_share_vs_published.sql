-- Question: does the IT-led share computed from the respondent-level data agree with the survey's published
-- headline for each wave? The share, its 95 % Wilson interval and the published statement as a range.
-- Reads: marts.fct_responsibility_shares, marts.dim_year. Rounded as numeric (PostgreSQL rounds no double to
-- decimals).
select
    y.wave_year,
    s.cities as it_led_cities,
    s.cities_responded,
    round(cast(s.share as numeric), 3) as it_led_share,
    round(cast(s.share_ci_lower_95 as numeric), 3) as ci_low,
    round(cast(s.share_ci_upper_95 as numeric), 3) as ci_high,
    y.published_it_led_statement_en,
    y.published_it_led_statement_fi,
    s.share > y.published_it_led_share_min_exclusive
    and s.share <= y.published_it_led_share_max_inclusive as within_published_range
from marts.fct_responsibility_shares as s
inner join marts.dim_year as y on s.wave_year = y.wave_year
where s.is_it_management
order by y.wave_year;
