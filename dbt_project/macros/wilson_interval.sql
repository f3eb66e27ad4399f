{#- One end of the Wilson score interval for a proportion p out of n (z = 1.96 for 95 %). sign: '-' or '+'. -#}
{% macro wilson_bound(p, n, sign, z=1.959964) -%}
    (({{ p }} + {{ z }} * {{ z }} / (2.0 * {{ n }})
      {{ sign }} {{ z }} * sqrt({{ p }} * (1 - {{ p }}) / {{ n }} + {{ z }} * {{ z }} / (4.0 * {{ n }} * {{ n }})))
     / (1 + {{ z }} * {{ z }} / {{ n }}))
{%- endmacro %}
