"""Gold: runs the dbt project in dbt/ (DuckDB embedded, Trino on the cluster stack) over the silver tables."""
