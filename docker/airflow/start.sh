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

# `airflow standalone` runs its components as `airflow ...` found on PATH, and the DAG tasks run
# ${ECOMLAKE_BIN:-ecomlake}: fail here, with the reason, rather than with components that never start.
for command in airflow "${ECOMLAKE_BIN:-ecomlake}"; do
    command -v "$command" > /dev/null || { echo "start.sh: '$command' is not on PATH ($PATH)" >&2; exit 1; }
done

airflow db migrate
exec airflow standalone
