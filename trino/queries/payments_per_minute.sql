-- Payments per minute, last 60 minutes: attempts (captured + failed), failures, failure rate, captures and refunds per UTC minute of payment time, newest first.
-- Run: docker compose exec trino trino --catalog delta --file /opt/ecomlake-queries/payments_per_minute.sql
SELECT
    minute_bucket,
    sum(attempts) AS attempts,
    sum(failures) AS failures,
    round(100.0 * sum(failures) / nullif(sum(attempts), 0), 2) AS failure_rate_pct,
    sum(captures) AS captures,
    sum(refunds) AS refunds
FROM gold.fct_payments_minute
WHERE minute_bucket > current_timestamp - INTERVAL '60' MINUTE
GROUP BY minute_bucket
ORDER BY minute_bucket DESC;
