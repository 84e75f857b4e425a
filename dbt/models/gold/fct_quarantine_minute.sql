{#-
  Quarantined events per UTC minute of quarantine, source table and reason code (missing_field, wrong_type, ...):
  the dashboard's data-quality panel. Rebuilt in full on every run (quarantine is small: it only holds what
  broke the contract).
-#}

with

quarantine as (

    select * from {{ ref('stg_quarantine') }}

),

final as (

    select
        {{ dbt.date_trunc('minute', 'quarantined_ts') }} as minute_bucket,
        source_table,
        reason_code,
        cast(count(*) as bigint) as events,
        {{ dbt.current_timestamp() }} as processed_ts

    from quarantine
    group by {{ dbt.date_trunc('minute', 'quarantined_ts') }}, source_table, reason_code

)

select * from final
