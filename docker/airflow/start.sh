#!/usr/bin/env bash
# Airflow of the cluster stack: one container running `airflow standalone` (api-server, scheduler, dag-processor,
# triggerer; LocalExecutor) against its own Postgres. The admin login comes from the environment
# (AIRFLOW_ADMIN_USER / AIRFLOW_ADMIN_PASSWORD): it is written to the simple auth manager's password file before
# start, so no generated password has to be fished out of the logs.
set -euo pipefail

: "${AIRFLOW_ADMIN_USER:?AIRFLOW_ADMIN_USER is not set}"
: "${AIRFLOW_ADMIN_PASSWORD:?AIRFLOW_ADMIN_PASSWORD is not set}"
: "${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE:?AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE is not set}"

python3 - <<'PY'
import json, os
with open(os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"], "w") as handle:
    json.dump({os.environ["AIRFLOW_ADMIN_USER"]: os.environ["AIRFLOW_ADMIN_PASSWORD"]}, handle)
PY

/opt/airflow-venv/bin/airflow db migrate
exec /opt/airflow-venv/bin/airflow standalone
