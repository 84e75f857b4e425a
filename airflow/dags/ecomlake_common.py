"""Shared pieces of the ecomlake DAGs: default_args, the failure/retry callback, the silver asset, the operator.

The DAG tasks run the same `ecomlake` commands as everything else (in the Airflow container of the cluster
stack, whose image holds the project and Spark); configuration reaches them through the environment they inherit,
read by ecomlake/settings.py. The DAGs run in Airflow's own venv and cannot import ecomlake, so the few variables
the DAGs themselves need are read here, and only here:

- ECOMLAKE_BIN: the `ecomlake` command to run (default: `ecomlake` on PATH).
- ECOMLAKE_RETRY_DELAY_SECONDS: seconds between a failed try and the next (default 120).
- DBT_TARGET: `trino` (cluster stack) registers the lake tables in Trino after silver; with `duckdb` (the embedded
  stack, the project's default) there is no Trino and gold reads silver by path, so that step has nothing to do.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
from datetime import datetime, timedelta, timezone
from functools import cached_property

from airflow.providers.standard.hooks.subprocess import SubprocessHook, SubprocessResult
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import Asset
from airflow.sdk.exceptions import AirflowException

log = logging.getLogger("ecomlake.airflow")

ECOMLAKE = os.environ.get("ECOMLAKE_BIN", "ecomlake").strip() or "ecomlake"


def _retry_delay() -> timedelta:
    raw = os.environ.get("ECOMLAKE_RETRY_DELAY_SECONDS", "").strip()
    if not raw:
        return timedelta(minutes=2)
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < 86400:
        raise ValueError(f"ECOMLAKE_RETRY_DELAY_SECONDS={raw!r} must be a number of seconds from 0 to 86399")
    return timedelta(seconds=seconds)


DBT_TARGET = os.environ.get("DBT_TARGET", "").strip() or "duckdb"

START_DATE = datetime(2026, 1, 1, tzinfo=timezone.utc)
TASK_TIMEOUT = timedelta(minutes=10)
# OPTIMIZE and VACUUM of every table read and rewrite whole tables: a day's small files take longer than a run.
MAINTENANCE_TIMEOUT = timedelta(hours=1)
RETRIES = 2
RETRY_DELAY = _retry_delay()

# Updated by silver_jobs after every successful catch-up run (and table registration); gold_dbt is scheduled on it.
SILVER_ASSET = Asset(name="ecomlake_silver", uri="s3://lakehouse/silver")


def log_failure(context) -> None:
    """One clear ERROR line per failed try (a retry's too): DAG/task/run, which try, the error, where the log is.

    The error of an ecomlake task is the command's own one-line `ecomlake <command>: error: ...` message (see
    EcomlakeCommand), not just "Bash command failed"."""
    ti = context.get("ti") or context.get("task_instance")
    exception = context.get("exception")
    try_number = getattr(ti, "try_number", None)
    tries = (getattr(ti, "max_tries", None) or 0) + 1 if ti is not None else None
    if isinstance(try_number, int) and isinstance(tries, int):
        outcome = "will retry" if try_number < tries else "no retries left"
    else:
        outcome = "?"
    log.error(
        "ecomlake task FAILED: dag=%s task=%s run=%s try=%s/%s (%s) error=%s log=%s",
        getattr(ti, "dag_id", "?"),
        getattr(ti, "task_id", "?"),
        getattr(ti, "run_id", context.get("run_id", "?")),
        try_number if try_number is not None else "?",
        tries if tries is not None else "?",
        outcome,
        f"{type(exception).__name__}: {exception}" if exception else "unknown",
        getattr(ti, "log_url", "-"),
    )


DEFAULT_ARGS = {
    "owner": "ecomlake",
    "retries": RETRIES,
    "retry_delay": RETRY_DELAY,
    "execution_timeout": TASK_TIMEOUT,
    # Airflow calls on_retry_callback, not on_failure_callback, for a failed try that will be retried.
    "on_failure_callback": log_failure,
    "on_retry_callback": log_failure,
}

_ERROR_LINE = re.compile(r"^ecomlake [\w-]+: (error: .*|interrupted)$")


class _RememberingHook(SubprocessHook):
    """SubprocessHook that keeps the result (exit code and last output line) of the command it ran."""

    result: SubprocessResult | None = None

    def run_command(self, *args, **kwargs) -> SubprocessResult:
        self.result = super().run_command(*args, **kwargs)
        return self.result


class EcomlakeCommand(BashOperator):
    """A BashOperator running one `ecomlake` subcommand, whose failure names the command and its error line.

    BashOperator fails with "Bash command failed ... exit code 1" and nothing else; the error `ecomlake` printed
    (its last line, `ecomlake <command>: error: ...`) is in the middle of the task log. This raises it as the
    task's exception instead, so the failure callback's one line carries it. Python output is unbuffered so the
    error line really is the last one."""

    def __init__(self, *, bash_command: str, **kwargs) -> None:
        kwargs.setdefault("env", {"PYTHONUNBUFFERED": "1"})
        kwargs.setdefault("append_env", True)
        super().__init__(bash_command=bash_command, **kwargs)

    @cached_property
    def subprocess_hook(self) -> _RememberingHook:
        return _RememberingHook()

    def execute(self, context):
        try:
            return super().execute(context)
        except AirflowException as err:
            result = self.subprocess_hook.result
            if result is None or result.exit_code == 0 or result.exit_code in self.skip_on_exit_code:
                raise
            last = (result.output or "").strip()
            if _ERROR_LINE.match(last):
                raise AirflowException(f"{last} (exit code {result.exit_code})") from err
            raise AirflowException(
                f"`{self.bash_command}` failed with exit code {result.exit_code}"
                + (f"; last output line: {last}" if last else "")
            ) from err


def command(*args: str) -> str:
    """The bash command line of an ecomlake subcommand (no Jinja: ecomlake reads its config from the env)."""
    return " ".join(shlex.quote(part) for part in (ECOMLAKE, *args))


def register_tables_command() -> str:
    """`ecomlake register-tables` where gold is built on Trino; else a step that says why there is nothing to do
    (the task stays, so the DAG has the same shape and the same task updates the silver asset on both stacks)."""
    if DBT_TARGET == "trino":
        return command("register-tables")
    return ("echo " + shlex.quote(f"DBT_TARGET={DBT_TARGET}: no Trino on this stack, gold reads silver by path; "
                                  "nothing to register"))
