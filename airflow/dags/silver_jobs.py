"""silver_jobs: every 5 minutes, the incremental silver jobs, then the Trino table registration.

`ecomlake silver` processes the bronze rows that arrived since its last run (orders_clean, payments_clean,
order_payments_enriched, quarantine); `ecomlake register-tables` makes any table written for the first time
visible in Trino. The registration task updates the silver asset, which schedules gold_dbt.
"""

from __future__ import annotations

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG

from ecomlake_common import DEFAULT_ARGS, SILVER_ASSET, START_DATE, command

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
    silver = BashOperator(task_id="silver", bash_command=command("silver"))
    register = BashOperator(task_id="register_tables", bash_command=command("register-tables"),
                            outlets=[SILVER_ASSET])
    silver >> register
