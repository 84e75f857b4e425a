"""The failure alerts of the Airflow DAGs (airflow/dags/ecomlake_common.py: EcomlakeAlert, Airflow's apprise
notifier, on every task's on_failure_callback), received for real on 127.0.0.1: a webhook by a tiny http.server in
this process, email by a local SMTP server (aiosmtpd).

- Each kind of alert (stale silver, dbt tests failed, any other failed task) is sent by the DAGs' own notifier in
  .venv-airflow (tests/helpers/airflow_alert_send.py) and arrives at both with the DAG/task, the error's one line
  and the link to the task's log.
- A real `airflow dags test freshness_checks` on a lake whose silver is two hours old (real `ecomlake freshness`,
  real dbt): three failed tries, one alert (the last try's), carrying the command's own error line and the Airflow
  log URL of that try.
- `ecomlake gold`'s last line, which the dbt-tests alert carries, from a dbt result with failed tests.
"""

from __future__ import annotations

import email
import email.policy
import json
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest

from ecomlake.settings import Settings
from helpers.airflow_venv import DAGS, REPO, airflow_env, ensure_airflow_venv, skip_or_fail

SEND_SCRIPT = REPO / "tests" / "helpers" / "airflow_alert_send.py"
# variables this test sets itself (the rest of the environment passes through), as tests/test_airflow_e2e.py
OWN_PREFIXES = ("KAFKA_", "TOPIC_", "LAKE", "SPARK_EXTRA", "SPARK_PACKAGES", "SPARK_MASTER", "DBT_", "ECOMLAKE_")
LOG_BASE = "http://127.0.0.1:8088"  # Airflow's [api] base_url in the real run: the alert's link starts with it


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.received.append({"path": self.path, "type": self.headers.get("Content-Type"), "body": body})
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def webhook():
    """A webhook receiver on 127.0.0.1: (its URL, the requests it received)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks/ecomlake?token=local", server.received
    finally:
        server.shutdown()
        server.server_close()


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], email.message.EmailMessage]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        message = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 OK"


@pytest.fixture
def mailbox():
    """An SMTP server on 127.0.0.1 (aiosmtpd): (its port, the mail it received)."""
    try:
        from aiosmtpd.controller import Controller
    except ImportError:
        skip_or_fail("aiosmtpd (the dev extra) is not installed: pip install -e '.[dev]'")
    box = _Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=_free_port())
    controller.start()
    try:
        yield controller.port, box.messages
    finally:
        controller.stop()


RECIPIENTS = ["data@ecomlake.local", "oncall@ecomlake.local"]  # apprise sends one mail to each


def alert_env(webhook_url: str, smtp_port: int) -> dict[str, str]:
    return {"ECOMLAKE_ALERT_WEBHOOK_URL": webhook_url, "ECOMLAKE_ALERT_SMTP_HOST": "127.0.0.1",
            "ECOMLAKE_ALERT_SMTP_PORT": str(smtp_port), "ECOMLAKE_ALERT_SMTP_FROM": "airflow@ecomlake.local",
            "ECOMLAKE_ALERT_SMTP_TO": ",".join(reversed(RECIPIENTS))}


def _wait(received: list, n: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while len(received) < n and time.monotonic() < deadline:
        time.sleep(0.05)


def _posted(request: dict) -> dict:
    assert request["path"] == "/hooks/ecomlake?token=local", request["path"]  # the URL's query reaches it
    assert request["type"].startswith("application/json"), request["type"]
    return json.loads(request["body"])


def _mail_text(message) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()


def test_each_alert_kind_reaches_the_webhook_and_the_mailbox(tmp_path, webhook, mailbox):
    url, posts = webhook
    port, mails = mailbox
    python = ensure_airflow_venv()
    out = tmp_path / "sent.json"
    env = {k: v for k, v in airflow_env(tmp_path).items() if not k.startswith("ECOMLAKE_")}
    run = subprocess.run([str(python), str(SEND_SCRIPT), str(DAGS), str(out)], env={**env, **alert_env(url, port)},
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    sent = json.loads(out.read_text())
    assert sent["urls"][0].startswith("json://127.0.0.1:") and sent["urls"][0].endswith("/hooks/ecomlake?-token=local")
    assert sent["urls"][1].startswith(f"mailto://127.0.0.1:{port}?"), sent["urls"]
    _wait(posts, 3)
    _wait(mails, 3 * len(RECIPIENTS))
    assert len(posts) == 3 and len(mails) == 3 * len(RECIPIENTS), (posts, mails, run.stderr[-3000:])

    expected = {
        "stale silver": ("freshness_checks", "dbt_source_freshness",
                         "ecomlake freshness: error: silver is stale: ERROR silver.orders_clean: newest ingest_ts is "
                         "120.0 min old (exit code 1)"),
        "dbt tests failed": ("gold_dbt", "dbt_build",
                             "ecomlake gold: error: dbt tests failed (1): test.assert_gmv_reconciles_with_silver: fail: "
                             "Got 1 result, configured to fail if != 0 (exit code 1)"),
        "task failed": ("lake_maintenance", "maintain", "TimeoutError: Timeout, PID: 4242"),
    }
    posted = {p["title"]: p for p in map(_posted, posts)}
    mailed: dict[str, list] = {}
    for sender, to, message in mails:
        mailed.setdefault(str(message["Subject"]), []).append((sender, to, message))
    for kind, (dag_id, task_id, error) in expected.items():
        title = f"ecomlake: {kind}: {dag_id}.{task_id}"
        link = f"log: {LOG_BASE}/dags/{dag_id}/runs/r/tasks/{task_id}?try_number=3"
        assert title in posted, (title, sorted(posted))
        post = posted[title]
        assert post["type"] == "failure", post
        assert f"DAG {dag_id}, task {task_id}" in post["message"] and "try 3/3" in post["message"], post
        assert f"error: {error}" in post["message"].splitlines(), post
        assert link in post["message"].splitlines(), post
        assert title in mailed, (title, sorted(mailed))
        assert sorted(to for _, (to,), _ in mailed[title]) == RECIPIENTS, mailed[title]
        for sender, _, message in mailed[title]:
            assert sender == "airflow@ecomlake.local", sender
            text = _mail_text(message)
            assert f"DAG {dag_id}, task {task_id}" in text and f"error: {error}" in text and link in text, text


@pytest.mark.slow
def test_a_failing_freshness_check_in_airflow_alerts_once_on_its_last_try(tmp_path, webhook, mailbox):
    """`airflow dags test freshness_checks` on silver last loaded two hours ago (dbt's error threshold is 60 min):
    `ecomlake freshness` fails each of the three tries (retry delay 0 s); only the last one alerts, to both
    receivers, with the command's own error line and the Airflow log URL of try 3."""
    from pipeline.bench.synthetic_silver import SilverLake, synthetic

    url, posts = webhook
    port, mails = mailbox
    python = ensure_airflow_venv()
    ecomlake_bin = Path(sys.executable).parent / "ecomlake"
    if not ecomlake_bin.exists():
        skip_or_fail(f"the `ecomlake` command of the venv under test is missing ({ecomlake_bin}): pip install -e .")
    settings = Settings.from_env({"LAKEHOUSE_URI": str(tmp_path / "lakehouse"), "ECOMLAKE_RUN_DIR": str(tmp_path / "run"),
                                  "DBT_TARGET": "duckdb", "LAKE_ENGINE": "delta-rs"})
    orders, payments = synthetic(10, seed=27)
    SilverLake(settings.lakehouse_uri).write(orders, payments, now=datetime.now(UTC) - timedelta(hours=2))

    home = tmp_path / "airflow-home"
    home.mkdir()
    env = {k: v for k, v in airflow_env(home).items() if not k.startswith(OWN_PREFIXES)}
    env.update(settings.to_env())
    env.update({"ECOMLAKE_BIN": str(ecomlake_bin), "ECOMLAKE_RETRY_DELAY_SECONDS": "0",
                "AIRFLOW__API__BASE_URL": LOG_BASE, "NO_COLOR": "1", **alert_env(url, port)})
    airflow = python.parent / "airflow"
    started = time.monotonic()
    migrate = subprocess.run([str(airflow), "db", "migrate"], env=env, cwd=tmp_path, capture_output=True, text=True,
                             timeout=300)
    assert migrate.returncode == 0, migrate.stdout[-2000:] + migrate.stderr[-2000:]
    run = subprocess.run([str(airflow), "dags", "test", "freshness_checks"], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=400)
    log = run.stdout + run.stderr
    (tmp_path / "dags-test.log").write_text(log)
    print(f"db migrate + dags test: {time.monotonic() - started:.0f}s")
    assert run.returncode != 0, log[-4000:]
    failed = [line for line in log.splitlines() if "ecomlake task FAILED" in line]
    assert len(failed) == 3 and "no retries left" in failed[-1], "\n".join(failed) or log[-4000:]

    _wait(posts, 1)
    _wait(mails, len(RECIPIENTS))
    time.sleep(0.5)  # nothing more may arrive
    assert len(posts) == 1 and len(mails) == len(RECIPIENTS), (posts, [m[2]["Subject"] for m in mails], log[-4000:])
    post = _posted(posts[0])
    assert post["title"] == "ecomlake: stale silver: freshness_checks.dbt_source_freshness", post
    lines = post["message"].splitlines()
    assert lines[0].startswith("stale silver: DAG freshness_checks, task dbt_source_freshness, run "), lines
    assert lines[0].endswith(", try 3/3"), lines
    error = next(line for line in lines if line.startswith("error: "))
    assert error.startswith("error: ecomlake freshness: error: silver is stale: ERROR silver."), error
    assert "min old" in error and error.endswith("(exit code 1)"), error
    (link,) = [line for line in lines if line.startswith("log: ")]
    assert link.startswith(f"log: {LOG_BASE}/dags/freshness_checks/runs/"), link
    assert link.endswith("/tasks/dbt_source_freshness?try_number=3"), link
    assert sorted(to for _, (to,), _ in mails) == RECIPIENTS
    for _, _, message in mails:
        assert str(message["Subject"]) == post["title"]
        text = _mail_text(message)
        assert error in text and link in text, text


def test_gold_names_the_failed_dbt_tests_in_its_last_line():
    """What `ecomlake gold` prints last when dbt fails (the error line the dbt-tests alert carries)."""
    from gold.build import failure_line

    def node(kind: str, name: str, status: str, message: str = "") -> SimpleNamespace:
        return SimpleNamespace(node=SimpleNamespace(resource_type=kind, name=name), status=status, message=message)

    tests = [node("test", f"t{i}", "fail", f"Got {i} results, configured to fail if != 0\nmore") for i in range(1, 6)]
    result = SimpleNamespace(result=SimpleNamespace(results=[node("model", "fct_sales_minute", "success"), *tests]))
    assert failure_line(result) == (
        "dbt tests failed (5): test.t1: fail: Got 1 results, configured to fail if != 0; test.t2: fail: Got 2 results, "
        "configured to fail if != 0; test.t3: fail: Got 3 results, configured to fail if != 0; and 2 more")
    model = SimpleNamespace(result=SimpleNamespace(results=[node("model", "fct_sales_minute", "error", "boom")]))
    assert failure_line(model) == "dbt build failed (1): model.fct_sales_minute: error: boom"
    nothing = SimpleNamespace(result=None, exception=RuntimeError("no profile\ndetail"))
    assert failure_line(nothing) == "dbt build failed: no profile"
