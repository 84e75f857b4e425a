{#-
  The incremental watermark of `relation`: the newest `column` value already processed, minus the lookback
  (var watermark_lookback_minutes). Rows with `column` greater than it are (re)processed.
  It is taken from the data itself, not from the clock of the run, so a silver commit that lands after a gold
  run but carries an older timestamp is still seen (the lookback covers commits that land out of order).
  It is read before the model's query and written into it as a literal: a constant lets Trino's Delta connector
  skip files by their statistics and DuckDB skip row groups (its delta_scan opens every file: it passes no
  timestamp filter to the Delta kernel, docs/architecture.md), where a value joined in at run time makes them read
  every row of a day's history. none when `relation` holds no rows (process all).
  In a dbt unit test `relation` is a fixture CTE of the test's query, which a query of its own cannot read: there
  the same value is a scalar subquery.
-#}
{% macro watermark(relation, column) -%}
    {%- if not execute -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set newest = dbt.dateadd('minute', -1 * var('watermark_lookback_minutes') | int, 'max(' ~ column ~ ')') -%}
    {%- if is_fixture(relation) -%}
        {{ return('(select ' ~ newest ~ ' from ' ~ relation ~ ')') }}
    {%- endif -%}
    {%- set query -%}
        select cast({{ newest }} as varchar) from {{ relation }}
    {%- endset -%}
    {%- set value = run_query(query).columns[0].values()[0] -%}
    {{ return(none if value is none else timestamp_literal(value)) }}
{%- endmacro %}

{#- A timestamp-with-time-zone literal of `text` (as the database prints one), microseconds kept. -#}
{% macro timestamp_literal(text) -%}
    {{ return(adapter.dispatch('timestamp_literal')(text)) }}
{%- endmacro %}

{% macro default__timestamp_literal(text) -%}
    {{ return("cast('" ~ text ~ "' as timestamp with time zone)") }}
{%- endmacro %}

{% macro trino__timestamp_literal(text) -%}
    {{ return("cast('" ~ text ~ "' as timestamp(6) with time zone)") }}
{%- endmacro %}

{#-
  The minutes the rows of `relation` changed since `after` fall in, by `column`: [first minute, last minute + 1)
  as two literals, read before the model's query for the same reason as the watermark. A model that recomputes
  those minutes in full then reads only their span, not the whole history; an empty range when nothing changed.
-#}
{% macro changed_minutes_span(relation, column, changed_column, after) -%}
    {%- set first = dbt.date_trunc('minute', 'min(' ~ column ~ ')') -%}
    {%- set last = dbt.dateadd('minute', 1, dbt.date_trunc('minute', 'max(' ~ column ~ ')')) -%}
    {%- if is_fixture(relation) -%}
        {%- set changed = ' from ' ~ relation ~ ' where ' ~ changed_column ~ ' > ' ~ after ~ ')' -%}
        {{ return(['(select ' ~ first ~ changed, '(select ' ~ last ~ changed]) }}
    {%- endif -%}
    {%- set query -%}
        select cast({{ first }} as varchar), cast({{ last }} as varchar)
        from {{ relation }}
        where {{ changed_column }} > {{ after }}
    {%- endset -%}
    {%- set row = run_query(query).rows[0] -%}
    {%- if row[0] is none -%}
        {{ return([after, after]) }}
    {%- endif -%}
    {{ return([timestamp_literal(row[0]), timestamp_literal(row[1])]) }}
{%- endmacro %}

{#-
  The earliest `column` value among the rows of `relation` changed since `after`, as a literal read before the
  model's query (as the watermark): a lower bound a model can filter another table on, so that it reads only the
  rows that can belong to the changed ones. none when a changed row has no `column` (no bound can be given), `after`
  when nothing changed. In a unit test, a scalar subquery on the fixture.
-#}
{% macro changed_rows_earliest(relation, column, changed_column, after) -%}
    {%- if not execute -%}
        {{ return(none) }}
    {%- endif -%}
    {%- if is_fixture(relation) -%}
        {{ return('(select min(' ~ column ~ ') from ' ~ relation ~ ' where ' ~ changed_column ~ ' > ' ~ after ~ ')') }}
    {%- endif -%}
    {%- set query -%}
        select cast(min({{ column }}) as varchar), count(*), count({{ column }})
        from {{ relation }}
        where {{ changed_column }} > {{ after }}
    {%- endset -%}
    {%- set rows = run_query(query).rows -%}
    {%- if not rows -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set row = rows[0] -%}
    {%- if row[1] == 0 -%}
        {{ return(after) }}
    {%- endif -%}
    {{ return(none if row[1] != row[2] else timestamp_literal(row[0])) }}
{%- endmacro %}

{#- A unit test's fixture, which dbt renders as a CTE of the test's query (__dbt__cte__<name>). -#}
{% macro is_fixture(relation) -%}
    {{ return((relation | string).startswith('__dbt__cte__')) }}
{%- endmacro %}
