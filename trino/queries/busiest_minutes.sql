-- Busiest minutes overall: the three minutes with the highest GMV (USD).
-- Run: docker compose exec trino trino --catalog delta --file /opt/ecomlake-queries/busiest_minutes.sql
SELECT minute_bucket, round(gmv, 2) AS gmv_usd, paid_orders
FROM gold.fct_sales_minute
ORDER BY gmv DESC
LIMIT 3;
