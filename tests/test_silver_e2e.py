"""End to end: generator -> embedded broker -> bronze (available-now) -> silver, in two incremental runs, on real
Delta tables. Per topic every bronze row is accounted for (silver events + duplicates removed + quarantined), and silver
equals tests/reference.py, an independent model computed from the raw Kafka messages. A second `ecomlake silver`
(the CLI, in a subprocess) changes nothing."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import reference
from conftest import cli_env
from kafka_io import publish, read_topics

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
JOB_FIGURES = ("read", "valid", "duplicates", "quarantined")


def test_generator_to_silver_reconciles_with_the_reference(settings, spark):
    from batch.silver.jobs import run_silver
    from ecomlake.contract import BRONZE_ORDERS, BRONZE_PAYMENTS, BRONZE_SCHEMA, SILVER_SCHEMA
    from ecomlake.lake import get_engine
    from generator.events import generate_records
    from generator.publish import ensure_topics
    from streaming.bronze import run_available_now

    start = datetime.now(timezone.utc) - timedelta(minutes=10)
    records = lambda scenario, seed, count: list(  # noqa: E731
        generate_records(scenario, seed=seed, start=start, rate=20, topics=settings.topics, count=count)
    )
    messy, dirty = records("late_and_duplicates", 11, 260), records("dirty", 12, 140)
    parts = [messy[:160], messy[160:] + dirty]
    ensure_topics(settings)
    lake = get_engine(spark, settings)
    totals = {job: Counter() for job in ("orders", "payments")}
    for part in parts:
        publish(settings, part)
        run_available_now(spark, settings)
        figures = run_silver(spark, settings)
        for job in totals:
            totals[job].update({k: figures[job][k] for k in JOB_FIGURES})

    orders_topic, payments_topic = settings.topics
    published = Counter(r.topic for part in parts for r in part)
    model = reference.build(read_topics(settings.kafka_bootstrap, published), order_topic=orders_topic,
                            payment_topic=payments_topic)
    table = lambda schema, name: lake.read(settings.table_uri(schema, name))  # noqa: E731
    quarantine = table(SILVER_SCHEMA, "quarantine").collect()
    orders_clean = {r["order_id"]: r for r in table(SILVER_SCHEMA, "orders_clean").collect()}

    events_tables = (("orders", orders_topic, BRONZE_ORDERS, "order_events"),
                     ("payments", payments_topic, BRONZE_PAYMENTS, "payments_clean"))
    for job, topic, bronze, events in events_tables:
        bronze_rows = table(BRONZE_SCHEMA, bronze).count()
        silver_rows = table(SILVER_SCHEMA, events).count()
        quarantined = [q for q in quarantine if q["topic"] == topic]
        assert bronze_rows == published[topic] == totals[job]["read"]
        assert bronze_rows == silver_rows + totals[job]["duplicates"] + len(quarantined)
        assert silver_rows == totals[job]["valid"] == model.valid_unique[topic]
        assert totals[job]["duplicates"] == model.duplicates[topic]
        assert Counter(q["reason"] for q in quarantined) == model.quarantine_reasons(topic)
        assert {(q["partition"], q["offset"]) for q in quarantined} == {
            (q.partition, q.offset) for q in model.quarantine if q.topic == topic
        }
    assert len(model.payments) == model.valid_unique[payments_topic]
    assert model.duplicates[orders_topic] and model.duplicates[payments_topic] and len(model.quarantine) > 10

    assert {
        oid: (r["event_id"], r["status"], r["total_amount"], r["order_ts"].timestamp(), r["offset"])
        for oid, r in orders_clean.items()
    } == {
        oid: (o.event_id, o.status, o.total_amount, o.order_ts.timestamp(), o.offset) for oid, o in model.orders.items()
    }
    enriched = {r["order_id"]: r for r in table(SILVER_SCHEMA, "order_payments_enriched").collect()}
    ts = lambda t: None if t is None else t.timestamp()  # noqa: E731
    assert {
        oid: (r["paid_amount"], r["fully_paid"], r["status"], ts(r["order_ts"]), ts(r["last_payment_ts"]))
        for oid, r in enriched.items()
    } == {
        oid: (e.paid_amount, e.fully_paid, e.status, ts(e.order_ts), ts(e.last_payment_ts))
        for oid, e in model.enriched.items()
    }
    assert sum(e.fully_paid for e in model.enriched.values()) > len(model.enriched) / 2

    tables = [settings.table_uri(SILVER_SCHEMA, t)
              for t in ("orders_clean", "order_events", "payments_clean", "order_payments_enriched", "quarantine")]
    versions = [lake.version(uri) for uri in tables]
    rerun = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "silver"], env=cli_env(settings), cwd=REPO, capture_output=True,
        text=True, timeout=300,
    )
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    lines = rerun.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["silver orders", "silver payments", "silver enrich"]
    assert all("up to date" in line for line in lines), lines
    assert [lake.version(uri) for uri in tables] == versions
