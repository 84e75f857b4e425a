"""Run by tests/test_alerts.py inside the Airflow venv: send the DAGs' failure alert (ecomlake_common.ALERT, the
apprise notifier every task's on_failure_callback calls) for each kind of failure, configured from the
environment as in a DAG task, and print the apprise URLs it was configured with, as JSON.

usage: airflow_alert_send.py DAG_FOLDER OUT.json"""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace

from airflow.sdk.exceptions import AirflowException

# (dag_id, task_id, the task's command, the exception the task failed with): what EcomlakeCommand raises
FAILURES = {
    "stale silver": ("freshness_checks", "dbt_source_freshness", "ecomlake freshness", AirflowException(
        "ecomlake freshness: error: silver is stale: ERROR silver.orders_clean: newest ingest_ts is 120.0 min old "
        "(exit code 1)")),
    "dbt tests failed": ("gold_dbt", "dbt_build", "ecomlake gold", AirflowException(
        "ecomlake gold: error: dbt tests failed (1): test.assert_gmv_reconciles_with_silver: fail: Got 1 result, "
        "configured to fail if != 0 (exit code 1)")),
    "task failed": ("lake_maintenance", "maintain", "ecomlake maintain", TimeoutError("Timeout, PID: 4242")),
}


def main(dag_folder: str, out_path: str) -> None:
    sys.path.insert(0, dag_folder)  # as Airflow does with its DAGS_FOLDER
    import ecomlake_common

    for kind, (dag_id, task_id, command, exception) in FAILURES.items():
        ti = SimpleNamespace(dag_id=dag_id, task_id=task_id, run_id=f"scheduled__{kind.replace(' ', '_')}",
                             try_number=3, max_tries=2,
                             log_url=f"http://127.0.0.1:8088/dags/{dag_id}/runs/r/tasks/{task_id}?try_number=3")
        ecomlake_common.ALERT({"ti": ti, "task": SimpleNamespace(bash_command=command), "exception": exception})
    with open(out_path, "w") as handle:
        json.dump({"urls": ecomlake_common.alert_urls(), "kinds": list(FAILURES)}, handle)


if __name__ == "__main__":
    main(*sys.argv[1:3])
