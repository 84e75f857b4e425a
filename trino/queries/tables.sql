-- What the delta catalog lists: every registered bronze, silver and gold table.
-- Run: docker compose exec trino trino --file /opt/ecomlake-queries/tables.sql
SELECT table_schema, table_name, table_type
FROM delta.information_schema.tables
WHERE table_schema IN ('bronze_raw', 'silver', 'gold')
ORDER BY table_schema, table_name;
