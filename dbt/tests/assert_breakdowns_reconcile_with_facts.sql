{#-
  The dashboard's breakdowns agree with the facts they split: per minute, the currencies' gmv_usd and
  paid_orders add up to fct_sales_minute, and the payment outcomes per minute add up to the payment events in
  silver. Any returned row is a discrepancy.
-#}

with

sales as (

    select minute_bucket, gmv, paid_orders from {{ ref('fct_sales_minute') }}

),

by_currency as (

    select minute_bucket, sum(gmv_usd) as gmv, sum(paid_orders) as paid_orders
    from {{ ref('fct_sales_currency_minute') }}
    group by minute_bucket

),

sales_gaps as (

    select
        'sales_by_currency' as check_name,
        cast(coalesce(sales.minute_bucket, by_currency.minute_bucket) as {{ dbt.type_string() }}) as minute_bucket

    from sales
    full outer join by_currency
        on sales.minute_bucket = by_currency.minute_bucket
    where round(coalesce(sales.gmv, 0), 2) <> round(coalesce(by_currency.gmv, 0), 2)
       or coalesce(sales.paid_orders, 0) <> coalesce(by_currency.paid_orders, 0)

),

payments as (

    select
        {{ dbt.date_trunc('minute', 'payment_ts') }} as minute_bucket,
        sum(case when payment_status in ('captured', 'failed') then 1 else 0 end) as attempts,
        sum(case when payment_status = 'failed' then 1 else 0 end) as failures,
        sum(case when payment_status = 'refunded' then 1 else 0 end) as refunds

    from {{ ref('stg_payments') }}
    group by {{ dbt.date_trunc('minute', 'payment_ts') }}

),

payment_facts as (

    select minute_bucket, sum(attempts) as attempts, sum(failures) as failures, sum(refunds) as refunds
    from {{ ref('fct_payments_minute') }}
    group by minute_bucket

),

payment_gaps as (

    select
        'payments' as check_name,
        cast(coalesce(payments.minute_bucket, payment_facts.minute_bucket) as {{ dbt.type_string() }}) as minute_bucket

    from payments
    full outer join payment_facts
        on payments.minute_bucket = payment_facts.minute_bucket
    where coalesce(payments.attempts, 0) <> coalesce(payment_facts.attempts, 0)
       or coalesce(payments.failures, 0) <> coalesce(payment_facts.failures, 0)
       or coalesce(payments.refunds, 0) <> coalesce(payment_facts.refunds, 0)

),

final as (

    select * from sales_gaps
    union all
    select * from payment_gaps

)

select * from final
