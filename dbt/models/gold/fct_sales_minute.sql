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

{{ sales_minute_orders(this) }},

minute_sales as (

    select
        minute_bucket,
        sum(gmv_usd) as gmv,
        count(*) as paid_orders

    from paid_orders
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
