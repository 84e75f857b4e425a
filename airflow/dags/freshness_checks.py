"""freshness_checks: every 5 minutes, dbt source freshness of the silver tables gold reads.

The silver and gold services run outside Airflow, so this is where a stalled pipeline shows: `ecomlake freshness`
fails when the newest silver rows are older than the project's error threshold, and the task's failure callback
logs one line naming the stale sources. It only reads, so it runs beside the services.
"""

from __future__ import annotations

from airflow.sdk import DAG

from ecomlake_common import DEFAULT_ARGS, START_DATE, EcomlakeCommand, command

with DAG(
    dag_id="freshness_checks",
    description="dbt source freshness of silver every 5 minutes",
    schedule="*/5 * * * *",
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["ecomlake", "silver", "checks"],
    doc_md=__doc__,
):
    EcomlakeCommand(task_id="dbt_source_freshness", bash_command=command("freshness"))
