{#-
  The incremental watermark of `relation`: the newest `column` value already processed, minus the lookback
  (var watermark_lookback_minutes). Rows with `column` greater than it are (re)processed; NULL means "all".
  It is taken from the data itself, not from the clock of the run, so a silver commit that lands after a gold
  run but carries an older timestamp is still seen (the lookback covers commits that land out of order).
-#}
{% macro watermark(relation, column) -%}
    select
        {{ dbt.dateadd('minute', -1 * var('watermark_lookback_minutes') | int, 'max(' ~ column ~ ')') }} as updated_after
    from {{ relation }}
{%- endmacro %}
