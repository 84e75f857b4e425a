-- Gold freshness: the bronze ingest time of the newest payment event gold holds, and when gold last recomputed a minute.
-- Run: docker compose exec trino trino --catalog delta --file /opt/ecomlake-queries/gold_freshness.sql
SELECT
    max(last_ingest_ts) AS newest_ingest_ts,
    max(processed_ts) AS last_build_ts
FROM gold.fct_payments_minute;
