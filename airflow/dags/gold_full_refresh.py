"""gold_full_refresh: on demand, gold rebuilt from silver with its data tests (`ecomlake gold --full-refresh`).

For a changed model or a rebuilt silver: the incremental models are recomputed from scratch, then tested. Stop the
compose `silver` and `gold` services first (`docker compose stop silver gold`) and start them afterwards: gold's
lock admits one builder, and the tests compare gold with silver, which must hold still while they run.
"""

from __future__ import annotations

from airflow.sdk import DAG

from ecomlake_common import DEFAULT_ARGS, START_DATE, EcomlakeCommand, command

with DAG(
    dag_id="gold_full_refresh",
    description="On demand: dbt build --full-refresh of gold (with the silver and gold services stopped)",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["ecomlake", "gold", "dbt", "on-demand"],
    doc_md=__doc__,
):
    EcomlakeCommand(task_id="dbt_full_refresh", bash_command=command("gold", "--full-refresh"))
