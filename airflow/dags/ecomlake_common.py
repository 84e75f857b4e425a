"""Shared pieces of the ecomlake DAGs: default_args, the failure callback, the silver asset, the command line.

The DAG tasks run the same `ecomlake` commands as everything else (in the Airflow container of the cluster
stack, whose image holds the project and Spark); configuration reaches them through the container's
environment, read by ecomlake/settings.py.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta, timezone

from airflow.sdk import Asset

log = logging.getLogger("ecomlake.airflow")

ECOMLAKE = os.environ.get("ECOMLAKE_BIN", "ecomlake")

START_DATE = datetime(2026, 1, 1, tzinfo=timezone.utc)
TASK_TIMEOUT = timedelta(minutes=10)

# Updated by silver_jobs after every successful silver run (and table registration); gold_dbt is scheduled on it.
SILVER_ASSET = Asset(name="ecomlake_silver", uri="s3://lakehouse/silver")


def log_failure(context) -> None:
    """One clear ERROR line per failed try: which DAG/task/run, which try, the error, where the log is."""
    ti = context.get("ti") or context.get("task_instance")
    exception = context.get("exception")
    log.error(
        "ecomlake task FAILED: dag=%s task=%s run=%s try=%s/%s error=%s log=%s",
        getattr(ti, "dag_id", "?"),
        getattr(ti, "task_id", "?"),
        getattr(ti, "run_id", context.get("run_id", "?")),
        getattr(ti, "try_number", "?"),
        (getattr(ti, "max_tries", None) or 0) + 1 if ti is not None else "?",
        f"{type(exception).__name__}: {exception}" if exception else "unknown",
        getattr(ti, "log_url", "-"),
    )


DEFAULT_ARGS = {
    "owner": "ecomlake",
    "retries": 2,
    "retry_delay": timedelta(minutes=2),
    "execution_timeout": TASK_TIMEOUT,
    "on_failure_callback": log_failure,
}


def command(*args: str) -> str:
    """The bash command line of an ecomlake subcommand (no Jinja: ecomlake reads its config from the env)."""
    return " ".join([ECOMLAKE, *args])
