"""Shared pieces of the ecomlake DAGs: default_args, the failure/retry callback, the silver asset, the operator.

The DAG tasks run the same `ecomlake` commands as everything else (in the Airflow container of the cluster
stack, whose image holds the project and Spark); configuration reaches them through the environment they inherit,
read by ecomlake/settings.py. The DAGs run in Airflow's own venv and cannot import ecomlake, so the few variables
the DAGs themselves need are read here, and only here:

- ECOMLAKE_BIN: the `ecomlake` command to run (default: `ecomlake` on PATH).
- ECOMLAKE_RETRY_DELAY_SECONDS: seconds between a failed try and the next (default 120).
- DBT_TARGET: `trino` (cluster stack) registers the lake tables in Trino after silver; with `duckdb` (the embedded
  stack, the project's default) there is no Trino and gold reads silver by path, so that step has nothing to do.
- ECOMLAKE_ALERT_*: where a task's last failed try is sent (see `alert_urls`; all empty = alerts off).
"""

from __future__ import annotations

import logging
import os
import re
import shlex
from datetime import datetime, timedelta, timezone
from functools import cached_property
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from airflow.providers.apprise.notifications.apprise import AppriseNotifier
from airflow.providers.standard.hooks.subprocess import SubprocessHook, SubprocessResult
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import Asset
from airflow.sdk.exceptions import AirflowException
from apprise import Apprise

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


# --- alerts ---------------------------------------------------------------------------------------------------

SMTP_SECURITY = ("insecure", "starttls", "ssl")


def alert_urls() -> list[str]:
    """The apprise URLs the alerts go to, from the environment (none: alerts are off).

    - ECOMLAKE_ALERT_WEBHOOK_URL: an http(s) URL that receives each alert as a JSON POST (apprise's json:// format:
      title, message, type), or any apprise URL (slack://, msteams://, ...; a Slack or Discord webhook URL as they
      hand it out is recognised by apprise and gets that service's own format).
    - ECOMLAKE_ALERT_SMTP_HOST (empty: no email), ECOMLAKE_ALERT_SMTP_PORT (25), ECOMLAKE_ALERT_SMTP_FROM
      (ecomlake@localhost), ECOMLAKE_ALERT_SMTP_TO (comma-separated, required with a host),
      ECOMLAKE_ALERT_SMTP_SECURITY (insecure | starttls | ssl; default ssl on port 465, starttls on 587, else
      insecure), ECOMLAKE_ALERT_SMTP_USER / ECOMLAKE_ALERT_SMTP_PASSWORD (login, when both are set)."""
    urls = []
    webhook = os.environ.get("ECOMLAKE_ALERT_WEBHOOK_URL", "").strip()
    if webhook:
        if not urlsplit(webhook).scheme or not urlsplit(webhook).netloc:
            raise ValueError(f"ECOMLAKE_ALERT_WEBHOOK_URL={webhook!r} must be an http(s) URL or an apprise URL")
        urls.append(_webhook_service(webhook))
    host = os.environ.get("ECOMLAKE_ALERT_SMTP_HOST", "").strip()
    if host:
        raw_port = os.environ.get("ECOMLAKE_ALERT_SMTP_PORT", "").strip() or "25"
        if not raw_port.isdigit() or not 0 < int(raw_port) < 65536:
            raise ValueError(f"ECOMLAKE_ALERT_SMTP_PORT={raw_port!r} must be a port number from 1 to 65535")
        port = int(raw_port)
        to = [a.strip() for a in os.environ.get("ECOMLAKE_ALERT_SMTP_TO", "").split(",") if a.strip()]
        if not to:
            raise ValueError(f"ECOMLAKE_ALERT_SMTP_HOST={host!r} is set but ECOMLAKE_ALERT_SMTP_TO is empty: "
                             "give the address(es) the alerts go to")
        sender = os.environ.get("ECOMLAKE_ALERT_SMTP_FROM", "").strip() or "ecomlake@localhost"
        security = (os.environ.get("ECOMLAKE_ALERT_SMTP_SECURITY", "").strip().lower()
                    or {465: "ssl", 587: "starttls"}.get(port, "insecure"))
        if security not in SMTP_SECURITY:
            raise ValueError(f"ECOMLAKE_ALERT_SMTP_SECURITY={security!r} must be one of {', '.join(SMTP_SECURITY)}")
        user = os.environ.get("ECOMLAKE_ALERT_SMTP_USER", "").strip()
        password = os.environ.get("ECOMLAKE_ALERT_SMTP_PASSWORD", "")
        login = f"{quote(user, safe='')}:{quote(password, safe='')}@" if user and password else ""
        query = urlencode({"smtp": host, "from": sender, "to": ",".join(to), "mode": security, "format": "text"})
        urls.append(f"mailto://{login}{host}:{port}?{query}")
    return urls


def _webhook_service(url: str) -> str:
    """The apprise URL of a webhook: as given when apprise knows it (its own schemes, Slack's or Discord's https
    webhook URLs), else apprise's generic JSON POST to it (json:// or jsons://, its query kept as GET parameters)."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        return url
    quiet = logging.getLogger("apprise")  # apprise logs an error for every URL it does not know
    was_disabled, quiet.disabled = quiet.disabled, True
    try:
        native = Apprise.instantiate(url) is not None
    finally:
        quiet.disabled = was_disabled
    if native:
        return url
    query = urlencode([(f"-{key}", value) for key, value in parse_qsl(parts.query, keep_blank_values=True)])
    scheme = "jsons" if parts.scheme.lower() == "https" else "json"
    return urlunsplit((scheme, parts.netloc, parts.path or "/", query, ""))


def _error_line(exception) -> str:
    """The error in one line: an ecomlake task's is the command's own `ecomlake <command>: error: ...` line."""
    if exception is None:
        return "unknown error"
    lines = [line.strip() for line in str(exception).splitlines() if line.strip()]
    if type(exception) is AirflowException and lines:
        return lines[0]
    return f"{type(exception).__name__}: {lines[0]}" if lines else type(exception).__name__


def describe_failure(context) -> tuple[str, str, str]:
    """(kind, title, body) of the alert for a failed task: kind is `stale silver` or `freshness check failed` (an
    `ecomlake freshness` task), `dbt tests failed` (gold's dbt build or test run), else `task failed`. The body
    names the DAG, task, run and try, carries the error's one line and the link to the task's log in Airflow."""
    ti = context.get("ti") or context.get("task_instance")
    task = context.get("task") or getattr(ti, "task", None)
    dag_id, task_id = getattr(ti, "dag_id", "?"), getattr(ti, "task_id", "?")
    run_id = getattr(ti, "run_id", None) or context.get("run_id", "?")
    error = _error_line(context.get("exception"))
    command = str(getattr(task, "bash_command", "") or "")
    if error.startswith("ecomlake freshness: ") or command.endswith(" freshness"):
        kind = "stale silver" if "silver is stale" in error else "freshness check failed"
    elif "dbt tests failed" in error:
        kind = "dbt tests failed"
    else:
        kind = "task failed"
    try_number = getattr(ti, "try_number", None)
    tries = (getattr(ti, "max_tries", None) or 0) + 1
    try:
        link = ti.log_url
    except Exception:  # noqa: BLE001 - a link we cannot build must not cost the alert
        link = None
    title = f"ecomlake: {kind}: {dag_id}.{task_id}"
    body = "\n".join([
        f"{kind}: DAG {dag_id}, task {task_id}, run {run_id}, try {try_number or '?'}/{tries}",
        f"error: {error}",
        f"log: {link or '-'}",
    ])
    return kind, title, body


class EcomlakeAlert(AppriseNotifier):
    """The alert of a task's last failed try (on_failure_callback; retries only log), sent with apprise to every
    service of `alert_urls()`: webhook and/or email. With none configured it does nothing.

    Delivery is apprise's: a service that cannot be reached is logged by apprise (logger `apprise`) in the task log
    and does not change the task's outcome."""

    def __init__(self, urls: list[str] | None = None) -> None:
        super().__init__(body="", title="", notify_type="failure")
        self.urls = alert_urls() if urls is None else list(urls)

    def notify(self, context) -> None:
        if not self.urls:
            return
        kind, self.title, self.body = describe_failure(context)
        log.info("ecomlake alert: %s, sent to %d service(s)", self.title, len(self.urls))
        self.hook.notify(body=self.body, title=self.title, notify_type=self.notify_type, config=self.urls)


ALERT = EcomlakeAlert()

DEFAULT_ARGS = {
    "owner": "ecomlake",
    "retries": RETRIES,
    "retry_delay": RETRY_DELAY,
    "execution_timeout": TASK_TIMEOUT,
    # Airflow calls on_retry_callback, not on_failure_callback, for a failed try that will be retried: every try
    # logs its line, the last one also alerts.
    "on_failure_callback": [log_failure, ALERT],
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
