"""The Airflow test venv (.venv-airflow) the DAG tests run Airflow in, and how a missing part is reported.

Airflow cannot share .venv (its pins conflict with dbt's and pyspark's), so the first run creates .venv-airflow
from PyPI (about a minute; reused afterwards) with the versions in tests/airflow-constraints-py3.11.txt.
Imported by tests/test_airflow_dags.py and tests/test_airflow_e2e.py as `helpers.airflow_venv`."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
AIRFLOW_VERSION = "3.3.2"
# Providers the DAGs use beyond those apache-airflow installs: apprise sends the alerts (ecomlake_common.py).
PROVIDERS = ("apache-airflow-providers-apprise==2.4.1",)
VENV = REPO / ".venv-airflow"
CONSTRAINTS = REPO / "tests" / "airflow-constraints-py3.11.txt"
DAGS = REPO / "airflow" / "dags"
REPORT_SCRIPT = REPO / "tests" / "helpers" / "airflow_dag_report.py"


def skip_or_fail(reason: str) -> None:
    """One-line skip on a user's machine; under CI=true every part must run, so fail naming what is missing."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true, but {reason}", pytrace=False)
    pytest.skip(reason)


def ensure_airflow_venv() -> Path:
    """.venv-airflow/bin/python with apache-airflow installed; created once, guarded by a lock file."""
    python = VENV / "bin" / "python"
    stamp = VENV / ".installed-{}".format("-".join(p.replace("==", "-") for p in (f"apache-airflow=={AIRFLOW_VERSION}",
                                                                                   *PROVIDERS)))
    VENV.parent.mkdir(exist_ok=True)
    with open(Path(tempfile.gettempdir()) / "ecomlake-venv-airflow.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists():
            return python
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True, timeout=300)
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        spec = [f"apache-airflow=={AIRFLOW_VERSION}", *PROVIDERS]
        if sys.version_info[:2] == (3, 11):
            spec += ["--constraint", str(CONSTRAINTS)]
        run = subprocess.run(pip + spec, capture_output=True, text=True, timeout=900)
        if run.returncode != 0:
            last = (run.stderr.strip().splitlines() or ["(no output)"])[-1]
            skip_or_fail(f"installing apache-airflow=={AIRFLOW_VERSION} into {VENV} failed: {last}")
        stamp.write_text(f"installed in {time.monotonic() - started:.0f}s\n")
        print(f"created {VENV} in {time.monotonic() - started:.0f}s", file=sys.stderr)
        return python


def airflow_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of an Airflow process of the tests: this environment without AIRFLOW* variables, a
    private AIRFLOW_HOME (SQLite metadata DB), the project's DAG folder, no examples, no .pyc files in the tree."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update({"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "false",
                "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS), "PYTHONDONTWRITEBYTECODE": "1"})
    env.update(extra)
    return env
