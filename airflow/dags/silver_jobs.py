"""silver_jobs: every 5 minutes, the incremental silver jobs, then the Trino table registration.

`ecomlake silver` processes the bronze rows that arrived since its last run (orders_clean, payments_clean,
order_payments_enriched, quarantine); `ecomlake register-tables` makes any table written for the first time
visible in Trino. The registration task updates the silver asset, which schedules gold_dbt.

On the embedded stack (DBT_TARGET=duckdb) there is no Trino: gold reads silver by path, so register_tables only
says so and succeeds, and still updates the asset.
"""

from __future__ import annotations

from airflow.sdk import DAG

from ecomlake_common import (DEFAULT_ARGS, EcomlakeCommand, SILVER_ASSET, START_DATE, command,
                             register_tables_command)

with DAG(
    dag_id="silver_jobs",
    description="Incremental silver jobs every 5 minutes; updates the silver asset",
    schedule="*/5 * * * *",
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["ecomlake", "silver"],
    doc_md=__doc__,
):
    silver = EcomlakeCommand(task_id="silver", bash_command=command("silver"))
    register = EcomlakeCommand(task_id="register_tables", bash_command=register_tables_command(),
                               outlets=[SILVER_ASSET])
    silver >> register
