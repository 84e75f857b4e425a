"""Shared test fixtures: one embedded broker (Tansu), one Apache Kafka (fixtures_kafka, started on first use) and one
Spark session per test session; a fresh lakehouse and fresh topic names per test, so tests never see each other's
data. All traffic stays on 127.0.0.1.

The official Spark engines (LAKE_ENGINE=delta-spark, KAFKA_SOURCE=spark-kafka) run in subprocesses (the shared session
is built without their jars) whose SPARK_EXTRA_JARS is the `spark_jars` fixture: the fetched JVM parts cache, never
whatever the calling shell happens to set."""

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

# Session servers, defined here once so every test module shares one of each (a fixture imported into two modules
# would be two fixtures, each starting its own server).
from fixtures_kafka import kafka_broker_settings, kafka_settings, skip_or_fail  # noqa: F401
from fixtures_s3 import s3_lake_server  # noqa: F401
from fixtures_spark_cluster import spark_cluster  # noqa: F401
from fixtures_trino import hive_metastore, trino_server  # noqa: F401

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def broker_settings(tmp_path_factory) -> Settings:
    """A running embedded broker on a free port, stopped at the end of the session."""
    run_dir = tmp_path_factory.mktemp("run")
    settings = Settings.from_env({
        "KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "ECOMLAKE_RUN_DIR": str(run_dir),
        "LAKEHOUSE_URI": str(run_dir / "lakehouse"),
    })
    broker.start(settings)
    yield settings
    broker.stop(settings)


@pytest.fixture
def settings(broker_settings, tmp_path, request) -> Settings:
    """Per-test settings: the session's broker, a fresh lakehouse, topics no other test uses."""
    tag = re.sub(r"[^a-zA-Z0-9]+", "-", request.node.name)[-40:].strip("-") + "-" + uuid.uuid4().hex[:6]
    return dataclasses.replace(
        broker_settings,
        lakehouse_uri=str(tmp_path / "lakehouse"),
        topic_order_events=f"orders.{tag}",
        topic_payment_events=f"payments.{tag}",
    )


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    """The one Spark session of the test session (local[2])."""
    from ecomlake.spark import get_spark

    os.environ.setdefault("SPARK_SHUFFLE_PARTITIONS", "2")
    warehouse = tmp_path_factory.mktemp("spark-warehouse")
    os.environ.setdefault("SPARK_LOCAL_DIRS", str(warehouse))
    session = get_spark(Settings.from_env({"LAKEHOUSE_URI": str(warehouse)}), app_name="ecomlake-tests")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def spark_jars() -> str:
    """SPARK_EXTRA_JARS for the official engines: the `spark-jars` part of the JVM parts cache, fetched with mvn on
    first use. Where it cannot be had the test skips with one line (fails under CI=true), naming the part."""
    spec = parts.part("spark-jars")
    try:
        parts.fetch([spec.group])
    except EcomlakeError as err:
        skip_or_fail(f"the JVM part spark-jars ({', '.join(spec.artifacts)}) cannot be had: {err}")
    from ecomlake.spark import REQUIRED_JARS, missing_jars

    jars = str(parts.spark_jars_dir())
    with_jars = Settings.from_env({"SPARK_EXTRA_JARS": jars})
    missing = [p for setting, value in REQUIRED_JARS for p in missing_jars(with_jars, setting, value)]
    if missing:
        skip_or_fail(f"the JVM part spark-jars in {jars} lacks {', '.join(p + '*.jar' for p in missing)}")
    return jars


def cli_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment a subprocess (the `ecomlake` CLI) needs to act on `settings`. Jars come from `settings` or
    `extra` (SPARK_EXTRA_JARS=spark_jars), never from the calling shell."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("KAFKA_", "TOPIC_", "LAKE", "SPARK_EXTRA", "SPARK_PACKAGES"))}
    env.update(settings.to_env())
    env.update(extra)
    return env


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI=true nothing that can run here may skip: a skip becomes a failure that names its reason."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI", "").lower() == "true" and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true (every part must run in CI): {reason}"
