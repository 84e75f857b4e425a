{{
    config(
        materialized='incremental',
        incremental_strategy='merge',
        unique_key=['minute_bucket', 'payment_method'],
        on_schema_change='fail'
    )
}}

{#-
  Payment outcomes per UTC minute of payment time and method: the live dashboard's failure-rate and refund panels.
  An attempt is a payment that reached an outcome: captured or failed (an authorization is a step, not an
  outcome: authorized-then-captured under one payment_id is one attempt). So a failed payment retried under a
  new payment_id counts two attempts, one failure and one capture; a refund is counted apart, not as an attempt.
  Amounts are converted to USD with fx_rates before summing, like the sales facts.
  Incremental runs find the payment events ingested since the watermark (the newest ingest_ts already
  processed, kept in last_ingest_ts) and recompute every (minute, method) they fall in, in full: a capture that
  arrives late, with an old event_ts, restates its old minute. They read only the payments in the span of minutes
  those events fall in (changed_minutes_span), so the scan follows the increment, not the day behind it.
-#}

{%- set ingested_after = watermark(this, 'last_ingest_ts') if is_incremental() else none %}
{%- if ingested_after is not none %}
{%- set span = changed_minutes_span(ref('stg_payments'), 'payment_ts', 'ingest_ts', ingested_after) %}
{%- endif %}

with

payments as (

    select * from {{ ref('stg_payments') }}

),

fx_rates as (

    select * from {{ ref('fx_rates') }}

),

bucketed as (

    select
        {{ dbt.date_trunc('minute', 'payment_ts') }} as minute_bucket,
        payment_method,
        payment_status,
        amount,
        currency,
        ingest_ts

    from payments
    {% if ingested_after is not none %}
    where payments.payment_ts >= {{ span[0] }}
      and payments.payment_ts < {{ span[1] }}
    {% endif %}

),

affected as (

    select distinct minute_bucket, payment_method
    from bucketed
    {% if ingested_after is not none %}
    where ingest_ts > {{ ingested_after }}
    {% endif %}

),

minute_payments as (

    select
        bucketed.minute_bucket,
        bucketed.payment_method,
        bucketed.payment_status,
        bucketed.amount * fx_rates.fx_to_usd as amount_usd,
        bucketed.ingest_ts

    from bucketed
    inner join affected
        on bucketed.minute_bucket = affected.minute_bucket
       and bucketed.payment_method = affected.payment_method
    inner join fx_rates
        on bucketed.currency = fx_rates.currency

),

final as (

    select
        minute_bucket,
        payment_method,
        cast(sum(case when payment_status in ('captured', 'failed') then 1 else 0 end) as bigint) as attempts,
        cast(sum(case when payment_status = 'captured' then 1 else 0 end) as bigint) as captures,
        cast(sum(case when payment_status = 'failed' then 1 else 0 end) as bigint) as failures,
        cast(sum(case when payment_status = 'refunded' then 1 else 0 end) as bigint) as refunds,
        cast(sum(case when payment_status = 'authorized' then 1 else 0 end) as bigint) as authorizations,
        cast(coalesce(sum(case when payment_status = 'captured' then amount_usd end), 0) as decimal(18, 6)) as captured_usd,
        cast(coalesce(sum(case when payment_status = 'refunded' then amount_usd end), 0) as decimal(18, 6)) as refunded_usd,
        max(ingest_ts) as last_ingest_ts,
        {{ dbt.current_timestamp() }} as processed_ts

    from minute_payments
    group by minute_bucket, payment_method

)

select * from final
