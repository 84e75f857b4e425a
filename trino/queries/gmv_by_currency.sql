-- GMV by currency, last 60 minutes: fully paid orders' GMV in each order currency and converted to USD.
-- Run: docker compose exec trino trino --catalog delta --file /opt/ecomlake-queries/gmv_by_currency.sql
SELECT
    currency,
    round(sum(gmv_local), 2) AS gmv_local,
    round(sum(gmv_usd), 2) AS gmv_usd,
    sum(paid_orders) AS paid_orders
FROM gold.fct_sales_currency_minute
WHERE minute_bucket > current_timestamp - INTERVAL '60' MINUTE
GROUP BY currency
ORDER BY gmv_usd DESC, currency;
