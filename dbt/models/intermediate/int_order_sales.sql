{{
    config(
        materialized='incremental',
        incremental_strategy='merge',
        unique_key=['order_id', 'minute_bucket'],
        on_schema_change='fail'
    )
}}

{#-
  Order-level sales state: for each order its current minute (is_current) and every minute it was bucketed in
  before (order_ts can move, e.g. when a late order_created precedes the event first seen). Incremental runs
  take only the silver rows changed since the watermark; an order that moved leaves a stale row that tells
  fct_sales_minute to recompute the minute it left.
  Finding an order's previous row reads only rows published since the changed orders were first published: the
  row was built from the order's silver row then, and last_published_ts only grows (its events and payments are
  kept), so it is not older than the order's first_published_ts now. With history a constant lower bound lets
  DuckDB skip the row groups of the day behind, which a join by random order ids cannot.
-#}

{%- set updated_after = watermark(this, 'updated_ts') if is_incremental() else none %}
{%- set published_since = changed_rows_earliest(ref('stg_order_payments_enriched'), 'first_published_ts',
                                                'updated_ts', updated_after) if updated_after is not none else none %}

with

orders as (

    select * from {{ ref('stg_order_payments_enriched') }}

),

changed_orders as {{ inlined_cte() }} (

    select
        orders.order_id,
        orders.minute_bucket,
        orders.currency,
        orders.total_amount,
        orders.fully_paid,
        orders.last_published_ts,
        orders.updated_ts

    from orders
    {% if updated_after is not none %}
    where orders.updated_ts > {{ updated_after }}
    {% endif %}

),

current_minutes as (

    select
        order_id,
        minute_bucket,
        true as is_current,
        currency,
        total_amount,
        fully_paid,
        last_published_ts,
        updated_ts

    from changed_orders

),

{% if is_incremental() %}

left_minutes as (

    select
        previous.order_id,
        previous.minute_bucket,
        false as is_current,
        previous.currency,
        previous.total_amount,
        previous.fully_paid,
        previous.last_published_ts,
        changed_orders.updated_ts

    from {{ this }} as previous
    inner join changed_orders
        on previous.order_id = changed_orders.order_id
       and previous.minute_bucket <> changed_orders.minute_bucket
    where previous.is_current
    {% if published_since is not none %}
      and previous.last_published_ts >= {{ published_since }}
    {% endif %}

),

{% endif %}

final as (

    select * from current_minutes
    {% if is_incremental() %}
    union all
    select * from left_minutes
    {% endif %}

)

select * from final
