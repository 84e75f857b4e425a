"""lake_maintenance: every night, OPTIMIZE and VACUUM of every bronze and silver table (`ecomlake maintain`).

Continuous services commit small files all day; compaction keeps their reads fast and the vacuum drops the files
no version needs any more (default retention 7 days, longer where silver has not read a table yet). It runs at
03:00 UTC beside the services, as a Spark application of its own on the cluster. A compaction commits no data
change; should a silver cycle's commit conflict with it, that cycle fails, Docker restarts the service and the
next cycle redoes it (every cycle is idempotent).
"""

from __future__ import annotations

from airflow.sdk import DAG

from ecomlake_common import DEFAULT_ARGS, MAINTENANCE_TIMEOUT, START_DATE, EcomlakeCommand, command

with DAG(
    dag_id="lake_maintenance",
    description="OPTIMIZE and VACUUM of every lake table, nightly",
    schedule="0 3 * * *",
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args={**DEFAULT_ARGS, "execution_timeout": MAINTENANCE_TIMEOUT},
    tags=["ecomlake", "maintenance"],
    doc_md=__doc__,
):
    EcomlakeCommand(task_id="maintain", bash_command=command("maintain"))
