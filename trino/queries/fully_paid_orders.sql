-- Fully paid orders, last 60 minutes: newest first, with what was paid and when the last payment arrived.
-- Run: docker compose exec trino trino --catalog delta --file /opt/ecomlake-queries/fully_paid_orders.sql
SELECT
    order_id,
    user_id,
    currency,
    total_amount,
    paid_amount,
    order_ts,
    last_payment_ts,
    updated_ts
FROM silver.order_payments_enriched
WHERE fully_paid
  AND order_ts >= current_timestamp - INTERVAL '60' MINUTE
ORDER BY order_ts DESC
LIMIT 100;
