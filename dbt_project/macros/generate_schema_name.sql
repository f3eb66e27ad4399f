{#- Layers get plain schema names (raw, staging, intermediate, marts, reference), the same on every target. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {{ custom_schema_name | trim if custom_schema_name else target.schema }}
{%- endmacro %}
