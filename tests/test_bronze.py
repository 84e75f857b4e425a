"""Bronze: Kafka -> bronze_raw Delta tables, exactly once, on the real embedded broker, Spark and Delta."""

from __future__ import annotations

import base64
import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from deltalake import DeltaTable

from conformance_cases import produce
from conftest import cli_env, free_port
from ecomlake import contract
from ecomlake.errors import EcomlakeError
from streaming.bronze import bronze_tables, run_available_now

ECOMLAKE = str(Path(sys.executable).parent / "ecomlake")
BRONZE_TYPES = [
    ("raw_key", "string"), ("raw_value", "string"), ("raw_value_b64", "string"), ("topic", "string"),
    ("partition", "integer"), ("offset", "long"), ("kafka_timestamp", "timestamp"), ("ingest_ts", "timestamp"),
    ("incarnation", "integer"),
]


def bronze_uri(settings, table: str) -> str:
    return settings.table_uri(contract.BRONZE_SCHEMA, table)


def bronze_rows(settings, table: str) -> list[dict]:
    uri = bronze_uri(settings, table)
    return DeltaTable(uri).to_pyarrow_table().to_pylist() if DeltaTable.is_deltatable(uri) else []


def payload(row: dict) -> bytes:
    """The exact Kafka value bytes as bronze keeps them."""
    if row["raw_value_b64"] is not None:
        return base64.b64decode(row["raw_value_b64"])
    return row["raw_value"].encode("utf-8")


def assert_exactly(settings, table: str, sent: dict) -> None:
    rows = bronze_rows(settings, table)
    coords = [(r["partition"], r["offset"]) for r in rows]
    assert len(coords) == len(set(coords)), "a message was written twice"
    assert {(r["partition"], r["offset"]): payload(r) for r in rows} == {k: v[1] for k, v in sent.items()}


def test_each_event_lands_once_with_exact_bytes(spark, settings):
    orders = [(f"o-{i}".encode(), f'{{"order": {i}}}'.encode(), None) for i in range(120)]
    orders += [(b"o-bad", b"\xff\xfe{\"not\": \"utf-8\"}\x80", 1), (b"o-empty", b"", 2)]
    sent_orders = produce(settings.kafka_bootstrap, settings.topic_order_events, orders)
    # A batching producer: the embedded broker then under-reports the end offset (see docs/stages.md).
    sent_payments = produce(settings.kafka_bootstrap, settings.topic_payment_events,
                            [(b"o-1", f'{{"pay": {i}}}'.encode(), 0) for i in range(150)], batching=True)

    stats = run_available_now(spark, settings)

    assert stats[contract.BRONZE_ORDERS]["rows"] == 122 and stats[contract.BRONZE_PAYMENTS]["rows"] == 150
    assert_exactly(settings, contract.BRONZE_ORDERS, sent_orders)
    assert_exactly(settings, contract.BRONZE_PAYMENTS, sent_payments)
    table = DeltaTable(bronze_uri(settings, contract.BRONZE_ORDERS))
    assert [(f.name, f.type.type) for f in table.schema().fields] == BRONZE_TYPES
    rows = bronze_rows(settings, contract.BRONZE_ORDERS)
    bad = next(r for r in rows if r["raw_key"] == "o-bad")
    assert "\ufffd" in bad["raw_value"] and bad["raw_value_b64"] is not None
    assert all(r["raw_value_b64"] is None for r in rows if r["raw_key"] != "o-bad")

    again = run_available_now(spark, settings)
    assert again["rows"] == 0 and len(bronze_rows(settings, contract.BRONZE_ORDERS)) == 122

    # The embedded broker keeps data in memory only: after a restart the topics are back at offset 0.
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    for future in admin.delete_topics([settings.topic_order_events]).values():
        future.result()
    produce(settings.kafka_bootstrap, settings.topic_order_events, [(b"k", b"new", None)])
    with pytest.raises(EcomlakeError, match="lost data .*ecomlake bronze --reset-source"):
        run_available_now(spark, settings)


def test_max_offsets_per_trigger_bounds_batches_and_a_replayed_batch_is_skipped(spark, settings):
    sent = produce(settings.kafka_bootstrap, settings.topic_order_events,
                   [(f"o-{i}".encode(), f"{i}".encode(), None) for i in range(250)])
    produce(settings.kafka_bootstrap, settings.topic_payment_events, [])

    stats = run_available_now(spark, settings, max_offsets=100)

    uri = bronze_uri(settings, contract.BRONZE_ORDERS)
    written = [c["operationMetrics"]["num_added_rows"] for c in DeltaTable(uri).history() if c["operation"] == "WRITE"]
    assert sorted(written, reverse=True) == [100, 100, 50] and stats[contract.BRONZE_ORDERS]["batches"] == 3
    assert_exactly(settings, contract.BRONZE_ORDERS, sent)

    # A crash after the Delta commit of the last batch but before Spark recorded it in the checkpoint:
    checkpoint = Path(bronze_tables(settings)[0].checkpoint)
    last = max(int(p.name) for p in (checkpoint / "commits").iterdir() if p.name.isdigit())
    (checkpoint / "commits" / str(last)).unlink()
    (checkpoint / "commits" / f".{last}.crc").unlink(missing_ok=True)
    version = DeltaTable(uri).version()

    replay = run_available_now(spark, settings, max_offsets=100)

    assert replay[contract.BRONZE_ORDERS]["skipped_batches"] == 1 and replay["rows"] == 0
    assert DeltaTable(uri).version() == version
    assert_exactly(settings, contract.BRONZE_ORDERS, sent)


def test_partitions_that_appear_later_are_read_from_their_earliest_offset(spark, settings):
    """Tansu has no CreatePartitions (KIP-195), so a subscribed topic that is created after the query started
    supplies the new partitions."""
    from streaming.sources import source_for

    first, later = settings.topic_order_events, settings.topic_payment_events
    produce(settings.kafka_bootstrap, first, [(b"k", b"early", None)], partitions=1)
    checkpoint = f"{settings.lakehouse_uri}/_checkpoints/late-partitions"
    stream = source_for(settings).stream(spark, settings, f"{first},{later}", checkpoint, None)
    rows = []
    query = (stream.writeStream.foreachBatch(lambda df, _: rows.extend(df.collect()))
             .option("checkpointLocation", checkpoint).trigger(processingTime="200 milliseconds").start())
    try:
        deadline = time.monotonic() + 60
        while not rows and time.monotonic() < deadline:
            time.sleep(0.1)
        sent = produce(settings.kafka_bootstrap, later, [(b"k", f"late-{i}".encode(), i % 2) for i in range(6)],
                       partitions=2)
        while len(rows) < 7 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert query.exception() is None
    finally:
        query.stop()
    late = {(r.partition, r.offset): bytes(r.value) for r in rows if r.topic == later}
    assert late == {k: v[1] for k, v in sent.items()} and min(o for _, o in late) == 0
    assert len(rows) == 7


def test_missing_topic_and_unreachable_broker_fail_with_one_clear_line(spark, settings):
    produce(settings.kafka_bootstrap, settings.topic_order_events, [])
    with pytest.raises(EcomlakeError, match=f"topic '{settings.topic_payment_events}' does not exist"):
        run_available_now(spark, settings)

    down = dataclasses.replace(settings, kafka_bootstrap=f"127.0.0.1:{free_port()}")
    started = time.monotonic()
    with pytest.raises(EcomlakeError, match=r"Kafka broker at 127\.0\.0\.1:\d+ is not reachable after 2s"):
        run_available_now(spark, down, connect_timeout_s=2)
    assert time.monotonic() - started < 20


@pytest.mark.slow
@pytest.mark.parametrize("stack", ["embedded", "official"])
def test_exactly_once_across_sigkill_and_restart(stack, tmp_path, request):
    """`ecomlake bronze` killed with SIGKILL mid-stream, then run again: every message exactly once. embedded:
    python source, delta-rs, Tansu, fed by the generator's 50 ms batches. official: Spark's Kafka source,
    delta-spark and Apache Kafka, fed by a batching producer, as the cluster stack runs them."""
    if stack == "embedded":
        settings, jars = request.getfixturevalue("settings"), {}
    else:
        settings = dataclasses.replace(request.getfixturevalue("kafka_settings"), kafka_source="spark-kafka",
                                       lake_engine="delta-spark")
        jars = {"SPARK_EXTRA_JARS": request.getfixturevalue("spark_jars")}
    sent = {table: {} for table in (contract.BRONZE_ORDERS, contract.BRONZE_PAYMENTS)}

    def send(n: int, start: int) -> None:
        for table, topic in ((contract.BRONZE_ORDERS, settings.topic_order_events),
                             (contract.BRONZE_PAYMENTS, settings.topic_payment_events)):
            records = [(f"o-{i}".encode(), f'{{"n": {i}}}'.encode(), None) for i in range(start, start + n)]
            sent[table].update(produce(settings.kafka_bootstrap, topic, records, batching=stack == "official"))

    send(300, 0)
    env = cli_env(settings, SPARK_SHUFFLE_PARTITIONS="2", **jars)
    log = open(tmp_path / "bronze-1.log", "w")
    proc = subprocess.Popen([ECOMLAKE, "bronze", "--trigger", "0.5", "--max-offsets-per-trigger", "30"], env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        uri = bronze_uri(settings, contract.BRONZE_ORDERS)
        deadline = time.monotonic() + 300  # a cold JVM on a busy 2-core machine
        while time.monotonic() < deadline and proc.poll() is None:
            if DeltaTable.is_deltatable(uri) and DeltaTable(uri).version() >= 2:
                break
            time.sleep(0.1)
        assert proc.poll() is None, (tmp_path / "bronze-1.log").read_text()[-3000:]
        os.killpg(proc.pid, signal.SIGKILL)  # mid-stream: batches of 30 out of 300 per topic
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    partial = len(bronze_rows(settings, contract.BRONZE_ORDERS))
    assert 0 < partial < 300, partial

    send(100, 300)
    done = subprocess.run([ECOMLAKE, "bronze", "--available-now", "--max-offsets-per-trigger", "500"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    for table in sent:
        assert_exactly(settings, table, sent[table])
        assert len(bronze_rows(settings, table)) == 400


def _spark_sees_a_stop(spark, message: str) -> bool:
    """Spark's own test of a foreachBatch function's error: was the batch interrupted by a stop?"""
    jvm = spark.sparkContext._jvm
    streaming = jvm.org.apache.spark.sql.execution.streaming.StreamExecution
    return streaming.isInterruptionException(jvm.py4j.Py4JException(message), spark.sparkContext._jsc.sc())


def test_a_failed_batch_reaches_spark_as_one_line_that_it_can_classify(spark, tmp_path):
    """A batch's JVM error, stack trace included, made Spark's check for a stop overflow the stream thread's stack (a
    thousand lines of regex frames on stderr). The writer's one line keeps that check working either way."""
    from py4j.protocol import Py4JJavaError

    from streaming.bronze import batch_failure

    jvm = spark.sparkContext._jvm
    with pytest.raises(Py4JJavaError) as raw:
        jvm.java.lang.Class.forName("no.such.EcomlakeClass")
    assert "\n\tat " in str(raw.value)
    with pytest.raises(Exception) as converted:
        spark.read.parquet(str(tmp_path / "no-such-table")).collect()
    for failure in (raw.value, converted.value):
        text = batch_failure(failure)
        assert "\n" not in text and len(text) <= 500, text
        assert not _spark_sees_a_stop(spark, text)
    assert "ClassNotFoundException: no.such.EcomlakeClass" in batch_failure(raw.value)
    assert "no-such-table" in batch_failure(converted.value)

    jvm.java.lang.Thread.currentThread().interrupt()
    with pytest.raises(Py4JJavaError) as interrupted:
        jvm.java.lang.Thread.sleep(1000)
    text = batch_failure(interrupted.value)
    assert "\n" not in text and "java.lang.InterruptedException" in text, text
    assert _spark_sees_a_stop(spark, text)
