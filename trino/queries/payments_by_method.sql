-- Payments by method, last 60 minutes: captured and refunded amounts (USD), attempts and failure rate per payment method.
-- Run: docker compose exec trino trino --catalog delta --file /opt/ecomlake-queries/payments_by_method.sql
SELECT
    payment_method,
    round(sum(captured_usd), 2) AS captured_usd,
    round(sum(refunded_usd), 2) AS refunded_usd,
    sum(attempts) AS attempts,
    sum(failures) AS failures,
    round(100.0 * sum(failures) / nullif(sum(attempts), 0), 2) AS failure_rate_pct
FROM gold.fct_payments_minute
WHERE minute_bucket > current_timestamp - INTERVAL '60' MINUTE
GROUP BY payment_method
ORDER BY captured_usd DESC, payment_method;
