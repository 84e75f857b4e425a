-- Headline figures, last 60 minutes: GMV (USD), paid orders, average order value, payment attempts, failures, failure rate, refunds, cancellations.
-- Run: docker compose exec trino trino --catalog delta --file /opt/ecomlake-queries/kpis_last_60min.sql
SELECT
    sales.gmv_usd,
    sales.paid_orders,
    round(sales.gmv_usd / nullif(sales.paid_orders, 0), 2) AS aov_usd,
    payments.attempts,
    payments.failures,
    round(100.0 * payments.failures / nullif(payments.attempts, 0), 2) AS failure_rate_pct,
    payments.refunds,
    cancellations.cancelled_orders
FROM (
    SELECT coalesce(sum(gmv), 0) AS gmv_usd, coalesce(sum(paid_orders), 0) AS paid_orders
    FROM gold.vw_sales_last_60min
) AS sales
CROSS JOIN (
    SELECT coalesce(sum(attempts), 0) AS attempts, coalesce(sum(failures), 0) AS failures,
           coalesce(sum(refunds), 0) AS refunds
    FROM gold.fct_payments_minute
    WHERE minute_bucket > current_timestamp - INTERVAL '60' MINUTE
) AS payments
CROSS JOIN (
    SELECT coalesce(sum(cancelled_orders), 0) AS cancelled_orders
    FROM gold.fct_cancellations_minute
    WHERE minute_bucket > current_timestamp - INTERVAL '60' MINUTE
) AS cancellations;
