"""The event generator against a real embedded broker: what a consumer reads is what the manifest says was sent,
the scenario knobs produce the anomalies they promise, runs are reproducible, and the CLI behaves on bad input,
an absent broker and Ctrl-C."""

from __future__ import annotations

import json
import re
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest

import reference
from conftest import cli_env, free_port
from generator import SCENARIOS, generate, generate_records
from kafka_io import by_topic, read_topics

START = "2026-11-21T10:00:00Z"
ECOMLAKE = str(Path(sys.executable).parent / "ecomlake")


def consume(settings, manifest):
    return read_topics(settings.kafka_bootstrap, {t: v["sent"] for t, v in manifest["per_topic"].items()})


def loads(value: bytes):
    try:
        return json.loads(value)
    except ValueError:
        return None


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_round_trip_reads_back_exactly_what_the_manifest_says(settings, scenario):
    n = 1200
    result = generate(settings, events=n, scenario=scenario, seed=11, start=START)
    manifest = result.manifest
    assert (result.exit_code, manifest["sent"], manifest["delivery_failures"]) == (0, n, 0)

    got = by_topic(consume(settings, manifest))
    published = list(generate_records(scenario, 11, START, 0.0, settings.topics, count=n))
    for topic in settings.topics:
        sent = [r for r in published if r.topic == topic]
        assert len(got[topic]) == manifest["per_topic"][topic]["sent"] == len(sent)
        assert reference.value_digest(m.value for m in got[topic]) == manifest["per_topic"][topic]["value_digest"]
        # each partition holds its keys' records in publish order
        partition_of = {m.key: m.partition for m in got[topic]}
        for partition in {m.partition for m in got[topic]}:
            assert [m.value for m in got[topic] if m.partition == partition] == \
                   [r.value for r in sent if partition_of[r.key] == partition]
        kinds = manifest["per_topic"][topic]["kinds"]
        expected = manifest["expected"]
        assert len(sent) == (expected["valid_unique"][topic] + expected["duplicates"][topic]
                             + expected["quarantined"][topic])
        assert sum(kinds.get(k, 0) for k in ("orders", "order_cancels", "payments")) == expected["valid_unique"][topic]

    partition_of_key: dict[bytes, int] = {}
    for msg in got[settings.topic_order_events] + got[settings.topic_payment_events]:
        assert partition_of_key.setdefault(msg.key, msg.partition) == msg.partition, "an order's events span partitions"

    model = reference.build(got[settings.topic_order_events] + got[settings.topic_payment_events],
                            order_topic=settings.topic_order_events, payment_topic=settings.topic_payment_events)
    assert model.summary() == manifest["expected"]
    assert {"USD", "EUR", "GBP"} <= {row.currency for row in model.orders.values()}


def test_late_and_duplicates_knobs_show_in_the_consumed_data(settings):
    result = generate(settings, events=1500, scenario="late_and_duplicates", seed=5, start=START, rate=3000)
    kinds = result.manifest["kinds"]
    got = by_topic(consume(settings, result.manifest))
    orders, payments = got[settings.topic_order_events], got[settings.topic_payment_events]

    # redelivery: same event_id, same bytes
    copies = defaultdict(list)
    for m in orders + payments:
        copies[json.loads(m.value)["event_id"]].append(m.value)
    redelivered = {eid: vs for eid, vs in copies.items() if len(vs) > 1}
    assert redelivered and all(len(set(vs)) == 1 for vs in redelivered.values())
    assert sum(len(vs) - 1 for vs in redelivered.values()) == kinds["duplicates"]

    # late: event_ts minutes behind what the same partition already carried
    late = 0
    for msgs in (orders, payments):
        newest: dict[int, str] = {}
        for m in msgs:
            ts = reference.parse_ts(json.loads(m.value)["event_ts"])
            if m.partition in newest and (newest[m.partition] - ts).total_seconds() >= 100:
                late += 1
            newest[m.partition] = max(newest.get(m.partition, ts), ts)
    assert late >= 0.8 * kinds["late"] > 0

    # payments published before their order (Kafka timestamps are the producer's wall clock)
    created_at = {json.loads(m.value)["order_id"]: m.timestamp_ms for m in orders
                  if json.loads(m.value)["event_type"] == "order_created"}
    early = [m for m in payments if m.timestamp_ms < created_at.get(json.loads(m.value)["order_id"], 0)]
    assert early and kinds["early_payments"] > 0

    # split, retried, cancelled, refunded
    events = defaultdict(list)
    for m in payments:
        p = json.loads(m.value)
        events[p["order_id"]].append(p)
    totals = {json.loads(m.value)["order_id"]: round(json.loads(m.value)["total_amount"] * 100) for m in orders}
    unique = {oid: list({p["event_id"]: p for p in ps}.values()) for oid, ps in events.items()}
    split = [oid for oid, ps in unique.items()
             if len({p["payment_id"] for p in ps if p["status"] == "captured"}) >= 2
             and sum(p["amount_cents"] for p in ps if p["status"] == "captured") == totals.get(oid)]
    retried = [oid for oid, ps in unique.items()
               if [p["status"] for p in ps if p["status"] in ("failed", "captured")][:2] == ["failed", "captured"]]
    assert split and retried
    cancels = {json.loads(m.value)["event_id"] for m in orders if json.loads(m.value)["event_type"] == "order_cancelled"}
    assert len(cancels) == kinds["order_cancels"] > 0
    assert sum(p["status"] == "refunded" for ps in unique.values() for p in ps) == kinds["refunds"] > 0


def test_dirty_records_break_the_contract_as_counted(settings):
    result = generate(settings, events=1500, scenario="dirty", seed=9, start=START)
    kinds = result.manifest["kinds"]
    msgs = consume(settings, result.manifest)
    parsed = [(m, loads(m.value)) for m in msgs]
    assert sum(obj is None for _, obj in parsed) == kinds["malformed_json"] > 0
    non_utf8 = 0
    for m, _ in parsed:
        try:
            m.value.decode("utf-8")
        except UnicodeDecodeError:
            non_utf8 += 1
    assert non_utf8 == kinds["non_utf8"] > 0
    contract_fields = set(reference.ORDER_TYPES) | set(reference.PAYMENT_TYPES)
    extra = [obj for _, obj in parsed if obj and set(obj) - contract_fields]
    assert len(extra) == kinds["extra_fields"] > 0
    required = {settings.topic_order_events: reference.ORDER_REQUIRED,
                settings.topic_payment_events: tuple(f for f in reference.PAYMENT_REQUIRED if f != "event_id")}
    missing = [obj for m, obj in parsed if obj and any(f not in obj for f in required[m.topic])]
    assert len(missing) == kinds["missing_field"] > 0
    no_id = [obj for m, obj in parsed if obj and m.topic == settings.topic_payment_events and "event_id" not in obj]
    assert len(no_id) == kinds["payments_without_event_id"] > 0
    reasons = reference.build(msgs, order_topic=settings.topic_order_events,
                              payment_topic=settings.topic_payment_events).quarantine_reasons()
    for kind in ("wrong_type", "invalid_value"):
        assert sum(n for r, n in reasons.items() if r.startswith(kind + ":")) == kinds[kind] > 0
    assert {"currency", "amount_cents", "total_amount"} <= {r.split(":")[1] for r in reasons if r.startswith("invalid_value")}


def _event_ts_buckets(msgs, seconds, keep):
    buckets = Counter()
    for m in msgs:
        obj = json.loads(m.value)
        if keep(obj):
            buckets[int(reference.parse_ts(obj["event_ts"]).timestamp()) // seconds] += 1
    return buckets


def test_flash_sale_bursts_and_fraud_burst_spike(settings):
    import dataclasses

    flash = generate(settings, events=2000, scenario="flash_sale", seed=3, start=START)
    per_2s = _event_ts_buckets(consume(settings, flash.manifest), 2, lambda o: o.get("event_type") == "order_created")
    assert max(per_2s.values()) >= 2.5 * statistics.median(per_2s.values())

    fraud_settings = dataclasses.replace(settings, topic_order_events=settings.topic_order_events + "-fraud",
                                         topic_payment_events=settings.topic_payment_events + "-fraud")
    fraud = generate(fraud_settings, events=2000, scenario="fraud_burst", seed=3, start=START)
    payments = [m for m in consume(fraud_settings, fraud.manifest) if m.topic == fraud_settings.topic_payment_events]
    failed = _event_ts_buckets(payments, 5, lambda p: p["status"] == "failed")
    every = _event_ts_buckets(payments, 5, lambda p: True)
    share = {b: failed[b] / every[b] for b in every}
    assert max(share.values()) >= 0.4 and min(share.values()) <= 0.1
    assert fraud.manifest["kinds"]["failed_payments"] > 5 * flash.manifest["kinds"]["failed_payments"]


def test_same_seed_same_events_different_seed_different_events():
    def run(seed, start=START, rate=0.0):
        return [(r.topic, r.key, r.value, r.kind, r.traits) for r in
                generate_records("late_and_duplicates", seed, start, rate, count=3000)]

    first = run(42)
    assert first == run(42)
    assert not {v for _, _, v, _, _ in first} & {v for _, _, v, _, _ in run(43)}
    shifted = run(42, start="2026-11-22T10:00:00Z")
    assert [r[1] for r in shifted] == [r[1] for r in first] and shifted != first
    assert len({r[2] for r in first}) == len(first) - Counter(r[3] for r in first)["duplicates"]


def test_cli_generate_publishes_and_writes_the_manifest(settings, tmp_path):
    manifest_path = tmp_path / "m.json"
    proc = subprocess.run([ECOMLAKE, "generate", "--events", "300", "--scenario", "dirty", "--seed", "3",
                           "--start", START, "--manifest", str(manifest_path)],
                          env=cli_env(settings), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("\n") == 1 and proc.stdout.startswith("sent 300 events")
    manifest = json.loads(manifest_path.read_text())
    assert (manifest["sent"], manifest["seed"], manifest["scenario"]) == (300, 3, "dirty")
    assert len(consume(settings, manifest)) == 300
    published = list(generate_records("dirty", 3, START, 0.0, settings.topics, count=300))  # same events in-process
    for topic in settings.topics:
        digest = reference.value_digest(r.value for r in published if r.topic == topic)
        assert manifest["per_topic"][topic]["value_digest"] == digest


@pytest.mark.parametrize("args", [["--events", "0"], ["--scenario", "nope"], ["--events", "5", "--duration", "2"],
                                  ["--start", "yesterday"], ["--rate", "-1"]])
def test_cli_bad_arguments_are_usage_errors(args, tmp_path):
    proc = subprocess.run([ECOMLAKE, "generate", *args], capture_output=True, text=True, timeout=60,
                          env={**cli_env_without_broker(tmp_path)})
    assert proc.returncode == 2
    assert "usage: ecomlake generate" in proc.stderr and "Traceback" not in proc.stderr


def cli_env_without_broker(tmp_path):
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "TOPIC_"))}
    return {**env, "KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}", "ECOMLAKE_RUN_DIR": str(tmp_path / "run")}


def test_cli_unreachable_broker_fails_fast_with_one_line(tmp_path):
    env = cli_env_without_broker(tmp_path)
    started = time.monotonic()
    proc = subprocess.run([ECOMLAKE, "generate", "--events", "10"], capture_output=True, text=True, timeout=60, env=env)
    elapsed = time.monotonic() - started
    assert proc.returncode == 2 and elapsed < 15
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and re.fullmatch(
        rf"ecomlake generate: error: no Kafka broker answered at KAFKA_BOOTSTRAP={env['KAFKA_BOOTSTRAP']} within \d+s "
        r"\(start the embedded one: `ecomlake broker start`\)", lines[0]), lines


def test_cli_sigint_flushes_writes_the_manifest_and_exits_non_zero(settings, tmp_path):
    manifest_path = tmp_path / "m.json"
    proc = subprocess.Popen([ECOMLAKE, "generate", "--events", "100000", "--rate", "200", "--seed", "1",
                             "--manifest", str(manifest_path)],
                            env=cli_env(settings), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first_line = proc.stderr.readline()  # printed once the topics exist and publishing begins
        assert first_line.startswith("generate: publishing"), first_line
        time.sleep(1.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert out.startswith("interrupted by SIGINT: sent ") and "Traceback" not in err
    manifest = json.loads(manifest_path.read_text())
    assert manifest["interrupted"] and 100 <= manifest["sent"] < 1000
    assert len(consume(settings, manifest)) == manifest["sent"]


def test_background_run_stops_on_request_with_live_counts(settings):
    """How the demo drives the generator: a thread, a stop event, running counts."""
    import threading

    from generator.publish import RunResult

    stop, live, done = threading.Event(), RunResult(manifest={}), {}
    worker = threading.Thread(target=lambda: done.setdefault("result", generate(
        settings, duration_s=60, rate=400, seed=2, start=START, stop=stop, live=live)))
    worker.start()
    deadline = time.monotonic() + 30
    while live.delivered < 100 and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    worker.join(30)
    result = done["result"]
    assert result is live and result.stopped_by == "stop" and result.exit_code == 0
    assert 100 <= result.manifest["sent"] == live.delivered < 5000 and result.manifest["interrupted"]
    assert len(consume(settings, result.manifest)) == result.manifest["sent"]
