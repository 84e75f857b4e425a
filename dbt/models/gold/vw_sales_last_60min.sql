{{ config(materialized='view') }}

{#- What the dashboard shows: the minutes of the last hour (sales_window_minutes), evaluated at query time, with
    gmv in cents (half up, as both Trino and DuckDB round decimals). -#}

with

sales as (

    select * from {{ ref('fct_sales_minute') }}

),

final as (

    select
        minute_bucket,
        cast(round(gmv, 2) as decimal(18, 2)) as gmv,
        paid_orders,
        processed_ts

    from sales
    where minute_bucket > {{ dbt.dateadd('minute', -1 * var('sales_window_minutes') | int, dbt.current_timestamp()) }}

)

select * from final
