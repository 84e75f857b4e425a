-- Total GMV and paid orders: everything gold holds, in USD.
-- Run: docker compose exec trino trino --catalog delta --file /opt/ecomlake-queries/total_gmv.sql
SELECT sum(gmv) AS gmv_usd, sum(paid_orders) AS paid_orders, count(*) AS minutes
FROM gold.fct_sales_minute;
