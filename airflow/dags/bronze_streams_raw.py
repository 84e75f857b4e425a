"""bronze_streams_raw: the long-running bronze stream (Kafka -> bronze_raw.orders_raw / payments_raw).

One task runs `ecomlake bronze`, which streams until it fails: its retries restart it, and the @continuous
schedule (one active run) starts a new run as soon as one ends, so the stream is always brought back. Restarts
are exactly-once: the stream resumes from its checkpoint on the lake. No execution timeout: it is meant to run
forever.

Paused when first loaded: the compose stack's `bronze` service (profile `pipeline`) runs the same stream, and two
copies of one stream must never run at once. To let Airflow supervise it instead, stop that service
(`docker compose stop bronze`) and unpause this DAG.
"""

from __future__ import annotations

from airflow.sdk import DAG

from ecomlake_common import DEFAULT_ARGS, START_DATE, EcomlakeCommand, command

with DAG(
    dag_id="bronze_streams_raw",
    description="Long-running Kafka -> bronze Delta stream, restarted whenever it stops",
    schedule="@continuous",
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    is_paused_upon_creation=True,
    default_args={**DEFAULT_ARGS, "execution_timeout": None},
    tags=["ecomlake", "bronze", "streaming"],
    doc_md=__doc__,
):
    EcomlakeCommand(task_id="stream_bronze", bash_command=command("bronze"), execution_timeout=None)
