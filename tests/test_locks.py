"""One writer per job and lake: a second concurrent run is refused at once with one line naming the first."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from conftest import REPO, cli_env
from ecomlake.errors import EcomlakeError
from ecomlake.locks import AlreadyRunning, s3_lease, single_writer

HOLD = "import sys, time; from ecomlake.locks import single_writer\n" \
       "with single_writer(sys.argv[1], sys.argv[2]):\n    print('held', flush=True); time.sleep(60)\n"


@pytest.fixture
def held(tmp_path):
    """A separate process holding a job's lock on a lake, as a running job would."""
    procs = []

    def hold(lake: str, job: str) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", HOLD, lake, job], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "held"
        procs.append(proc)
        return proc

    yield hold
    for proc in procs:
        proc.kill()
        proc.wait()


def test_a_second_writer_is_refused_naming_the_first(tmp_path, held):
    lake = str(tmp_path / "lake")
    holder = held(lake, "silver")
    with pytest.raises(AlreadyRunning, match=rf"another `ecomlake silver` is already writing this lake \(pid {holder.pid} on "):
        with single_writer(lake, "silver"):
            pass
    with single_writer(lake, "maintain"):
        pass


def test_the_lock_dies_with_its_holder(tmp_path, held):
    lake = str(tmp_path / "lake")
    holder = held(lake, "bronze:orders_raw")
    holder.kill()
    holder.wait()
    with single_writer(lake, "bronze:orders_raw"):
        pass


def test_a_lake_that_is_a_file_is_one_clear_error(tmp_path):
    path = tmp_path / "not-a-dir"
    path.write_text("x")
    with pytest.raises(EcomlakeError, match="is a file, not a directory"):
        with single_writer(str(path), "silver"):
            pass


@pytest.mark.slow
def test_a_second_silver_run_is_refused_at_once_with_one_line(settings, held):
    holder = held(settings.lakehouse_uri, "silver")
    run = subprocess.run([sys.executable, "-m", "pipeline.cli", "silver"], env=cli_env(settings), cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode != 0
    assert run.stderr.strip().splitlines() == [
        f"ecomlake silver: error: another `ecomlake silver` is already writing this lake (pid {holder.pid} on "
        f"{os.uname().nodename} since {run.stderr.split(' since ')[1][:8]}); wait for it or stop it"]


@pytest.mark.slow
def test_a_second_bronze_on_the_same_table_is_refused(settings, held):
    holder = held(settings.lakehouse_uri, "bronze:payments_raw")
    run = subprocess.run([sys.executable, "-m", "pipeline.cli", "bronze", "--available-now"], env=cli_env(settings),
                         cwd=REPO, capture_output=True, text=True, timeout=180)
    assert run.returncode != 0
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith(f"ecomlake bronze: error: another `ecomlake bronze` is already writing this lake "
                           f"(pid {holder.pid} on "), run.stderr[-2000:]


def test_a_second_gold_build_is_refused_before_dbt_starts(settings, held):
    from datetime import datetime, timezone

    from pipeline.bench.synthetic_silver import SilverLake, synthetic

    orders, payments = synthetic(20, seed=3)
    SilverLake(settings.lakehouse_uri).write(orders, payments, now=datetime.now(timezone.utc))
    holder = held(settings.lakehouse_uri, "gold")
    run = subprocess.run([sys.executable, "-m", "pipeline.cli", "gold"], env=cli_env(settings), cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode != 0
    assert run.stderr.strip().splitlines() == [
        f"ecomlake gold: error: another `ecomlake gold` is already writing this lake (pid {holder.pid} on "
        f"{os.uname().nodename} since {run.stderr.split(' since ')[1][:8]}); wait for it or stop it"], run.stderr
    assert "Traceback" not in run.stdout + run.stderr


@pytest.mark.parametrize("command", [["bronze", "--available-now"], ["silver"], ["gold"], ["maintain"], ["demo", "--no-live"]])
def test_a_lake_path_that_is_a_file_stops_every_command_with_one_line(tmp_path, command):
    lake = tmp_path / "lake"
    lake.write_text("not a directory")
    env = {**os.environ, "LAKEHOUSE_URI": str(lake), "ECOMLAKE_RUN_DIR": str(tmp_path / "run"),
           "KAFKA_BOOTSTRAP": "127.0.0.1:9"}
    run = subprocess.run([sys.executable, "-m", "pipeline.cli", *command], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode != 0
    assert run.stderr.strip().splitlines() == [
        f"ecomlake {command[0]}: error: LAKEHOUSE_URI={lake} is a file, not a directory"], run.stderr


# --- a lake on S3: leases by conditional writes ------------------------------------------------------------------
@pytest.fixture
def s3_env(s3_lake_server, monkeypatch):
    for name, value in s3_lake_server.env.items():
        monkeypatch.setenv(name, value)
    return s3_lake_server


def test_on_s3_a_second_writer_is_refused_until_a_killed_holders_lease_expires(s3_env, held, monkeypatch):
    lake = s3_env.lake_uri()
    monkeypatch.setenv("LOCK_LEASE_SECONDS", "3")
    holder = held(lake, "silver")
    with pytest.raises(AlreadyRunning, match=rf"another `ecomlake silver` is already writing this lake \(pid {holder.pid} on "):
        with single_writer(lake, "silver"):
            pass
    with single_writer(lake, "gold"):
        pass
    holder.kill()
    holder.wait()
    with pytest.raises(AlreadyRunning):
        with single_writer(lake, "silver"):
            pass
    time.sleep(3.5)
    with single_writer(lake, "silver"):
        key = f"{lake.split('/', 3)[3]}/_locks/silver.lock"
        assert s3_env.client().get_object(Bucket=s3_env.bucket, Key=key)["Body"].read()
    with single_writer(lake, "silver"):
        pass


def test_on_s3_of_runs_starting_together_exactly_one_gets_the_lease(s3_env):
    lake = s3_env.lake_uri()
    barrier, outcomes = threading.Barrier(6), []

    def contend():
        barrier.wait()
        try:
            with s3_lease(lake, "silver", lease_s=30):
                outcomes.append("held")
                time.sleep(1.0)
        except AlreadyRunning:
            outcomes.append("refused")

    threads = [threading.Thread(target=contend) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["held"] + ["refused"] * 5


def test_on_s3_a_running_holder_keeps_its_lease_past_the_lease_time(s3_env):
    lake = s3_env.lake_uri()
    with s3_lease(lake, "maintain", lease_s=1.5) as lease:
        time.sleep(3.5)
        with pytest.raises(AlreadyRunning):
            with s3_lease(lake, "maintain", lease_s=1.5):
                pass
        assert not lease.lost


@pytest.mark.slow
def test_on_s3_a_second_silver_run_is_refused_with_one_line(settings, s3_env, held):
    lake = s3_env.lake_uri()
    holder = held(lake, "silver")
    env = {**cli_env(settings), **s3_env.env, "LAKEHOUSE_URI": lake}
    run = subprocess.run([sys.executable, "-m", "pipeline.cli", "silver"], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode != 0
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"ecomlake silver: error: another `ecomlake silver` is already writing this lake (pid {holder.pid} on "), lines
