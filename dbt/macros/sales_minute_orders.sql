{#-
  The CTEs the sales facts share, ending in `paid_orders`: every order row of each minute to recompute
  (`minute_orders`), and its fully paid current orders with their amount in the order's currency and in USD.
  A minute is recomputed when a row of int_order_sales in it changed since the fact's watermark: an order's
  current minute, and the minute it left (its stale row carries the change's updated_ts). A first build, or an
  incremental one over an empty fact, recomputes every minute. The span of those minutes is read first and written
  in as two literals (changed_minutes_span): a join with affected_minutes alone makes DuckDB scan every row of a
  day's history, a constant range lets it skip row groups by minute_bucket.
-#}
{% macro sales_minute_orders(fact) -%}
{%- set updated_after = watermark(fact, 'last_updated_ts') if is_incremental() else none -%}
{%- set span = changed_minutes_span(ref('int_order_sales'), 'minute_bucket', 'updated_ts', updated_after)
               if updated_after is not none else none -%}

order_sales as (

    select * from {{ ref('int_order_sales') }}

),

fx_rates as (

    select * from {{ ref('fx_rates') }}

),

affected_minutes as (

    select distinct order_sales.minute_bucket
    from order_sales
    {% if updated_after is not none %}
    where order_sales.updated_ts > {{ updated_after }}
    {% endif %}

),

minute_orders as (

    select order_sales.*
    from order_sales
    inner join affected_minutes
        on order_sales.minute_bucket = affected_minutes.minute_bucket
    {% if span is not none %}
    where order_sales.minute_bucket >= {{ span[0] }}
      and order_sales.minute_bucket < {{ span[1] }}
    {% endif %}

),

paid_orders as (

    select
        minute_orders.minute_bucket,
        minute_orders.currency,
        minute_orders.total_amount as gmv_local,
        minute_orders.total_amount * fx_rates.fx_to_usd as gmv_usd

    from minute_orders
    inner join fx_rates
        on minute_orders.currency = fx_rates.currency
    where minute_orders.is_current
      and minute_orders.fully_paid

)
{%- endmacro %}
