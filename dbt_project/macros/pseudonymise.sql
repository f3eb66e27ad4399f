{#-
  Keyed hash of a personal identifier (the respondent's e-mail address). The key comes from
  SURVEY_PSEUDONYM_KEY; the development default is refused when SURVEY_ENV=production.
  Without the key the pseudonyms cannot be recomputed from a list of addresses.
-#}
{% macro pseudonym_key() -%}
    {%- set default_key = 'development-only-pseudonym-key' -%}
    {%- set key = env_var('SURVEY_PSEUDONYM_KEY', default_key) -%}
    {%- if key == default_key and env_var('SURVEY_ENV', 'development') == 'production' -%}
        {{ exceptions.raise_compiler_error("SURVEY_PSEUDONYM_KEY must be set in production (SURVEY_ENV=production)") }}
    {%- endif -%}
    {{ return(key) }}
{%- endmacro %}

{% macro pseudonymise(expression) -%}
    {{ return(adapter.dispatch('pseudonymise', 'survey_warehouse')(expression)) }}
{%- endmacro %}

{% macro default__pseudonymise(expression) -%}
    sha256(concat('{{ pseudonym_key() }}', '|', {{ expression }}))
{%- endmacro %}

{% macro postgres__pseudonymise(expression) -%}
    encode(sha256(convert_to(concat('{{ pseudonym_key() }}', '|', {{ expression }}), 'UTF8')), 'hex')
{%- endmacro %}

{#- A respondent is identified by their e-mail address; a row without one gets a key of its own. -#}
{% macro respondent_key(email, wave_year, source_row_number) -%}
    {{ pseudonymise("coalesce(" ~ normalise_label(email) ~ ", concat('no-email:', cast(" ~ wave_year ~ " as varchar), ':', cast(" ~ source_row_number ~ " as varchar)))") }}
{%- endmacro %}
