"""A broker that comes back without its data must never make bronze skip messages silently.

The issue's reproduction: 1,000 events, bronze, the embedded broker restarted (it keeps data in memory only),
3,000 new events, bronze again. The new broker's offsets start over at 0 and run past what the checkpoint read,
so bronze would resume at the old offsets and never ingest the first 1,000 new messages, exiting 0."""

from __future__ import annotations

import dataclasses

import pytest

from conftest import free_port
from ecomlake import broker
from ecomlake.errors import EcomlakeError
from ecomlake.settings import Settings
from generator import generate
from streaming.bronze import bronze_tables, run_available_now


@pytest.fixture
def own_broker(tmp_path):
    """A private embedded broker this test may restart (the session's broker stays up for everyone else)."""
    settings = Settings.from_env({
        "KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "ECOMLAKE_RUN_DIR": str(tmp_path / "run"),
        "LAKEHOUSE_URI": str(tmp_path / "lakehouse"),
    })
    broker.start(settings)
    yield settings
    broker.stop(settings)


def test_bronze_stops_with_one_line_when_the_broker_came_back_empty_with_more_messages(spark, own_broker):
    settings = dataclasses.replace(own_broker, topic_partitions=1)
    generate(settings, events=100, seed=1)
    first = run_available_now(spark, settings)
    assert first["rows"] == 100
    broker.stop(settings)
    broker.start(settings)
    generate(settings, events=300, seed=2)
    with pytest.raises(EcomlakeError) as failure:
        run_available_now(spark, settings)
    message = str(failure.value)
    assert "\n" not in message
    assert "is not the message bronze stored" in message and "would skip every new message" in message
    assert bronze_tables(settings)[0].checkpoint in message or bronze_tables(settings)[1].checkpoint in message
    again = run_available_now(spark, dataclasses.replace(settings, lakehouse_uri=settings.lakehouse_uri + "-new"))
    assert again["rows"] == 300, "on a fresh lake the new broker's messages are all there to read"


def test_bronze_resumes_normally_on_the_same_broker(spark, own_broker):
    settings = dataclasses.replace(own_broker, topic_partitions=2)
    generate(settings, events=80, seed=4)
    assert run_available_now(spark, settings)["rows"] == 80
    generate(settings, events=40, seed=5, start="2026-11-21T11:00:00Z")
    assert run_available_now(spark, settings)["rows"] == 40


def test_a_broker_that_goes_away_under_a_running_bronze_is_one_line_within_the_timeout(own_broker):
    import subprocess
    import sys
    import time
    from pathlib import Path

    from conftest import REPO, cli_env

    generate(own_broker, events=30, seed=6)
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "bronze", "--trigger", "1", "--connect-timeout", "5"],
                            env=cli_env(own_broker), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log_dir = Path(own_broker.table_uri("bronze_raw", "payments_raw")) / "_delta_log"
    try:
        deadline = time.monotonic() + 240
        while proc.poll() is None and time.monotonic() < deadline and not any(log_dir.glob("*.json")):
            time.sleep(0.5)
        assert proc.poll() is None and any(log_dir.glob("*.json")), "bronze should be streaming first"
        broker.stop(own_broker)
        _, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode not in (0, None)
    lines = err.strip().splitlines()
    assert lines[-1] == (f"ecomlake bronze: error: Kafka broker at {own_broker.kafka_bootstrap} is not reachable (for 5s); "
                         "bronze stopped between batches and resumes where it stopped when run again with the broker back")
    assert "Traceback" not in err and "retention" not in err, err[-3000:]
    assert len(lines) < 15, err[-3000:]
