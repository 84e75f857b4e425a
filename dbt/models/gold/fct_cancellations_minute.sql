{#-
  Orders cancelled per UTC minute of their cancellation (the order's latest event is order_cancelled), with
  their value in USD. Rebuilt in full on every run: one row per minute with a cancellation, over
  silver.orders_clean, which a cancellation only ever updates (no restated minutes to track).
-#}

with

orders as (

    select * from {{ ref('stg_orders') }}

),

fx_rates as (

    select * from {{ ref('fx_rates') }}

),

cancelled as (

    select
        {{ dbt.date_trunc('minute', 'orders.last_event_ts') }} as minute_bucket,
        orders.total_amount * fx_rates.fx_to_usd as amount_usd

    from orders
    inner join fx_rates
        on orders.currency = fx_rates.currency
    where orders.last_event_type = 'order_cancelled'

),

final as (

    select
        minute_bucket,
        cast(count(*) as bigint) as cancelled_orders,
        cast(sum(amount_usd) as decimal(18, 6)) as cancelled_usd,
        {{ dbt.current_timestamp() }} as processed_ts

    from cancelled
    group by minute_bucket

)

select * from final
