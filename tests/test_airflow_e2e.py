"""Every DAG runs for real, with `airflow dags test`, against the embedded stack (tests/test_airflow_dags.py checks
their schedules).

Airflow 3.3.2 runs in .venv-airflow (tests/helpers/airflow_venv.py) with a private AIRFLOW_HOME and a SQLite
metadata DB (`airflow db migrate`); the DAG tasks run the `ecomlake` of the venv under test (ECOMLAKE_BIN) with
the pipeline's environment: a Tansu broker started by `ecomlake broker start` on a free 127.0.0.1 port, a fresh
LAKEHOUSE_URI, the python Kafka source, delta-rs and DBT_TARGET=duckdb. 300 events (seed 3) are published first,
then, in the order the stack runs them:

- bronze_streams_raw: its task is the never-ending stream `ecomlake bronze`, so it is run bounded: until both
  bronze tables hold every published record, then Airflow stops it the way it stops any task (SIGTERM to
  `airflow dags test`: the task runner calls BashOperator.on_kill, which sends SIGTERM to the command's process
  group), and the `dags test` process, left waiting for the retry, is ended.
- silver_jobs: silver from that bronze; its last task updates the asset ecomlake_silver (an asset event in
  Airflow's DB, and gold_dbt queued on it, as the scheduler would see).
- gold_dbt (dbt build on DuckDB, then dbt source freshness) on that silver: gold equals the generator's manifest.
- the DAGs Airflow keeps beside the continuous services: freshness_checks passes, gold_full_refresh rebuilds gold to
  the same figures, lake_maintenance compacts and vacuums every table without changing a silver row count.
- silver_jobs again with LAKEHOUSE_URI a regular file, retry delay 1 s (ECOMLAKE_RETRY_DELAY_SECONDS): the task
  fails three times, each try logging the command's own `ecomlake silver: error: ...` line and the DAG's one-line
  `ecomlake task FAILED ...`, and the asset is not updated.

Where Airflow cannot be installed or the broker cannot start, the tests skip with one line; under CI=true they
fail instead, naming the part.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pytest

from ecomlake.settings import Settings
from helpers.airflow_venv import airflow_env, ensure_airflow_venv, skip_or_fail

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

EVENTS, SEED = 300, 3
BRONZE_TIMEOUT_S = 240.0
# dags test of silver_jobs / gold_dbt: Spark and dbt on a 2-core machine shared with other work
RUN_TIMEOUT_S = 600.0
# variables of the environment this test sets itself (the rest of the environment passes through)
OWN_PREFIXES = ("KAFKA_", "TOPIC_", "LAKE", "SPARK_EXTRA", "SPARK_PACKAGES", "SPARK_MASTER", "DBT_", "ECOMLAKE_")


@dataclass
class Run:
    """One `airflow dags test` (or one CLI step) and what it left."""

    returncode: int | None
    log: str
    seconds: float
    extra: dict = field(default_factory=dict)

    def output(self, last: int = 60) -> str:
        """The lines worth reading in a failure message: the tasks' command output and the errors."""
        keep = []
        for line in self.log.splitlines():
            if "[airflow.task.hooks." in line or "[error" in line or "ecomlake task FAILED" in line:
                keep.append(line.split(" [airflow.task.hooks.")[0])
        return "\n".join(keep[-last:]) or self.log[-4000:]


def _descendants(pid: int) -> set[int]:
    """Every live process below `pid` (Linux /proc; elsewhere none are found and none are cleaned up)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:].split()[0] != "Z"


class Stack:
    """The embedded stack and an Airflow home, with the helpers the phases use."""

    def __init__(self, root: Path, airflow_python: Path, ecomlake_bin: Path):
        self.root = root
        self.airflow = airflow_python.parent / "airflow"
        self.ecomlake = ecomlake_bin
        self.home = root / "airflow-home"
        self.home.mkdir()
        port = _free_port()
        self.settings = Settings.from_env({
            "KAFKA_BOOTSTRAP": f"127.0.0.1:{port}", "ECOMLAKE_RUN_DIR": str(root / "run"),
            "LAKEHOUSE_URI": str(root / "lakehouse"), "KAFKA_BROKER": "embedded", "KAFKA_SOURCE": "python",
            "LAKE_ENGINE": "delta-rs", "DBT_TARGET": "duckdb", "SPARK_MASTER": "local[2]",
        })
        inherited = airflow_env(self.home)
        self.env = {k: v for k, v in inherited.items() if not k.startswith(OWN_PREFIXES)}
        self.env.update(self.settings.to_env())
        self.env.update({
            "ECOMLAKE_BIN": str(ecomlake_bin),
            "SPARK_SHUFFLE_PARTITIONS": "2",
            # as docker-compose.yml: silver_jobs and gold_dbt start unpaused, so the silver asset queues gold_dbt
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "false",
            "NO_COLOR": "1",
        })
        self.timings: dict[str, float] = {}

    # --- running things

    def cli(self, *args: str, timeout: float = 120.0, **env: str) -> Run:
        started = time.monotonic()
        run = subprocess.run([str(self.ecomlake), *args], env={**self.env, **env}, cwd=self.root,
                             capture_output=True, text=True, timeout=timeout)
        return Run(run.returncode, run.stdout + run.stderr, time.monotonic() - started)

    def airflow_cmd(self, *args: str, timeout: float = 300.0) -> Run:
        started = time.monotonic()
        run = subprocess.run([str(self.airflow), *args], env=self.env, cwd=self.root, capture_output=True,
                             text=True, timeout=timeout)
        return Run(run.returncode, run.stdout + run.stderr, time.monotonic() - started)

    def dags_test(self, dag_id: str, timeout: float = RUN_TIMEOUT_S, **env: str) -> Run:
        """`airflow dags test DAG_ID` to its end; the output (every task's log) is kept in a file too."""
        log_path = self.root / f"dags-test-{dag_id}-{len(self.timings)}.log"
        started = time.monotonic()
        with open(log_path, "w") as log:
            proc = subprocess.Popen([str(self.airflow), "dags", "test", dag_id], env={**self.env, **env},
                                    cwd=self.root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            below: set[int] = set()
            try:
                while proc.poll() is None and time.monotonic() - started < timeout:
                    below |= _descendants(proc.pid)
                    time.sleep(0.5)
            finally:
                code = proc.poll()
                if code is None:
                    self._end(proc, below)
        return Run(code, log_path.read_text(errors="replace"), time.monotonic() - started,
                   {"timed_out": code is None, "log_path": str(log_path)})

    def _end(self, proc: subprocess.Popen, below: set[int]) -> None:
        """Stop a `dags test` process and every process it started (by pid: only ours)."""
        below |= _descendants(proc.pid)
        for sig, wait_s in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 10.0)):
            if proc.poll() is None:
                proc.send_signal(sig)
                try:
                    proc.wait(wait_s)
                except subprocess.TimeoutExpired:
                    pass
        for pid in below:
            if _alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    # --- looking at the results

    def db(self, sql: str, *params) -> list[tuple]:
        conn = sqlite3.connect(f"file:{self.home / 'airflow.db'}?mode=ro", uri=True, timeout=30)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def task_state(self, dag_id: str, task_id: str, run_id: str | None = None) -> tuple[str | None, int] | None:
        run_id = run_id or self.last_run_id(dag_id)
        rows = self.db("SELECT state, try_number FROM task_instance WHERE dag_id=? AND task_id=? AND run_id=?",
                       dag_id, task_id, run_id) if run_id else []
        return rows[0] if rows else None

    def last_run_id(self, dag_id: str) -> str | None:
        rows = self.db("SELECT run_id FROM dag_run WHERE dag_id=? ORDER BY id DESC LIMIT 1", dag_id)
        return rows[0][0] if rows else None

    def rows(self, schema: str, table: str) -> int:
        """Rows of the Delta table `schema.table` of the lakehouse (0 before its first commit)."""
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError

        try:
            return DeltaTable(self.settings.table_uri(schema, table)).to_pyarrow_dataset().count_rows()
        except TableNotFoundError:
            return 0


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- the phases ------------------------------------------------------------------------------------------


def run_bronze_bounded(stack: Stack, expected: dict[str, int]) -> Run:
    """bronze_streams_raw until bronze holds every published record, then stopped by Airflow (see module doc)."""
    log_path = stack.root / "dags-test-bronze_streams_raw.log"
    started = time.monotonic()
    extra: dict = {"states_seen": set(), "expected": expected}
    with open(log_path, "w") as log:
        proc = subprocess.Popen([str(stack.airflow), "dags", "test", "bronze_streams_raw"], env=stack.env,
                                cwd=stack.root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        below: set[int] = set()
        try:
            counts = {}
            while proc.poll() is None and time.monotonic() - started < BRONZE_TIMEOUT_S:
                below |= _descendants(proc.pid)
                state = stack.task_state("bronze_streams_raw", "stream_bronze")
                if state:
                    extra["states_seen"].add(state[0])
                counts = {table: stack.rows("bronze_raw", table) for table in expected}
                if all(counts[t] >= n for t, n in expected.items()):
                    break
                time.sleep(1.0)
            extra["ingest_s"] = time.monotonic() - started
            extra["exited_early"] = proc.poll()
            # Stop the stream as Airflow stops a task: SIGTERM to the task runner, whose on_kill sends SIGTERM to
            # the command's process group; then wait for the stream to end and its try to be recorded.
            streams = {pid for pid in _descendants(proc.pid) if b"bronze" in _cmdline(pid)}
            extra["stream_pids"] = sorted(streams)
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 60.0
            while any(_alive(pid) for pid in streams) and time.monotonic() < deadline:
                time.sleep(0.2)
            extra["stream_stopped"] = not any(_alive(pid) for pid in streams)
            deadline = time.monotonic() + 30.0
            while time.monotonic() < deadline:
                state = stack.task_state("bronze_streams_raw", "stream_bronze")
                if state and state[0] != "running":
                    break
                time.sleep(0.5)
            extra["state_after_stop"] = state
        finally:
            # `dags test` waits out the retry delay (2 minutes) to restart the stream: end it here
            stack._end(proc, below)
    extra["counts"] = {table: stack.rows("bronze_raw", table) for table in expected}
    return Run(extra["exited_early"], log_path.read_text(errors="replace"), time.monotonic() - started, extra)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


@dataclass
class Results:
    stack: Stack
    manifest: dict
    migrate: Run
    bronze: Run
    silver: Run
    gold: Run
    failing: Run
    failing_run_id: str | None
    silver_rows: dict[str, int]
    gold_rows: tuple
    asset_events: list[tuple]
    queued: list[tuple]
    asset_events_after_failure: int
    # The DAGs Airflow keeps beside the continuous services, run on the lake the ones above built.
    scheduled: dict[str, Run] = field(default_factory=dict)
    silver_rows_after_maintenance: dict[str, int] = field(default_factory=dict)
    gold_rows_after_full_refresh: tuple = ()


@pytest.fixture(scope="module")
def results(tmp_path_factory, request) -> Results:
    python = ensure_airflow_venv()
    ecomlake_bin = Path(sys.executable).parent / "ecomlake"
    if not ecomlake_bin.exists():
        skip_or_fail(f"the `ecomlake` command of the venv under test is missing ({ecomlake_bin}): pip install -e .")
    root = tmp_path_factory.mktemp("airflow-e2e")
    stack = Stack(root, python, ecomlake_bin)
    began = time.monotonic()

    migrate = stack.airflow_cmd("db", "migrate")
    assert migrate.returncode == 0, f"airflow db migrate failed:\n{migrate.log[-3000:]}"
    stack.timings["db migrate"] = migrate.seconds

    started = stack.cli("broker", "start")
    if started.returncode != 0:
        skip_or_fail(f"the embedded broker does not start: {(started.log.strip().splitlines() or ['?'])[-1]}")
    try:
        manifest_path = root / "manifest.json"
        sent = stack.cli("generate", "--events", str(EVENTS), "--seed", str(SEED), "--quiet",
                         "--manifest", str(manifest_path))
        assert sent.returncode == 0, sent.log
        manifest = json.loads(manifest_path.read_text())
        stack.timings["broker + generate"] = started.seconds + sent.seconds
        expected_bronze = {"orders_raw": manifest["per_topic"][stack.settings.topic_order_events]["sent"],
                           "payments_raw": manifest["per_topic"][stack.settings.topic_payment_events]["sent"]}

        bronze = run_bronze_bounded(stack, expected_bronze)
        stack.timings["bronze_streams_raw (bounded)"] = bronze.seconds

        silver = stack.dags_test("silver_jobs")
        stack.timings["silver_jobs"] = silver.seconds
        silver.extra["run_id"] = stack.last_run_id("silver_jobs")
        silver_rows = {t: stack.rows("silver", t)
                       for t in ("orders_clean", "payments_clean", "order_payments_enriched", "quarantine")}
        asset_events = stack.db(
            "SELECT a.name, e.source_dag_id, e.source_task_id, e.source_run_id FROM asset_event e "
            "JOIN asset a ON a.id = e.asset_id")
        queued = stack.db("SELECT a.name, q.target_dag_id FROM asset_dag_run_queue q JOIN asset a ON a.id = q.asset_id")

        gold = stack.dags_test("gold_dbt")
        stack.timings["gold_dbt"] = gold.seconds
        gold.extra["run_id"] = stack.last_run_id("gold_dbt")
        gold_rows = _gold(stack)

        scheduled = {}
        for dag_id in ("freshness_checks", "gold_full_refresh", "lake_maintenance"):
            scheduled[dag_id] = stack.dags_test(dag_id)
            scheduled[dag_id].extra["run_id"] = stack.last_run_id(dag_id)
            stack.timings[dag_id] = scheduled[dag_id].seconds
            if dag_id == "gold_full_refresh":
                gold_rows_after_full_refresh = _gold(stack)
        silver_rows_after_maintenance = {t: stack.rows("silver", t) for t in silver_rows}

        not_a_directory = root / "lakehouse-is-a-file"
        not_a_directory.write_text("not a lakehouse\n")
        failing = stack.dags_test("silver_jobs", timeout=300.0, LAKEHOUSE_URI=str(not_a_directory),
                                  ECOMLAKE_RETRY_DELAY_SECONDS="1")
        stack.timings["silver_jobs failing, 3 tries"] = failing.seconds
        failing_run_id = stack.last_run_id("silver_jobs")
        asset_events_after_failure = stack.db("SELECT count(*) FROM asset_event")[0][0]
    finally:
        stack.cli("broker", "stop")
    stack.timings["total"] = time.monotonic() - began
    _say(request, "airflow e2e timings: " + ", ".join(f"{k} {v:.0f}s" for k, v in stack.timings.items()))
    return Results(stack, manifest, migrate, bronze, silver, gold, failing, failing_run_id, silver_rows,
                   gold_rows, asset_events, queued, asset_events_after_failure, scheduled,
                   silver_rows_after_maintenance, gold_rows_after_full_refresh)


def _say(request, line: str) -> None:
    """One line on the terminal, past pytest's capture (the phase timings are worth seeing in every run)."""
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if capture is None or reporter is None:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        reporter.write_line(line)


def _gold(stack: Stack) -> tuple:
    """(minute rows, GMV, paid orders) of gold.fct_sales_minute in the embedded warehouse, or () without one."""
    import duckdb

    path = Path(stack.settings.warehouse_path)
    if not path.exists():
        return ()
    conn = duckdb.connect(str(path), read_only=True)
    try:
        return conn.execute("SELECT count(*), sum(gmv), sum(paid_orders) FROM gold.fct_sales_minute").fetchone()
    finally:
        conn.close()


# --- the checks ------------------------------------------------------------------------------------------


def test_bronze_dag_streams_every_published_record_exactly_once(results):
    bronze, stack = results.bronze, results.stack
    counts, expected = bronze.extra["counts"], bronze.extra["expected"]
    assert bronze.extra["exited_early"] is None, f"the stream's dags test ended by itself:\n{bronze.output()}"
    assert "running" in bronze.extra["states_seen"], (bronze.extra, bronze.output())
    assert sum(counts.values()) == EVENTS and counts == expected, (counts, bronze.output())
    assert f"{stack.ecomlake} bronze" in bronze.log, bronze.output()  # the venv under test, via ECOMLAKE_BIN
    assert "bronze: streaming" in bronze.log, bronze.output()


def test_airflow_stops_the_bronze_stream_through_its_task(results):
    """Stopping the task (SIGTERM to the task runner) reaches the stream: on_kill signals its process group, the
    stream stops and the try ends (it is not left running under a dead task)."""
    bronze = results.bronze
    assert bronze.extra["stream_pids"], f"no `ecomlake bronze` process under the task:\n{bronze.output()}"
    assert "Sending SIGTERM signal to process group" in bronze.log, bronze.output()
    assert "bronze: stopping" in bronze.log, bronze.output()
    assert bronze.extra["stream_stopped"], bronze.output()
    state = bronze.extra["state_after_stop"]
    assert state and state[0] in ("success", "up_for_retry"), (state, bronze.output())


def test_silver_dag_builds_silver_from_bronze(results):
    silver, expected = results.silver, results.manifest["expected"]
    assert silver.returncode == 0, silver.output()
    rows = results.silver_rows
    assert rows["orders_clean"] == expected["orders_clean_rows"] > 0, (rows, silver.output())
    assert rows["payments_clean"] == expected["payments_clean_rows"] > 0, (rows, silver.output())
    assert rows["order_payments_enriched"] == expected["order_payments_enriched_rows"] > 0, rows
    assert rows["quarantine"] == expected["quarantine_rows"], rows
    for task in ("silver", "register_tables"):
        assert results.stack.task_state("silver_jobs", task, silver.extra["run_id"]) == ("success", 1), task
    assert "nothing to register" in silver.log, silver.output()


def test_silver_dag_emits_the_silver_asset_which_queues_gold(results):
    run_id = results.silver.extra["run_id"]
    assert ("ecomlake_silver", "silver_jobs", "register_tables", run_id) in results.asset_events, \
        results.asset_events
    assert ("ecomlake_silver", "gold_dbt") in results.queued, results.queued


def test_gold_dag_builds_gold_then_checks_freshness(results):
    gold, stack, expected = results.gold, results.stack, results.manifest["expected"]
    assert gold.returncode == 0, gold.output()
    for task in ("dbt_build", "dbt_source_freshness"):
        assert stack.task_state("gold_dbt", task, gold.extra["run_id"]) == ("success", 1), task
    assert results.gold_rows, f"no {stack.settings.warehouse_path}:\n{gold.output()}"
    minutes, gmv, paid = results.gold_rows
    assert minutes > 0, gold.output()
    cents = Decimal("0.01")
    assert Decimal(gmv).quantize(cents) == Decimal(expected["gmv_usd_exact"]).quantize(cents)
    assert paid == expected["fully_paid_orders"]
    assert "freshness: PASS" in gold.log, gold.output()


def test_freshness_checks_dag_passes_on_fresh_silver(results):
    run, stack = results.scheduled["freshness_checks"], results.stack
    assert run.returncode == 0, run.output()
    assert stack.task_state("freshness_checks", "dbt_source_freshness", run.extra["run_id"]) == ("success", 1)
    assert "freshness: PASS" in run.log, run.output()


def test_gold_full_refresh_dag_rebuilds_gold_to_the_same_figures(results):
    run, stack = results.scheduled["gold_full_refresh"], results.stack
    assert run.returncode == 0, run.output()
    assert stack.task_state("gold_full_refresh", "dbt_full_refresh", run.extra["run_id"]) == ("success", 1)
    assert results.gold_rows_after_full_refresh == results.gold_rows, run.output()


def test_lake_maintenance_dag_compacts_without_changing_a_row(results):
    run, stack = results.scheduled["lake_maintenance"], results.stack
    assert run.returncode == 0, run.output()
    assert stack.task_state("lake_maintenance", "maintain", run.extra["run_id"]) == ("success", 1)
    assert "silver.orders_clean: compacted" in run.log, run.output()
    assert results.silver_rows_after_maintenance == results.silver_rows


def test_a_failing_task_retries_and_logs_one_clear_line_per_try(results):
    """silver_jobs on a LAKEHOUSE_URI that is a regular file, retry delay 1 s: three tries, each with the command's
    one-line error in the task log and the DAG's one `ecomlake task FAILED` line; no asset update, no registration."""
    failing, stack, run_id = results.failing, results.stack, results.failing_run_id
    assert failing.returncode != 0 and not failing.extra["timed_out"], failing.output()
    assert stack.task_state("silver_jobs", "silver", run_id) == ("failed", 3), failing.output()
    assert stack.task_state("silver_jobs", "register_tables", run_id)[0] == "upstream_failed"
    tries = stack.db("SELECT try_number, state FROM task_instance_history WHERE dag_id='silver_jobs' "
                     "AND task_id='silver' AND run_id=? ORDER BY try_number", run_id)
    assert [t for t, _ in tries] == [1, 2], tries
    assert results.asset_events_after_failure == len(results.asset_events), "a failed silver run updated the asset"
    error = f"ecomlake silver: error: LAKEHOUSE_URI={stack.root / 'lakehouse-is-a-file'} is a file, not a directory"
    assert failing.log.count(error) >= 3, failing.output()
    lines = [line for line in failing.log.splitlines() if "ecomlake task FAILED" in line]
    assert len(lines) == 3, failing.output()
    for n, (line, outcome) in enumerate(zip(lines, ("will retry", "will retry", "no retries left")), start=1):
        assert f"dag=silver_jobs task=silver run={run_id} try={n}/3 ({outcome})" in line, line
        assert f"error=AirflowException: {error} (exit code " in line, line
