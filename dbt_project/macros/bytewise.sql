{#-
  A text compared byte by byte, the same on every engine: DuckDB compares text by bytes, PostgreSQL by the
  database's collation unless told otherwise (under en-US, 'b_2' sorts before 'b2', in bytes after it). For orders
  that must not depend on how the server was set up.
-#}
{% macro bytewise(expression) -%}
    {{ expression }}{% if target.type == 'postgres' %} collate "C"{% endif %}
{%- endmacro %}
