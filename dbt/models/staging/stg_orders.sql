with

source as (

    select * from {{ source('silver', 'orders_clean') }}

),

renamed as (

    select
        order_id,
        event_id as last_event_id,
        event_type as last_event_type,
        user_id,
        currency,
        status,
        cast(total_amount as decimal(18, 2)) as total_amount,
        order_ts,
        {{ dbt.date_trunc('minute', 'order_ts') }} as minute_bucket,
        event_ts as last_event_ts,
        ingest_ts

    from source

)

select * from renamed
