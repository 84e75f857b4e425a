-- Fully paid ratio, last 60 minutes: the share of the last hour's orders that are fully paid.
-- Run: docker compose exec trino trino --catalog delta --file /opt/ecomlake-queries/fully_paid_ratio.sql
SELECT
    count(*) AS orders,
    count_if(fully_paid) AS fully_paid_orders,
    round(100.0 * count_if(fully_paid) / nullif(count(*), 0), 2) AS fully_paid_pct
FROM silver.order_payments_enriched
WHERE order_ts >= current_timestamp - INTERVAL '60' MINUTE;
