"""gold_dbt: whenever silver has new data (the silver asset), dbt build of gold, then dbt source freshness.

`ecomlake gold` runs `dbt build` (models, seeds, tests) against Trino; `ecomlake freshness` then checks how old
the newest silver rows are and fails the run when they are older than the project's error threshold.
"""

from __future__ import annotations

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG

from ecomlake_common import DEFAULT_ARGS, SILVER_ASSET, START_DATE, command

with DAG(
    dag_id="gold_dbt",
    description="dbt build of gold, then source freshness, on every silver update",
    schedule=[SILVER_ASSET],
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["ecomlake", "gold", "dbt"],
    doc_md=__doc__,
):
    build = BashOperator(task_id="dbt_build", bash_command=command("gold"))
    freshness = BashOperator(task_id="dbt_source_freshness", bash_command=command("freshness"))
    build >> freshness
