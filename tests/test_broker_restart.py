"""A broker that comes back without its data must never make bronze skip messages silently.

The issue's reproduction: 1,000 events, bronze, the embedded broker restarted (it keeps data in memory only),
3,000 new events, bronze again. The new broker's offsets start over at 0 and run past what the checkpoint read,
so bronze would resume at the old offsets and never ingest the first 1,000 new messages, exiting 0."""

from __future__ import annotations

import dataclasses
import re

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
    assert "ecomlake bronze --reset-source" in message
    again = run_available_now(spark, dataclasses.replace(settings, lakehouse_uri=settings.lakehouse_uri + "-new"))
    assert again["rows"] == 300, "on a fresh lake the new broker's messages are all there to read"


def test_reset_source_reads_the_new_incarnation_and_keeps_the_old_rows(spark, own_broker):
    """The issue's explicit option: after the refusal, `--reset-source` ingests every message of the new broker,
    keeps the first broker's rows, and silver takes both without mistaking equal offsets for the same message."""
    from pyspark.sql import functions as F

    from batch.silver.jobs import run_silver
    from ecomlake.lake import get_engine
    from ecomlake.tables import ORDER_EVENTS, PAYMENTS_CLEAN, QUARANTINE

    settings = dataclasses.replace(own_broker, topic_partitions=1)
    generate(settings, events=100, seed=1)
    assert run_available_now(spark, settings)["rows"] == 100
    broker.stop(settings)
    broker.start(settings)
    generate(settings, events=300, seed=2, start="2026-11-21T12:00:00Z")
    with pytest.raises(EcomlakeError, match="--reset-source"):
        run_available_now(spark, settings)

    assert run_available_now(spark, settings, reset=True)["rows"] == 300
    lake = get_engine(spark, settings)
    for bronze in bronze_tables(settings):
        rows = lake.read(bronze.uri)
        per = dict(rows.groupBy("incarnation").count().collect())
        assert sum(per.values()) == rows.select("topic", "incarnation", "partition", "offset").distinct().count()
        assert set(per) == {0, 1}, per
    assert sum(lake.read(b.uri).count() for b in bronze_tables(settings)) == 400
    assert run_available_now(spark, settings)["rows"] == 0, "the new incarnation resumes like any checkpoint"
    generate(settings, events=20, seed=3, start="2026-11-21T13:00:00Z")
    assert run_available_now(spark, settings)["rows"] == 20

    run_silver(spark, settings)
    bronze_events = {
        r["id"] for b in bronze_tables(settings)
        for r in lake.read(b.uri).select(F.get_json_object("raw_value", "$.event_id").alias("id")).collect()
    }
    silver_events = {
        r["event_id"] for t in (ORDER_EVENTS, PAYMENTS_CLEAN)
        for r in lake.read(t.uri(settings)).select("event_id").collect()
    }
    quarantined = lake.read(QUARANTINE.uri(settings)).count() if lake.exists(QUARANTINE.uri(settings)) else 0
    assert quarantined == 0
    assert silver_events == bronze_events and len(bronze_events) == 420


def test_bronze_resumes_normally_on_the_same_broker(spark, own_broker):
    settings = dataclasses.replace(own_broker, topic_partitions=2)
    generate(settings, events=80, seed=4)
    assert run_available_now(spark, settings)["rows"] == 80
    generate(settings, events=40, seed=5, start="2026-11-21T11:00:00Z")
    assert run_available_now(spark, settings)["rows"] == 40


def _goes_away_under_a_running_bronze(settings, env) -> None:
    """bronze streams, the broker stops under it: one line naming the unreachable broker within the timeout."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    from conftest import REPO

    generate(settings, events=30, seed=6)
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "bronze", "--trigger", "1", "--connect-timeout", "5"],
                            env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log_dir = Path(settings.table_uri("bronze_raw", "payments_raw")) / "_delta_log"
    try:
        deadline = time.monotonic() + 240
        while proc.poll() is None and time.monotonic() < deadline and not any(log_dir.glob("*.json")):
            time.sleep(0.5)
        assert proc.poll() is None and any(log_dir.glob("*.json")), "bronze should be streaming first"
        broker.stop(settings)
        _, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode not in (0, None)
    lines = err.strip().splitlines()
    # A source that reads the broker inside the batch (spark-kafka) fails the batch at once; the python source's
    # batches are planned from offsets, so the watchdog's timeout runs out first.
    assert re.fullmatch(
        rf"ecomlake bronze: error: Kafka broker at {re.escape(settings.kafka_bootstrap)} is not reachable"
        r"( \(for 5s\); bronze stopped between batches|; bronze stopped \(the batch under way was not committed and is "
        r"read again\)) and resumes where it stopped when run again with the broker back", lines[-1]), lines[-1]
    assert "Traceback" not in err and "retention" not in err, err[-3000:]
    assert len(lines) < 15, err[-3000:]


def test_a_broker_that_goes_away_under_a_running_bronze_is_one_line_within_the_timeout(own_broker):
    from conftest import cli_env

    _goes_away_under_a_running_bronze(own_broker, cli_env(own_broker))


@pytest.mark.slow
def test_apache_kafka_going_away_under_bronze_on_the_official_seams_is_one_line(tmp_path, spark_jars):
    """The same on a private Apache Kafka (the session's stays up for everyone else), with Spark's own Kafka source
    and Delta Lake for Spark."""
    from conftest import cli_env
    from fixtures_kafka import fetched, kafka_settings_for

    fetched("kafka")
    settings = dataclasses.replace(kafka_settings_for(tmp_path / "kafka"), kafka_source="spark-kafka",
                                   lake_engine="delta-spark")
    broker.start(settings)
    try:
        _goes_away_under_a_running_bronze(settings, cli_env(settings, SPARK_EXTRA_JARS=spark_jars,
                                                            SPARK_SHUFFLE_PARTITIONS="2"))
    finally:
        broker.stop(settings)


@pytest.mark.slow
def test_a_recreated_topic_on_apache_kafka_is_refused_then_reset_on_the_official_seams(kafka_settings, spark_jars):
    """The same case on the official parts: Apache Kafka, Spark's own Kafka source and Delta Lake for Spark, through
    the command line. Deleting and recreating the topics starts their offsets over, as a broker that lost its data."""
    import subprocess
    import sys
    import time

    from confluent_kafka.admin import AdminClient
    from deltalake import DeltaTable

    from conftest import REPO, cli_env

    settings = dataclasses.replace(kafka_settings, kafka_source="spark-kafka", lake_engine="delta-spark",
                                   topic_partitions=2)
    env = cli_env(settings, SPARK_EXTRA_JARS=spark_jars, SPARK_SHUFFLE_PARTITIONS="2")

    def bronze(*args):
        return subprocess.run([sys.executable, "-m", "pipeline.cli", "bronze", "--available-now", *args], cwd=REPO,
                              env=env, capture_output=True, text=True, timeout=600)

    generate(settings, events=60, seed=1)
    assert bronze().returncode == 0
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    for future in admin.delete_topics(list(settings.topics)).values():
        future.result(30)
    deadline = time.monotonic() + 60
    while set(settings.topics) & set(admin.list_topics(timeout=10).topics) and time.monotonic() < deadline:
        time.sleep(0.5)
    generate(settings, events=150, seed=2, start="2026-11-21T12:00:00Z")

    refused = bronze()
    assert refused.returncode != 0
    # The JVM prints its start-up banner before Spark's logging is configured; the error is the one line after it.
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith("ecomlake bronze: error: ") and "ecomlake bronze --reset-source" in last, refused.stderr[-3000:]
    assert "Traceback" not in refused.stderr

    reset = bronze("--reset-source")
    assert reset.returncode == 0, reset.stderr[-3000:]
    assert reset.stdout.startswith("bronze: 150 new rows"), reset.stdout
    stored = [DeltaTable(b.uri).to_pyarrow_table(columns=["incarnation"]).column(0).to_pylist()
              for b in bronze_tables(settings)]
    flat = [0 if i is None else i for rows in stored for i in rows]
    assert len(flat) == 210 and flat.count(1) == 150


def test_reset_source_sets_the_checkpoint_aside_on_an_s3_lake(s3_lake_server, monkeypatch):
    """On S3 there is no directory to rename: every object of the checkpoint is copied aside, then removed."""
    from pyarrow import fs

    from ecomlake.lake.fs import resolve
    from streaming import checkpoint_log
    from streaming.bronze import BronzeTable, incarnation, reset_source

    for name, value in s3_lake_server.env.items():
        monkeypatch.setenv(name, value)
    lake = s3_lake_server.lake_uri()
    bronze = BronzeTable("orders_raw", "orders", f"{lake}/bronze_raw/orders_raw", f"{lake}/_checkpoints/bronze_orders_raw")
    assert reset_source(bronze) is None, "nothing to reset before bronze has read anything"
    for name, text in (("metadata", '{"id":"q1"}'), ("offsets/0", "v1\n{}\n{}"), ("commits/0", "v1\n{}")):
        checkpoint_log.write_text(f"{bronze.checkpoint}/{name}", text)
    assert reset_source(bronze) == 1 and incarnation(bronze) == 1
    filesystem, root = resolve(lake)
    kept = sorted(i.path[len(root) + 1:] for i in filesystem.get_file_info(fs.FileSelector(root, recursive=True))
                  if i.type == fs.FileType.File)
    assert kept == ["_checkpoints/bronze_orders_raw-incarnation-0/commits/0",
                    "_checkpoints/bronze_orders_raw-incarnation-0/metadata",
                    "_checkpoints/bronze_orders_raw-incarnation-0/offsets/0",
                    "_checkpoints/bronze_orders_raw/incarnation"], kept
    assert reset_source(bronze) is None, "a fresh incarnation has nothing to reset yet"
