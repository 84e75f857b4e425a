{{
    config(
        materialized='incremental',
        incremental_strategy='merge',
        unique_key='minute_bucket',
        on_schema_change='fail'
    )
}}

{#-
  Sales per UTC minute of order time: GMV in USD over fully paid orders, and their count.
  Incremental runs find the orders changed since the watermark (the newest updated_ts already processed, kept
  in last_updated_ts) and recompute every minute those orders are in or have left, in full, from all orders of
  the minute. A late payment therefore restates its old minute, and a minute whose last paid order was
  refunded or moved away is rewritten with gmv 0. Each currency is converted before summing: GMV is never a
  sum of mixed currencies. gmv keeps full precision (amount × rate is exact); round only for display.
-#}

with

order_sales as (

    select * from {{ ref('int_order_sales') }}

),

fx_rates as (

    select * from {{ ref('fx_rates') }}

),

{% if is_incremental() %}

watermark as (

    {{ watermark(this, 'last_updated_ts') }}

),

changed_orders as (

    select distinct order_sales.order_id
    from order_sales
    cross join watermark
    where watermark.updated_after is null
       or order_sales.updated_ts > watermark.updated_after

),

{% endif %}

affected_minutes as (

    select distinct order_sales.minute_bucket
    from order_sales
    {% if is_incremental() %}
    inner join changed_orders
        on order_sales.order_id = changed_orders.order_id
    {% endif %}

),

minute_orders as (

    select order_sales.*
    from order_sales
    inner join affected_minutes
        on order_sales.minute_bucket = affected_minutes.minute_bucket

),

paid_orders_usd as (

    select
        minute_orders.minute_bucket,
        minute_orders.total_amount * fx_rates.fx_to_usd as gmv_usd

    from minute_orders
    inner join fx_rates
        on minute_orders.currency = fx_rates.currency
    where minute_orders.is_current
      and minute_orders.fully_paid

),

minute_sales as (

    select
        minute_bucket,
        sum(gmv_usd) as gmv,
        count(*) as paid_orders

    from paid_orders_usd
    group by minute_bucket

),

minute_changes as (

    select
        minute_bucket,
        max(updated_ts) as last_updated_ts

    from minute_orders
    group by minute_bucket

),

final as (

    select
        minute_changes.minute_bucket,
        cast(coalesce(minute_sales.gmv, 0) as decimal(18, 6)) as gmv,
        cast(coalesce(minute_sales.paid_orders, 0) as bigint) as paid_orders,
        minute_changes.last_updated_ts,
        {{ dbt.current_timestamp() }} as processed_ts

    from minute_changes
    left join minute_sales
        on minute_changes.minute_bucket = minute_sales.minute_bucket

)

select * from final
