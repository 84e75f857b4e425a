-- Quarantine by reason, last 60 minutes: events that broke the data contract, per reason code.
-- Run: docker compose exec trino trino --catalog delta --file /opt/ecomlake-queries/quarantine_by_reason.sql
SELECT
    reason_code,
    sum(events) AS events
FROM gold.fct_quarantine_minute
WHERE minute_bucket > current_timestamp - INTERVAL '60' MINUTE
GROUP BY reason_code
ORDER BY events DESC, reason_code;
