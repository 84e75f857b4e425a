"""silver_jobs: on demand, a silver catch-up or backfill, then the Trino table registration.

On the cluster stack silver runs as the compose `silver` service, a cycle on every bronze commit, so nothing here
is scheduled. Trigger this DAG for a catch-up or backfill in Airflow (after deleting silver to rebuild it from
bronze, say) with the services stopped (`docker compose stop silver gold`; gold_dbt then follows on the silver
asset), and start them again afterwards: run silver either here or as the service, never both. Silver's lock
admits one writer, so the second one fails (this task, or the service, which Docker then restarts).

`ecomlake silver` processes the bronze rows that arrived since its last run (orders_clean, payments_clean,
order_payments_enriched, quarantine); `ecomlake register-tables` makes any table written for the first time
visible in Trino. The registration task updates the silver asset, which schedules gold_dbt.

On the embedded stack (DBT_TARGET=duckdb) there is no Trino: gold reads silver by path, so register_tables only
says so and succeeds, and still updates the asset.
"""

from __future__ import annotations

from airflow.sdk import DAG

from ecomlake_common import DEFAULT_ARGS, SILVER_ASSET, START_DATE, EcomlakeCommand, command, register_tables_command

with DAG(
    dag_id="silver_jobs",
    description="On demand: silver catch-up or backfill (with the silver service stopped); updates the silver asset",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["ecomlake", "silver", "on-demand"],
    doc_md=__doc__,
):
    silver = EcomlakeCommand(task_id="silver", bash_command=command("silver"))
    register = EcomlakeCommand(task_id="register_tables", bash_command=register_tables_command(),
                               outlets=[SILVER_ASSET])
    silver >> register
