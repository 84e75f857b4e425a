"""The Airflow DAGs (airflow/dags) load under the Airflow version the cluster image pins, with the schedules,
triggers and default_args the stack relies on.

The DAGs are loaded in .venv-airflow (tests/helpers/airflow_venv.py) by Airflow's own DagBag
(tests/helpers/airflow_dag_report.py), once per environment the DAGs read when parsed: the cluster stack's
(DBT_TARGET=trino, as docker-compose.yml sets it), the embedded stack's (DBT_TARGET=duckdb, ECOMLAKE_BIN and
ECOMLAKE_RETRY_DELAY_SECONDS set), and one with a bad ECOMLAKE_RETRY_DELAY_SECONDS. tests/test_airflow_e2e.py
runs the DAGs for real.
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from helpers.airflow_venv import (
    AIRFLOW_VERSION,
    CONSTRAINTS,
    DAGS,
    REPO,
    REPORT_SCRIPT,
    airflow_env,
    ensure_airflow_venv,
)
from pipeline.cli import COMMANDS

DAG_IDS = {"bronze_streams_raw", "silver_jobs", "gold_dbt", "gold_full_refresh", "freshness_checks",
           "lake_maintenance"}
# What the compose services run (bronze, silver --continuous, gold --continuous): Airflow must not run it on a clock.
SERVICE_COMMANDS = {"bronze", "silver", "gold"}
EMBEDDED_BIN = "/opt/my venv/bin/ecomlake"  # a path with a space: the DAGs must quote it
VARIANTS = {
    "cluster": {"DBT_TARGET": "trino", "ECOMLAKE_BIN": None, "ECOMLAKE_RETRY_DELAY_SECONDS": None},
    "embedded": {"DBT_TARGET": "duckdb", "ECOMLAKE_BIN": EMBEDDED_BIN, "ECOMLAKE_RETRY_DELAY_SECONDS": "5"},
    "unset": {"DBT_TARGET": None, "ECOMLAKE_BIN": None, "ECOMLAKE_RETRY_DELAY_SECONDS": None},
    "bad_delay": {"ECOMLAKE_RETRY_DELAY_SECONDS": "soon"},
    # the alerts (tests/test_alerts.py sends and receives them): a webhook, email, and email with no recipient
    "alerts": {"ECOMLAKE_ALERT_WEBHOOK_URL": "https://alerts.invalid/hook", "ECOMLAKE_ALERT_SMTP_HOST": "smtp.invalid",
               "ECOMLAKE_ALERT_SMTP_PORT": "587", "ECOMLAKE_ALERT_SMTP_TO": "oncall@ecomlake.local"},
    "bad_alerts": {"ECOMLAKE_ALERT_SMTP_HOST": "smtp.invalid"},
}


def _airflow_version_pinned_by_the_image() -> str:
    dockerfile = (REPO / "docker" / "spark" / "Dockerfile").read_text()
    return re.search(r"(?m)^ARG AIRFLOW_VERSION=(\S+)$", dockerfile).group(1)


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> dict:
    python = ensure_airflow_venv()
    home = tmp_path_factory.mktemp("airflow-home")
    out, variants = home / "report.json", home / "variants.json"
    variants.write_text(json.dumps(VARIANTS))
    run = subprocess.run([str(python), str(REPORT_SCRIPT), str(DAGS), str(out), str(variants)],
                         env=airflow_env(home), capture_output=True, text=True, timeout=300, cwd=home)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def report(reports) -> dict:
    """The DAGs as the cluster stack loads them."""
    return reports["cluster"]


def test_the_test_venv_uses_the_airflow_version_of_the_image():
    assert _airflow_version_pinned_by_the_image() == AIRFLOW_VERSION
    assert f"apache-airflow=={AIRFLOW_VERSION}" in CONSTRAINTS.read_text().splitlines()


def test_dags_import_without_errors(reports):
    for variant in ("cluster", "embedded", "unset"):
        assert reports[variant]["import_errors"] == {}, variant
        assert set(reports[variant]["dags"]) == DAG_IDS, variant


def test_bronze_stream_runs_continuously_one_at_a_time_and_is_restarted(report):
    dag = report["dags"]["bronze_streams_raw"]
    assert dag["timetable"] == "ContinuousTimetable" and dag["max_active_runs"] == 1
    assert dag["is_paused_upon_creation"] is True, "the compose `bronze` service runs the same stream"
    (task,) = dag["tasks"].values()
    assert task["bash_command"] == "ecomlake bronze"
    assert task["execution_timeout_s"] is None, "a stream must not be killed by a timeout"
    assert task["retries"] == 2 and task["retry_delay_s"] == 120


def test_silver_runs_only_on_demand_and_updates_the_silver_asset(report):
    """The compose `silver` service cycles on every bronze commit; a scheduled run would compete for its lock."""
    dag = report["dags"]["silver_jobs"]
    assert dag["schedule"] is None and dag["timetable"] == "NullTimetable"
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


def test_gold_full_refresh_runs_only_on_demand(report):
    dag = report["dags"]["gold_full_refresh"]
    assert dag["schedule"] is None and dag["timetable"] == "NullTimetable" and dag["max_active_runs"] == 1
    (task,) = dag["tasks"].values()
    assert task["bash_command"] == "ecomlake gold --full-refresh"


def test_silver_freshness_is_checked_every_five_minutes(report):
    dag = report["dags"]["freshness_checks"]
    assert dag["schedule"] == "*/5 * * * *" and dag["timetable"] == "CronTriggerTimetable"
    assert dag["catchup"] is False and dag["max_active_runs"] == 1 and dag["is_paused_upon_creation"] is not True
    (task,) = dag["tasks"].values()
    assert task["bash_command"] == "ecomlake freshness"


def test_the_lake_is_maintained_nightly_with_an_hour_to_finish(report):
    dag = report["dags"]["lake_maintenance"]
    assert dag["schedule"] == "0 3 * * *" and dag["timetable"] == "CronTriggerTimetable"
    assert dag["catchup"] is False and dag["max_active_runs"] == 1 and dag["is_paused_upon_creation"] is not True
    (task,) = dag["tasks"].values()
    assert task["bash_command"] == "ecomlake maintain" and task["execution_timeout_s"] == 3600


def test_nothing_the_compose_services_run_is_scheduled_on_a_clock(report):
    """bronze, silver and gold run as compose services: a DAG running one of them is on demand, follows an asset only
    an on-demand DAG updates, or starts paused (bronze_streams_raw, the alternative to the `bronze` service)."""
    on_demand = {dag_id for dag_id, dag in report["dags"].items() if dag["timetable"] == "NullTimetable"}
    for dag_id, dag in report["dags"].items():
        subcommands = {task["bash_command"].split()[1] for task in dag["tasks"].values()}
        if not subcommands & SERVICE_COMMANDS or dag_id in on_demand:
            continue
        if dag["timetable"] == "AssetTriggeredTimetable":
            producers = {other for other, d in report["dags"].items()
                         for task in d["tasks"].values() if set(task["outlets"]) & set(dag["asset_triggers"])}
            assert producers and producers <= on_demand, (dag_id, producers)
        else:
            assert dag["is_paused_upon_creation"] is True, dag_id


def test_every_task_retries_twice_times_out_and_logs_every_failed_try(report):
    for dag_id, dag in report["dags"].items():
        for task_id, task in dag["tasks"].items():
            assert task["retries"] == 2 and task["retry_delay_s"] == 120, (dag_id, task_id)
            timeout = {"bronze_streams_raw": None, "lake_maintenance": 3600}.get(dag_id, 600)
            assert task["execution_timeout_s"] == timeout, (dag_id, task_id)
            # the last try calls on_failure_callback, a try that will be retried calls on_retry_callback
            for key, tried, outcome in (("failure_log", "try=3/3", "(no retries left)"),
                                        ("retry_log", "try=1/3", "(will retry)")):
                line = task[key]
                assert "ecomlake task FAILED" in line and "dag=some_dag task=some_task" in line, (dag_id, task_id)
                assert f"{tried} {outcome}" in line and "RuntimeError: boom" in line, (dag_id, task_id, key)


def test_tasks_call_existing_ecomlake_commands(report):
    for dag in report["dags"].values():
        for task in dag["tasks"].values():
            program, subcommand, *_ = task["bash_command"].split()
            assert program == "ecomlake" and subcommand in COMMANDS, task["bash_command"]


def test_on_the_embedded_stack_the_dags_run_the_given_ecomlake_and_register_nothing_in_trino(reports):
    """DBT_TARGET=duckdb has no Trino: register_tables says so and succeeds, still updating the silver asset;
    ECOMLAKE_BIN (quoted) and ECOMLAKE_RETRY_DELAY_SECONDS reach every task."""
    dags = reports["embedded"]["dags"]
    assert dags["bronze_streams_raw"]["tasks"]["stream_bronze"]["bash_command"] == f"'{EMBEDDED_BIN}' bronze"
    assert dags["gold_dbt"]["tasks"]["dbt_build"]["bash_command"] == f"'{EMBEDDED_BIN}' gold"
    register = dags["silver_jobs"]["tasks"]["register_tables"]
    assert register["bash_command"].startswith("echo ") and "DBT_TARGET=duckdb" in register["bash_command"]
    assert register["outlets"] == ["ecomlake_silver"] and register["upstream"] == ["silver"]
    for dag in dags.values():
        for task in dag["tasks"].values():
            assert task["retry_delay_s"] == 5 and task["retries"] == 2
    # the project's own default (settings.py): no DBT_TARGET means duckdb
    unset = reports["unset"]["dags"]["silver_jobs"]["tasks"]["register_tables"]["bash_command"]
    assert unset.startswith("echo ") and "DBT_TARGET=duckdb" in unset


def test_a_bad_retry_delay_is_an_import_error_naming_the_variable(reports):
    errors = reports["bad_delay"]["import_errors"]
    assert errors and all("ECOMLAKE_RETRY_DELAY_SECONDS='soon'" in e for e in errors.values()), errors


def test_every_task_alerts_on_its_last_try_only_and_only_where_configured(reports):
    """on_failure_callback (the last try) logs and alerts; on_retry_callback only logs. Without ECOMLAKE_ALERT_*
    the notifier has nowhere to send; with them, every task sends to the webhook (apprise's JSON POST) and by email
    (STARTTLS on port 587)."""
    for variant, expected in (("cluster", "EcomlakeAlert[]"), ("alerts", None)):
        for dag_id, dag in reports[variant]["dags"].items():
            for task_id, task in dag["tasks"].items():
                assert task["retry_callbacks"] == ["log_failure"], (variant, dag_id, task_id)
                logged, alert = task["failure_callbacks"]
                assert logged == "log_failure", (variant, dag_id, task_id)
                if expected:
                    assert alert == expected, (variant, dag_id, task_id)
                else:
                    assert alert.startswith("EcomlakeAlert['jsons://alerts.invalid/hook', 'mailto://smtp.invalid:587?"), alert
                    assert "to=oncall%40ecomlake.local" in alert and "mode=starttls" in alert, alert


def test_an_alert_email_without_recipients_is_an_import_error_naming_the_variables(reports):
    errors = reports["bad_alerts"]["import_errors"]
    assert errors and all("ECOMLAKE_ALERT_SMTP_HOST='smtp.invalid' is set but ECOMLAKE_ALERT_SMTP_TO is empty" in e
                          for e in errors.values()), errors
