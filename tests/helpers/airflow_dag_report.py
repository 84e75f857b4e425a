"""Run by tests/test_airflow_dags.py inside the Airflow venv: load airflow/dags with Airflow's own DagBag and
print, as JSON, what the tests check (import errors, schedules, asset triggers and outlets, default_args)."""

from __future__ import annotations

import io
import json
import logging
import sys
from datetime import timedelta
from types import SimpleNamespace


def _seconds(value):
    return value.total_seconds() if isinstance(value, timedelta) else value


def _failure_log(callback) -> str:
    """What the task's failure callback logs for a failed try (it must name the task and the error)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("ecomlake.airflow")
    logger.addHandler(handler)
    try:
        ti = SimpleNamespace(dag_id="some_dag", task_id="some_task", run_id="manual__1", try_number=3, max_tries=2,
                             log_url="http://airflow/log")
        for one in callback if isinstance(callback, list) else [callback]:
            one({"ti": ti, "exception": RuntimeError("boom"), "run_id": "manual__1"})
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def main(dag_folder: str, out_path: str) -> None:
    sys.path.insert(0, dag_folder)  # as Airflow does with its DAGS_FOLDER: the DAGs import ecomlake_common
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=dag_folder)
    report = {"import_errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": {}}
    for dag_id, dag in bag.dags.items():
        timetable = dag.timetable
        report["dags"][dag_id] = {
            "schedule": getattr(dag, "schedule", None) if isinstance(getattr(dag, "schedule", None), str) else None,
            "timetable": type(timetable).__name__,
            "timetable_summary": getattr(timetable, "summary", None),
            "asset_triggers": sorted(
                getattr(a, "name", str(a)) for a in getattr(dag, "schedule", None) or []
            ) if isinstance(getattr(dag, "schedule", None), (list, tuple)) else [],
            "max_active_runs": dag.max_active_runs,
            "catchup": dag.catchup,
            "is_paused_upon_creation": dag.is_paused_upon_creation,
            "tasks": {
                task.task_id: {
                    "retries": task.retries,
                    "retry_delay_s": _seconds(task.retry_delay),
                    "execution_timeout_s": _seconds(task.execution_timeout),
                    "failure_log": _failure_log(task.on_failure_callback) if task.on_failure_callback else "",
                    "bash_command": getattr(task, "bash_command", None),
                    "upstream": sorted(task.upstream_task_ids),
                    "outlets": sorted(getattr(o, "name", str(o)) for o in task.outlets),
                }
                for task in dag.tasks
            },
        }
    with open(out_path, "w") as handle:
        json.dump(report, handle)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
