"""Configuration: embedded defaults, and a bad value is one line naming the variable (also through the CLI)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ecomlake.errors import ConfigError
from ecomlake.settings import MetabaseConfig, RunDefaults, Settings, TrinoConfig, lock_lease_s

ECOMLAKE = str(Path(sys.executable).parent / "ecomlake")

BAD = [
    ("KAFKA_SOURCE", "kafka", "python, spark-kafka"),
    ("LAKE_ENGINE", "delta", "delta-rs, delta-spark"),
    ("KAFKA_BOOTSTRAP", "localhost", "host:port"),
    ("KAFKA_BOOTSTRAP", "127.0.0.1:70000", "host:port"),
    ("TOPIC_PARTITIONS", "three", "whole number"),
    ("TOPIC_PARTITIONS", "0", "at least 1"),
    ("DASHBOARD_PORT", "web", "not a port number"),
]


def test_embedded_defaults(tmp_path):
    s = Settings.from_env({})
    assert (s.kafka_bootstrap, s.topics, s.topic_partitions, s.broker, s.kafka_source, s.lake_engine) == (
        "127.0.0.1:9092", ("orders.events", "payments.events"), 3, "embedded", "python", "delta-rs")
    assert Settings.from_env(s.to_env()) == s
    custom = Settings.from_env({"LAKEHOUSE_URI": str(tmp_path / "lh"), "TOPIC_PARTITIONS": "6",
                                "KAFKA_BOOTSTRAP": "k1:9092,k2:9092"})
    assert custom.table_uri("silver", "orders_clean") == f"{tmp_path}/lh/silver/orders_clean"
    assert (custom.topic_partitions, custom.kafka_bootstrap) == (6, "k1:9092,k2:9092")
    assert (s.dashboard_port, s.dashboard_url) == (8050, "http://127.0.0.1:8050/")
    assert custom.warehouse_read_path == f"{tmp_path}/lh/warehouse.read.duckdb"


@pytest.mark.parametrize("name,value,allowed", BAD)
def test_bad_value_is_one_line_naming_the_variable(name, value, allowed):
    with pytest.raises(ConfigError) as err:
        Settings.from_env({name: value})
    message = str(err.value)
    assert message.startswith(f"{name}=") and allowed in message and "\n" not in message


NUMBERS = [
    (Settings.from_env, "SILVER_COMPACT_EVERY", "-1", "SILVER_COMPACT_EVERY='-1' must be at least 0"),
    (MetabaseConfig.from_env, "MB_REFRESH_SECONDS", "ten", "MB_REFRESH_SECONDS='ten' is not a whole number"),
    (TrinoConfig.from_env, "TRINO_PORT", "70000", "TRINO_PORT='70000' is not a port number"),
    (RunDefaults.from_env, "DEMO_RATE", "fast", "DEMO_RATE='fast' is not a number"),
    (RunDefaults.from_env, "DEMO_SECONDS", "0", "DEMO_SECONDS='0' must be above 0"),
    (lock_lease_s, "LOCK_LEASE_SECONDS", "inf", "LOCK_LEASE_SECONDS='inf' is not a number"),
    (RunDefaults.from_env, "BENCH_CEILING_RATES", "500,x",
     "BENCH_CEILING_RATES='500,x' is not a list of events/s separated by commas, e.g. 500,1000,1500"),
]


@pytest.mark.parametrize("read,name,value,message", NUMBERS, ids=[n[1] for n in NUMBERS])
def test_every_number_is_refused_in_the_same_words(read, name, value, message):
    with pytest.raises(ConfigError) as err:
        read({name: value})
    assert str(err.value) == message


def test_to_env_gives_each_variable_and_an_optional_one_only_while_set():
    env = Settings.from_env({}).to_env()
    assert (env["TOPIC_PARTITIONS"], env["SILVER_ONE_PASS"]) == ("3", "1") and "SPARK_EXTRA_JARS" not in env
    jars = Settings.from_env({"SPARK_EXTRA_JARS": "/opt/jars", "SILVER_ONE_PASS": "0"})
    assert jars.to_env()["SPARK_EXTRA_JARS"] == "/opt/jars" and Settings.from_env(jars.to_env()) == jars
    assert Settings() == Settings.from_env({}) and RunDefaults() == RunDefaults.from_env({})


@pytest.mark.parametrize("name,value,allowed", [BAD[0], BAD[1], BAD[2], BAD[4]])
def test_bad_value_through_the_cli_exits_2_without_traceback(name, value, allowed, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "TOPIC_", "LAKE"))}
    env.update({name: value, "ECOMLAKE_RUN_DIR": str(tmp_path)})
    proc = subprocess.run([ECOMLAKE, "generate", "--events", "1"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ecomlake generate: error: {name}=") and allowed in lines[0]


@pytest.mark.parametrize("value", ["orders events", "orders/events", "..", "x" * 250, "ordërs"])
def test_a_topic_name_kafka_would_refuse_is_one_line_naming_the_variable(value):
    with pytest.raises(ConfigError, match=r"^TOPIC_PAYMENT_EVENTS=.* is not a Kafka topic name"):
        Settings.from_env({"TOPIC_PAYMENT_EVENTS": value})


def test_both_topics_set_to_one_name_is_refused():
    with pytest.raises(ConfigError, match="TOPIC_ORDER_EVENTS and TOPIC_PAYMENT_EVENTS are both 'events'"):
        Settings.from_env({"TOPIC_ORDER_EVENTS": "events", "TOPIC_PAYMENT_EVENTS": "events"})
    assert Settings.from_env({"TOPIC_ORDER_EVENTS": "o.v2", "TOPIC_PAYMENT_EVENTS": "p_v2-x"}).topics == ("o.v2", "p_v2-x")
