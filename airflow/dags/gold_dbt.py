"""gold_dbt: after a silver catch-up in Airflow (the silver asset), dbt build of gold, then dbt source freshness.

On the cluster stack gold runs as the compose `gold` service, a build on every silver commit. This DAG completes
an Airflow catch-up instead (silver_jobs), for which the `silver` and `gold` services are stopped: gold's lock
admits one builder, and the build's data tests compare gold with silver, which must hold still meanwhile.

`ecomlake gold` runs `dbt build` (models, seeds, tests) on the DBT_TARGET engine: Trino on the cluster stack,
DuckDB (gold in ${LAKEHOUSE_URI}/warehouse.duckdb) on the embedded one; `ecomlake freshness` then checks how old
the newest silver rows are and fails the run when they are older than the project's error threshold.
"""

from __future__ import annotations

from airflow.sdk import DAG

from ecomlake_common import DEFAULT_ARGS, SILVER_ASSET, START_DATE, EcomlakeCommand, command

with DAG(
    dag_id="gold_dbt",
    description="dbt build of gold, then source freshness, after a silver catch-up (the silver asset)",
    schedule=[SILVER_ASSET],
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["ecomlake", "gold", "dbt"],
    doc_md=__doc__,
):
    build = EcomlakeCommand(task_id="dbt_build", bash_command=command("gold"))
    freshness = EcomlakeCommand(task_id="dbt_source_freshness", bash_command=command("freshness"))
    build >> freshness
