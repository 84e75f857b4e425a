"""`ecomlake broker` with KAFKA_BROKER=kafka: a real single-node Apache Kafka (KRaft) from the JVM parts cache."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

from ecomlake.jvm.kafka_server import LABEL
from ecomlake.settings import Settings
from fixtures_kafka import fetched, free_port, kafka_settings_for  # noqa: F401
from generator.publish import ensure_topics, producer_config

ECOMLAKE = str(Path(sys.executable).parent / "ecomlake")


def broker_cli(action: str, settings: Settings, **extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "TOPIC_"))}
    env.update(settings.to_env())
    env.update(extra)
    return subprocess.run([ECOMLAKE, "broker", action], env=env, capture_output=True, text=True, timeout=180)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().split(")")[-1].split()[0] != "Z"


def produce(settings: Settings, records: list[tuple[str, str]]) -> None:
    """With the generator's own producer settings for real Kafka (acks=all, idempotence, batching)."""
    config = producer_config(settings)
    assert config["enable.idempotence"] is True and config["acks"] == "all" and config["linger.ms"] > 0
    producer = Producer(config)
    for key, value in records:
        producer.produce(settings.topic_order_events, key=key, value=value)
    assert producer.flush(30) == 0


def consume(settings: Settings, expected: int, timeout_s: float = 60.0) -> list[tuple[str, str]]:
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"test-{time.time_ns()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False, "log_level": 0})
    consumer.subscribe([settings.topic_order_events])
    seen: list[tuple[str, str]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(seen) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and not message.error():
                seen.append((message.key().decode(), message.value().decode()))
        return seen
    finally:
        consumer.close()


def end_offsets(settings: Settings) -> int:
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": "offsets", "log_level": 0})
    try:
        return sum(consumer.get_watermark_offsets(TopicPartition(settings.topic_order_events, p), timeout=10)[1]
                   for p in range(settings.topic_partitions))
    finally:
        consumer.close()


def test_batched_idempotent_records_come_back_exactly_and_end_offsets_are_exact(kafka_settings):
    ensure_topics(kafka_settings)
    records = [(f"order-{i % 7}", f'{{"n": {i}}}') for i in range(60)]
    produce(kafka_settings, records)
    assert sorted(consume(kafka_settings, len(records))) == sorted(records)
    assert end_offsets(kafka_settings) == len(records)  # unlike Tansu after batching (docs/stages.md)


def test_status_names_apache_kafka_and_a_second_broker_on_its_port_is_refused(kafka_broker_settings, tmp_path):
    settings = kafka_broker_settings
    port = settings.kafka_bootstrap.rpartition(":")[2]
    status = broker_cli("status", settings)
    assert status.returncode == 0 and status.stdout.startswith(f"broker running: 127.0.0.1:{port} (pid "), status
    assert status.stdout.strip().endswith(f", {LABEL})")

    again = broker_cli("start", settings)
    assert again.returncode == 0 and again.stdout.startswith(f"broker already running: 127.0.0.1:{port}"), again

    tansu_here = broker_cli("start", settings, KAFKA_BROKER="embedded")
    assert tansu_here.returncode == 2 and f"error: {LABEL} already runs as the broker on port {port}" in tansu_here.stderr

    other = broker_cli("start", settings, ECOMLAKE_RUN_DIR=str(tmp_path / "other-run"))
    assert other.returncode == 2 and "Traceback" not in other.stderr
    assert other.stderr.strip() == (f"ecomlake broker: error: port {port} on 127.0.0.1 is in use by another process; "
                                    f"free it or set KAFKA_BOOTSTRAP=127.0.0.1:<free port>")


def test_start_stop_restart_keeps_the_data_and_stop_ends_that_pid(tmp_path):
    fetched("kafka")
    settings = kafka_settings_for(tmp_path / "run")
    assert (broker_cli("status", settings).returncode, broker_cli("status", settings).stdout) == (1, "broker not running\n")

    started = time.monotonic()
    first = broker_cli("start", settings)
    assert first.returncode == 0 and first.stdout.startswith("broker started: "), first
    print(f"Apache Kafka started (storage formatted) in {time.monotonic() - started:.1f}s")
    pid = int(first.stdout.split("pid ")[1].split(",")[0])
    try:
        ensure_topics(settings)
        produce(settings, [("k", "kept across a restart")])
    finally:
        stopped = broker_cli("stop", settings)
    assert stopped.stdout.strip() == f"broker stopped (pid {pid}, port {settings.kafka_bootstrap.rpartition(':')[2]})"
    assert not pid_alive(pid)
    assert (broker_cli("status", settings).returncode, broker_cli("stop", settings).stdout) == (1, "broker was not running\n")

    second = broker_cli("start", settings)
    try:
        assert second.returncode == 0, second
        assert consume(settings, 1) == [("k", "kept across a restart")]
    finally:
        assert broker_cli("stop", settings).returncode == 0


def test_missing_parts_say_how_to_get_them(tmp_path):
    settings = kafka_settings_for(tmp_path / "run")
    result = broker_cli("start", settings, ECOMLAKE_JVM_CACHE=str(tmp_path / "empty-cache"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ecomlake broker: error: kafka-libs (org.apache.kafka:kafka_2.13:")
    assert lines[0].endswith("run `make jvm-parts`")
