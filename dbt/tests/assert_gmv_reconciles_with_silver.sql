{#-
  Reconciliation: gold must equal a from-scratch computation over silver, per minute (gmv, paid_orders) and in
  total, to the cent. Any returned row is a discrepancy. Catches incremental drift (a minute not restated), a
  currency summed unconverted, or fully paid orders lost on the way.
-#}

with

orders as (

    select * from {{ ref('stg_order_payments_enriched') }}

),

fx_rates as (

    select * from {{ ref('fx_rates') }}

),

gold as (

    select * from {{ ref('fct_sales_minute') }}

),

expected as (

    select
        orders.minute_bucket,
        sum(orders.total_amount * fx_rates.fx_to_usd) as gmv,
        count(*) as paid_orders

    from orders
    inner join fx_rates
        on orders.currency = fx_rates.currency
    where orders.fully_paid
    group by orders.minute_bucket

),

per_minute as (

    select
        'minute' as scope,
        cast(coalesce(gold.minute_bucket, expected.minute_bucket) as {{ dbt.type_string() }}) as minute_bucket,
        coalesce(gold.gmv, 0) as gold_gmv,
        coalesce(expected.gmv, 0) as expected_gmv,
        coalesce(gold.paid_orders, 0) as gold_paid_orders,
        coalesce(expected.paid_orders, 0) as expected_paid_orders

    from gold
    full outer join expected
        on gold.minute_bucket = expected.minute_bucket

),

total as (

    select
        'total' as scope,
        cast(null as {{ dbt.type_string() }}) as minute_bucket,
        (select coalesce(sum(gmv), 0) from gold) as gold_gmv,
        (select coalesce(sum(gmv), 0) from expected) as expected_gmv,
        (select coalesce(sum(paid_orders), 0) from gold) as gold_paid_orders,
        (select coalesce(sum(paid_orders), 0) from expected) as expected_paid_orders

),

final as (

    select * from per_minute
    where round(gold_gmv, 2) <> round(expected_gmv, 2)
       or gold_paid_orders <> expected_paid_orders

    union all

    select * from total
    where round(gold_gmv, 2) <> round(expected_gmv, 2)
       or gold_paid_orders <> expected_paid_orders

)

select * from final
