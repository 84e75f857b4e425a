-- GMV per minute, last 60 minutes: GMV (USD), paid orders and average order value (USD) per minute, newest first.
-- Run: docker compose exec trino trino --catalog delta --file /opt/ecomlake-queries/recent_sales.sql
SELECT
    minute_bucket,
    round(gmv, 2) AS gmv_usd,
    paid_orders,
    round(gmv / nullif(paid_orders, 0), 2) AS aov_usd,
    processed_ts
FROM gold.vw_sales_last_60min
ORDER BY minute_bucket DESC;
