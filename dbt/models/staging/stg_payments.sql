with

source as (

    select * from {{ source('silver', 'payments_clean') }}

),

renamed as (

    select
        event_id as payment_event_id,
        payment_id,
        order_id,
        cast(amount as decimal(18, 2)) as amount,
        amount_cents,
        currency,
        status as payment_status,
        method as payment_method,
        event_ts as payment_ts,
        ingest_ts

    from source

)

select * from renamed
