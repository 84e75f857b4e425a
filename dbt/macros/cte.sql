{#-
  Keyword placed after `name as` in a CTE that a query reads twice but that must stay inlined. DuckDB
  materializes such a CTE, and a materialized CTE has no row estimate: the join of a few thousand changed orders
  to a day of order state then builds its hash table on the day (30M rows) instead of probing it. Trino inlines
  every CTE.
-#}
{% macro inlined_cte() -%}
    {{ return(adapter.dispatch('inlined_cte')()) }}
{%- endmacro %}

{% macro default__inlined_cte() -%}
    {{ return('') }}
{%- endmacro %}

{% macro duckdb__inlined_cte() -%}
    {{ return('not materialized') }}
{%- endmacro %}
