"""Run by tests/test_airflow_dags.py inside the Airflow venv: load airflow/dags with Airflow's own DagBag and
print, as JSON, what the tests check (import errors, schedules, asset triggers and outlets, default_args).

usage: airflow_dag_report.py DAG_FOLDER OUT.json [VARIANTS.json]

VARIANTS.json maps a variant name to environment overrides (a null value unsets the variable); the DAGs are
loaded afresh under each (the DAGs read a few variables when they are parsed: ECOMLAKE_BIN,
ECOMLAKE_RETRY_DELAY_SECONDS, DBT_TARGET) and the report holds one entry per variant. Without it, one variant,
"default", with the environment as it is."""

from __future__ import annotations

import io
import json
import logging
import os
import sys
from datetime import timedelta
from types import SimpleNamespace


def _seconds(value):
    return value.total_seconds() if isinstance(value, timedelta) else value


def _callbacks(callback) -> list:
    return list(callback) if isinstance(callback, (list, tuple)) else [callback] if callback else []


def _callback_names(callback) -> list[str]:
    """Each callback's function name, or a notifier's class name and the apprise URLs it sends to."""
    return [getattr(one, "__name__", None) or f"{type(one).__name__}{getattr(one, 'urls', '')}"
            for one in _callbacks(callback)]


def _callback_log(callback, try_number: int) -> str:
    """What a task callback logs for a failed try `try_number` of 3 (it must name the task, try and error)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("ecomlake.airflow")
    logger.addHandler(handler)
    try:
        ti = SimpleNamespace(dag_id="some_dag", task_id="some_task", run_id="manual__1", try_number=try_number,
                             max_tries=2, log_url="http://airflow/log")
        for one in _callbacks(callback):
            if not hasattr(one, "notify"):  # the alert notifier sends; tests/test_alerts.py receives what it sends
                one({"ti": ti, "exception": RuntimeError("boom"), "run_id": "manual__1"})
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def _report(dag_folder: str) -> dict:
    from airflow.dag_processing.dagbag import DagBag

    sys.modules.pop("ecomlake_common", None)  # the DAGs' shared module reads the environment when imported
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
                    "operator": type(task).__name__,
                    "retries": task.retries,
                    "retry_delay_s": _seconds(task.retry_delay),
                    "execution_timeout_s": _seconds(task.execution_timeout),
                    "failure_log": _callback_log(task.on_failure_callback, 3) if task.on_failure_callback else "",
                    "retry_log": _callback_log(task.on_retry_callback, 1) if task.on_retry_callback else "",
                    "failure_callbacks": _callback_names(task.on_failure_callback),
                    "retry_callbacks": _callback_names(task.on_retry_callback),
                    "bash_command": getattr(task, "bash_command", None),
                    "upstream": sorted(task.upstream_task_ids),
                    "outlets": sorted(getattr(o, "name", str(o)) for o in task.outlets),
                }
                for task in dag.tasks
            },
        }
    return report


def main(dag_folder: str, out_path: str, variants_path: str | None = None) -> None:
    sys.path.insert(0, dag_folder)  # as Airflow does with its DAGS_FOLDER: the DAGs import ecomlake_common
    variants = {"default": {}}
    if variants_path:
        with open(variants_path) as handle:
            variants = json.load(handle)
    reports = {}
    base = dict(os.environ)
    for name, overrides in variants.items():
        os.environ.clear()
        os.environ.update(base)
        for key, value in overrides.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        reports[name] = _report(dag_folder)
    os.environ.clear()
    os.environ.update(base)
    with open(out_path, "w") as handle:
        json.dump(reports if variants_path else reports["default"], handle)


if __name__ == "__main__":
    main(*sys.argv[1:4])
