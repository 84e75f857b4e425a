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
-#}

{%- set updated_after = watermark(this, 'updated_ts') if is_incremental() else none %}

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
        changed_orders.updated_ts

    from {{ this }} as previous
    inner join changed_orders
        on previous.order_id = changed_orders.order_id
       and previous.minute_bucket <> changed_orders.minute_bucket
    where previous.is_current

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
