with

source as (

    select * from {{ source('silver', 'order_payments_enriched') }}

),

renamed as (

    select
        order_id,
        user_id,
        currency,
        status,
        fully_paid,
        cast(total_amount as decimal(18, 2)) as total_amount,
        cast(paid_amount as decimal(18, 2)) as paid_amount,
        order_ts,
        {{ dbt.date_trunc('minute', 'order_ts') }} as minute_bucket,
        last_payment_ts,
        first_published_ts,
        last_published_ts,
        updated_ts

    from source

)

select * from renamed
