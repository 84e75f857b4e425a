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

),

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
