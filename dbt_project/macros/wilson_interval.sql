{#-
  One end of the Wilson score interval for a proportion p out of n (z = 1.96 for 95 %). sign: '-' for the lower
  end, '+' for the upper end. The end is kept on its side of p and within [0, 1], exactly: in floating point the
  formula can give 1 - 2e-16 for the upper end at p = 1 (n = 4, 10, 14, ...) or a hair off 0 for the lower end at
  p = 0, so that 0 <= lower <= p <= upper <= 1 holds on every engine.
-#}
{% macro wilson_bound(p, n, sign, z=1.959964) -%}
    {%- set bound -%}
    (({{ p }} + {{ z }} * {{ z }} / (2.0 * {{ n }})
      {{ sign }} {{ z }} * sqrt({{ p }} * (1 - {{ p }}) / {{ n }} + {{ z }} * {{ z }} / (4.0 * {{ n }} * {{ n }})))
     / (1 + {{ z }} * {{ z }} / {{ n }}))
    {%- endset -%}
    {%- if sign == '-' -%}
    least({{ p }}, greatest(0.0, {{ bound }}))
    {%- elif sign == '+' -%}
    greatest({{ p }}, least(1.0, {{ bound }}))
    {%- else -%}
    {{ exceptions.raise_compiler_error("wilson_bound: sign must be '-' or '+', not " ~ sign) }}
    {%- endif -%}
{%- endmacro %}
