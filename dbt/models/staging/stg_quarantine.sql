with

source as (

    select * from {{ source('silver', 'quarantine') }}

),

renamed as (

    select
        source_table,
        topic,
        {{ adapter.quote('partition') }} as kafka_partition,
        {{ adapter.quote('offset') }} as kafka_offset,
        raw_key,
        raw_value,
        raw_value_b64,
        reason,
        {{ dbt.split_part('reason', "':'", 1) }} as reason_code,
        kafka_timestamp,
        quarantined_ts

    from source

)

select * from renamed
