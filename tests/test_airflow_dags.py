"""The Airflow DAGs (airflow/dags) load under the Airflow version the cluster image pins, with the schedules,
triggers and default_args the stack relies on.

Airflow cannot share .venv (its pins conflict with dbt's and pyspark's), so the first run creates .venv-airflow
from PyPI (about a minute; reused afterwards) with the versions in tests/airflow-constraints-py3.11.txt, and the
DAGs are loaded there by Airflow's own DagBag (tests/helpers/airflow_dag_report.py).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from pipeline.cli import COMMANDS

REPO = Path(__file__).resolve().parent.parent
AIRFLOW_VERSION = "3.3.2"
VENV = REPO / ".venv-airflow"
CONSTRAINTS = REPO / "tests" / "airflow-constraints-py3.11.txt"
DAG_IDS = {"bronze_streams_raw", "silver_jobs", "gold_dbt"}


def _airflow_version_pinned_by_the_image() -> str:
    dockerfile = (REPO / "docker" / "spark" / "Dockerfile").read_text()
    return re.search(r"(?m)^ARG AIRFLOW_VERSION=(\S+)$", dockerfile).group(1)


def ensure_airflow_venv() -> Path:
    """.venv-airflow/bin/python with apache-airflow installed; created once, guarded by a lock file."""
    python = VENV / "bin" / "python"
    stamp = VENV / f".installed-apache-airflow-{AIRFLOW_VERSION}"
    VENV.parent.mkdir(exist_ok=True)
    with open(Path(tempfile.gettempdir()) / "ecomlake-venv-airflow.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists():
            return python
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True, timeout=300)
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        spec = [f"apache-airflow=={AIRFLOW_VERSION}"]
        if sys.version_info[:2] == (3, 11):
            spec += ["--constraint", str(CONSTRAINTS)]
        run = subprocess.run(pip + spec, capture_output=True, text=True, timeout=900)
        if run.returncode != 0:
            pytest.fail(f"installing Airflow {AIRFLOW_VERSION} into {VENV} failed:\n{run.stderr[-3000:]}")
        stamp.write_text(f"installed in {time.monotonic() - started:.0f}s\n")
        print(f"created {VENV} in {time.monotonic() - started:.0f}s", file=sys.stderr)
        return python


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    python = ensure_airflow_venv()
    home = tmp_path_factory.mktemp("airflow-home")
    out = home / "report.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update({"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "false",
                "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "airflow" / "dags"), "PYTHONDONTWRITEBYTECODE": "1"})
    run = subprocess.run([str(python), str(REPO / "tests" / "helpers" / "airflow_dag_report.py"),
                          str(REPO / "airflow" / "dags"), str(out)], env=env, capture_output=True, text=True,
                         timeout=300, cwd=home)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(out.read_text())


def test_the_test_venv_uses_the_airflow_version_of_the_image():
    assert _airflow_version_pinned_by_the_image() == AIRFLOW_VERSION
    assert f"apache-airflow=={AIRFLOW_VERSION}" in CONSTRAINTS.read_text().splitlines()


def test_dags_import_without_errors(report):
    assert report["import_errors"] == {}
    assert set(report["dags"]) == DAG_IDS


def test_bronze_stream_runs_continuously_one_at_a_time_and_is_restarted(report):
    dag = report["dags"]["bronze_streams_raw"]
    assert dag["timetable"] == "ContinuousTimetable" and dag["max_active_runs"] == 1
    assert dag["is_paused_upon_creation"] is True, "the compose `bronze` service runs the same stream"
    (task,) = dag["tasks"].values()
    assert task["bash_command"] == "ecomlake bronze"
    assert task["execution_timeout_s"] is None, "a stream must not be killed by a timeout"
    assert task["retries"] == 2 and task["retry_delay_s"] == 120


def test_silver_runs_every_five_minutes_and_updates_the_silver_asset(report):
    dag = report["dags"]["silver_jobs"]
    assert dag["schedule"] == "*/5 * * * *" and dag["timetable"] == "CronTriggerTimetable"
    assert dag["catchup"] is False and dag["max_active_runs"] == 1
    tasks = dag["tasks"]
    assert tasks["silver"]["bash_command"] == "ecomlake silver"
    assert tasks["register_tables"]["bash_command"] == "ecomlake register-tables"
    assert tasks["register_tables"]["upstream"] == ["silver"]
    assert tasks["register_tables"]["outlets"] == ["ecomlake_silver"]


def test_gold_is_triggered_by_the_silver_asset_and_runs_build_then_freshness(report):
    dag = report["dags"]["gold_dbt"]
    assert dag["timetable"] == "AssetTriggeredTimetable" and dag["asset_triggers"] == ["ecomlake_silver"]
    tasks = dag["tasks"]
    assert tasks["dbt_build"]["bash_command"] == "ecomlake gold"
    assert tasks["dbt_source_freshness"]["bash_command"] == "ecomlake freshness"
    assert tasks["dbt_source_freshness"]["upstream"] == ["dbt_build"]


def test_every_task_retries_twice_times_out_after_ten_minutes_and_logs_failures(report):
    for dag_id, dag in report["dags"].items():
        for task_id, task in dag["tasks"].items():
            assert task["retries"] == 2 and task["retry_delay_s"] == 120, (dag_id, task_id)
            if dag_id != "bronze_streams_raw":
                assert task["execution_timeout_s"] == 600, (dag_id, task_id)
            line = task["failure_log"]
            assert "ecomlake task FAILED" in line and "dag=some_dag task=some_task" in line, (dag_id, task_id)
            assert "try=3/3" in line and "RuntimeError: boom" in line, (dag_id, task_id)


def test_tasks_call_existing_ecomlake_commands(report):
    for dag in report["dags"].values():
        for task in dag["tasks"].values():
            program, subcommand, *_ = task["bash_command"].split()
            assert program == "ecomlake" and subcommand in COMMANDS, task["bash_command"]
