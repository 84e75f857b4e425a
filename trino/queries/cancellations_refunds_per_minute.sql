-- Cancellations and refunds per minute, last 60 minutes: orders cancelled (by minute of cancellation) and refund events (by minute of payment time), newest first.
-- Run: docker compose exec trino trino --catalog delta --file /opt/ecomlake-queries/cancellations_refunds_per_minute.sql
SELECT
    minute_bucket,
    sum(cancelled_orders) AS cancelled_orders,
    sum(refunds) AS refunds
FROM (
    SELECT minute_bucket, cancelled_orders, 0 AS refunds
    FROM gold.fct_cancellations_minute
    UNION ALL
    SELECT minute_bucket, 0 AS cancelled_orders, refunds
    FROM gold.fct_payments_minute
) AS events
WHERE minute_bucket > current_timestamp - INTERVAL '60' MINUTE
GROUP BY minute_bucket
HAVING sum(cancelled_orders) + sum(refunds) > 0
ORDER BY minute_bucket DESC;
