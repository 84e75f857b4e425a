"""Apache Kafka for tests: one KRaft node per test session, started from the JVM parts cache (fetched with mvn on
first use). Import the fixtures into conftest.py or a test module: `from fixtures_kafka import kafka_broker_settings`.
Where the parts cannot be had, tests skip with one line; under CI=true they fail instead."""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import uuid
from pathlib import Path

import pytest

from ecomlake import broker
from ecomlake.errors import EcomlakeError
from ecomlake.jvm import parts
from ecomlake.settings import Settings


def skip_or_fail(reason: str) -> None:
    """Skip on a user's machine; under CI=true every part must run, so fail naming what is missing."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true, but {reason}", pytrace=False)
    pytest.skip(reason)


def fetched(group: str) -> dict[str, Path]:
    """A part group's directories, fetched with mvn into the shared cache on first use."""
    try:
        return parts.fetch([group])
    except EcomlakeError as err:
        skip_or_fail(f"the JVM parts {group!r} are not available: {err}")
        raise


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def kafka_settings_for(run_dir: Path, port: int | None = None) -> Settings:
    """Settings naming an Apache Kafka broker on 127.0.0.1 with its own run directory."""
    return Settings.from_env({
        "KAFKA_BROKER": "kafka",
        "KAFKA_BOOTSTRAP": f"127.0.0.1:{port or free_port()}",
        "ECOMLAKE_RUN_DIR": str(run_dir),
        "LAKEHOUSE_URI": str(run_dir / "lakehouse"),
    })


@pytest.fixture(scope="session")
def kafka_broker_settings(tmp_path_factory) -> Settings:
    """A running single-node Apache Kafka on a free port, stopped at the end of the session."""
    fetched("kafka")
    settings = kafka_settings_for(tmp_path_factory.mktemp("kafka-run"))
    broker.start(settings)
    yield settings
    broker.stop(settings)


@pytest.fixture
def kafka_settings(kafka_broker_settings, tmp_path, request) -> Settings:
    """Per-test settings on the session's Apache Kafka: a fresh lakehouse, topics no other test uses."""
    tag = re.sub(r"[^a-zA-Z0-9]+", "-", request.node.name)[-40:].strip("-") + "-" + uuid.uuid4().hex[:6]
    return dataclasses.replace(
        kafka_broker_settings,
        lakehouse_uri=str(tmp_path / "lakehouse"),
        topic_order_events=f"orders.{tag}",
        topic_payment_events=f"payments.{tag}",
    )
