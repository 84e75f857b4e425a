{{
    config(
        materialized='incremental',
        incremental_strategy='merge',
        unique_key=['minute_bucket', 'currency'],
        on_schema_change='fail'
    )
}}

{#-
  fct_sales_minute split by the order's currency: GMV in the currency itself and converted to USD (the same
  fx_rates conversion, so summing gmv_usd over currencies gives fct_sales_minute's gmv exactly). Same
  incremental rule: the minutes of orders changed since the watermark are recomputed in full, for every
  currency, so a late payment restates its old minute and a (minute, currency) that lost its paid orders is
  rewritten with 0.
-#}

with

{{ sales_minute_orders(this) }},

currency_sales as (

    select
        minute_bucket,
        currency,
        sum(gmv_local) as gmv_local,
        sum(gmv_usd) as gmv_usd,
        count(*) as paid_orders

    from paid_orders
    group by minute_bucket, currency

),

minute_changes as (

    select
        minute_bucket,
        currency,
        max(updated_ts) as last_updated_ts

    from minute_orders
    group by minute_bucket, currency

),

final as (

    select
        minute_changes.minute_bucket,
        minute_changes.currency,
        cast(coalesce(currency_sales.gmv_local, 0) as decimal(18, 2)) as gmv_local,
        cast(coalesce(currency_sales.gmv_usd, 0) as decimal(18, 6)) as gmv_usd,
        cast(coalesce(currency_sales.paid_orders, 0) as bigint) as paid_orders,
        minute_changes.last_updated_ts,
        {{ dbt.current_timestamp() }} as processed_ts

    from minute_changes
    left join currency_sales
        on minute_changes.minute_bucket = currency_sales.minute_bucket
       and minute_changes.currency = currency_sales.currency

)

select * from final
