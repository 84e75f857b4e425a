"""Silver on real Delta tables: bronze written with the lake engine's append_batch, then `run_silver` runs.
Second runs are no-ops, runs read only new bronze rows, a late payment updates its old order, and a run that
crashes part-way is completed by the next one into exactly the tables of clean runs.

The clean runs happen on both lake engines: delta-rs in this process, delta-spark in a subprocess with its own
Spark session built with the fetched jars (`python tests/test_silver_incremental.py`, which runs the same
`clean_runs`); its tables are then read here like the delta-rs ones and must be equal row for row."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from deltalake import DeltaTable

from batch import maintain
from batch.silver import enrich as silver_enrich
from batch.silver import orders as silver_orders
from batch.silver import payments as silver_payments
from batch.silver.jobs import run_silver
from crashing_engine import CrashingEngine, SimulatedCrash
from ecomlake import tables
from ecomlake.contract import (
    BRONZE_ORDERS,
    BRONZE_PAYMENTS,
    BRONZE_SCHEMA,
    SILVER_ENRICHED,
    SILVER_ORDER_EVENTS,
    SILVER_ORDERS,
    SILVER_PAYMENTS,
    SILVER_QUARANTINE,
    SILVER_SCHEMA,
)
from ecomlake.errors import EcomlakeError
from ecomlake.lake import get_engine
from ecomlake.settings import Settings
from silver_rows import T0, Msg, bronze_df, order, payment, without

SILVER_TABLES = tuple(t.name for t in tables.in_layer("silver"))
RUN_STAMPS = ("updated_ts", "quarantined_ts")
later = lambda minutes: T0 + timedelta(minutes=minutes)  # noqa: E731

BATCH_1 = {
    "orders": [
        Msg(order("o1", total_amount=20.50), 0),
        Msg(order("o2", total_amount=10), 1),
        Msg(order("o2", total_amount=10), 2),  # redelivery
        Msg(order("o3", total_amount=5, currency="EUR"), 3),
        Msg(order("o4", total_amount=30), 4),
        Msg("{not json", 5),
        Msg(without(order("o5"), "currency"), 6),
    ],
    "payments": [
        Msg(payment("o1", 2050, at=later(1)), 0),
        Msg(payment("o9", 700, at=later(1)), 1),  # before its order
        Msg(payment("o2", 1000, "failed", at=later(1)), 2),
        Msg(payment("o3", 500, currency="EUR", at=later(1)), 3),
        Msg(payment("o4", 1000, at=later(1)), 4),
        Msg(without(payment("o4", 1, at=later(1)), "event_id"), 5),  # synthetic event_id
        Msg(payment("o4", 100, currency="XXX"), 6),
    ],
}
BATCH_2 = {
    "orders": [
        Msg(order("o9", total_amount=7), 7),  # the order its payment waited for
        Msg(order("o2", "order_cancelled", at=later(5), total_amount=10), 8),
        Msg(order("o1", total_amount=20.50), 9),  # redelivery of an event consumed in batch 1
        Msg('{"order_id": 1', 10),
    ],
    "payments": [
        Msg(payment("o4", 1999, at=later(90)), 7),  # late payment: o4 becomes fully paid
        Msg(payment("o1", 50, "refunded", at=later(60)), 8),
        Msg(payment("o1", 2050, at=later(1)), 9),  # redelivery
        Msg(payment("o2", "1000"), 10),
    ],
}


def uri(settings: Settings, schema: str, table: str) -> str:
    return settings.table_uri(schema, table)


def append_bronze(spark, lake, settings: Settings, batch: dict, batch_id: int) -> None:
    for kind, table, topic in (
        ("orders", BRONZE_ORDERS, settings.topic_order_events),
        ("payments", BRONZE_PAYMENTS, settings.topic_payment_events),
    ):
        df = bronze_df(spark, topic, batch[kind])
        lake.append_batch(df, uri(settings, BRONZE_SCHEMA, table), "test-bronze", batch_id)


def versions(lake, settings: Settings) -> dict[str, int | None]:
    return {t: lake.version(uri(settings, SILVER_SCHEMA, t)) for t in SILVER_TABLES}


def rows(lake, settings: Settings, table: str, keep_stamps: bool = False, version: int | None = None) -> list[dict]:
    df = lake.read(uri(settings, SILVER_SCHEMA, table), version=version)
    if not keep_stamps:
        df = df.drop(*RUN_STAMPS)
    return sorted((r.asDict(recursive=True) for r in df.collect()), key=repr)


def snapshot(lake, settings: Settings) -> dict[str, list[dict]]:
    return {t: rows(lake, settings, t) for t in SILVER_TABLES}


def enriched(lake, settings: Settings, version: int | None = None) -> dict[str, dict]:
    return {r["order_id"]: r for r in rows(lake, settings, SILVER_ENRICHED, keep_stamps=True, version=version)}


def lakehouse(tmp_path_factory, name: str) -> Settings:
    base = tmp_path_factory.mktemp(name)
    return Settings.from_env({
        "LAKEHOUSE_URI": str(base / "lakehouse"),
        "ECOMLAKE_RUN_DIR": str(base / "run"),
        "TOPIC_ORDER_EVENTS": "orders.inc",
        "TOPIC_PAYMENT_EVENTS": "payments.inc",
    })


def clean_runs(spark, settings: Settings) -> dict:
    """Two bronze batches, each followed by a clean silver run, then one more run with nothing new, all with the
    engine LAKE_ENGINE names. Returns each run's figures and the silver versions after each run (JSON-able)."""
    lake = get_engine(spark, settings)
    state = {}
    for run, batch in ((1, BATCH_1), (2, BATCH_2), (3, None)):
        if batch is not None:
            append_bronze(spark, lake, settings, batch, run - 1)
        state[f"run{run}"] = run_silver(spark, settings)
        state[f"versions{run}"] = versions(lake, settings)
    return state


def observe(spark, settings: Settings, state: dict) -> dict:
    """What the tests look at, read with the in-process reader (delta-rs reads what either engine wrote)."""
    lake = get_engine(spark, dataclasses.replace(settings, lake_engine="delta-rs"))
    return {**state, "settings": settings, "lake": lake,
            "enriched1": enriched(lake, settings, version=state["versions1"][SILVER_ENRICHED]),
            "enriched2": enriched(lake, settings, version=state["versions2"][SILVER_ENRICHED]),
            "snapshot": snapshot(lake, settings)}


@pytest.fixture(scope="module")
def clean(spark, tmp_path_factory):
    """The clean runs on delta-rs, in this process."""
    settings = lakehouse(tmp_path_factory, "clean")
    return observe(spark, settings, clean_runs(spark, settings))


@pytest.fixture(scope="module")
def clean_delta_spark(spark, tmp_path_factory, spark_jars):
    """The same clean runs on delta-spark, in a subprocess (one JVM for the three runs)."""
    from conftest import cli_env

    settings = dataclasses.replace(lakehouse(tmp_path_factory, "clean-delta-spark"), lake_engine="delta-spark")
    env = cli_env(settings, SPARK_EXTRA_JARS=spark_jars, SPARK_SHUFFLE_PARTITIONS="2")
    proc = subprocess.run([sys.executable, __file__], env=env, capture_output=True, text=True, timeout=900)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    return observe(spark, settings, json.loads(lines[-1]))


@pytest.fixture(scope="module", params=["delta-rs", "delta-spark"])
def runs(request):
    """The clean runs of each lake engine."""
    return request.getfixturevalue("clean" if request.param == "delta-rs" else "clean_delta_spark")


def test_first_run_builds_every_table(runs):
    lake, settings = runs["lake"], runs["settings"]
    orders = {r["order_id"]: r for r in rows(lake, settings, SILVER_ORDERS)}
    assert set(orders) == {"o1", "o2", "o3", "o4", "o9"}
    assert orders["o2"]["status"] == "cancelled" and orders["o1"]["offset"] == 0
    reasons = sorted((r["source_table"], r["offset"], r["reason"]) for r in rows(lake, settings, SILVER_QUARANTINE))
    assert reasons == [
        ("bronze_raw.orders_raw", 5, "malformed_json"),
        ("bronze_raw.orders_raw", 6, "missing_field:currency"),
        ("bronze_raw.orders_raw", 10, "malformed_json"),
        ("bronze_raw.payments_raw", 6, "invalid_value:currency"),
        ("bronze_raw.payments_raw", 10, "wrong_type:amount_cents"),
    ]
    run1 = runs["run1"]
    figures = lambda job: tuple(run1[job][k] for k in ("read", "valid", "duplicates", "quarantined"))  # noqa: E731
    assert figures("orders") == (7, 4, 1, 2) and figures("payments") == (7, 6, 0, 1)
    assert runs["enriched1"]["o1"]["fully_paid"] is True and "o9" not in runs["enriched1"]
    for table in (SILVER_ORDERS, SILVER_ORDER_EVENTS, SILVER_PAYMENTS, SILVER_ENRICHED):
        assert DeltaTable(uri(settings, SILVER_SCHEMA, table)).metadata().partition_columns == ["published_minute"]
    published = DeltaTable(uri(settings, SILVER_SCHEMA, SILVER_ORDER_EVENTS)).to_pyarrow_table(
        columns=["kafka_timestamp", "published_minute"]).to_pylist()
    assert published and all(r["published_minute"] == r["kafka_timestamp"].replace(second=0, microsecond=0)
                             for r in published)


def test_second_run_reads_only_new_bronze_rows(runs):
    run2 = runs["run2"]
    orders, payments = run2["orders"], run2["payments"]
    assert (orders["read"], orders["valid"], orders["duplicates"], orders["quarantined"]) == (4, 2, 1, 1)
    assert (payments["read"], payments["valid"], payments["duplicates"], payments["quarantined"]) == (4, 2, 1, 1)
    # Every bronze row is a silver event, a removed duplicate or quarantined.
    for run in (runs["run1"], run2):
        for job in ("orders", "payments"):
            assert run[job]["read"] == run[job]["valid"] + run[job]["duplicates"] + run[job]["quarantined"]
    events = {table: len(runs["snapshot"][table]) for table in (SILVER_ORDER_EVENTS, SILVER_PAYMENTS)}
    assert events == {SILVER_ORDER_EVENTS: 4 + 2, SILVER_PAYMENTS: 6 + 2}


def test_both_engines_build_the_same_silver(clean, clean_delta_spark):
    assert clean_delta_spark["snapshot"] == clean["snapshot"]
    figures = ("read", "valid", "duplicates", "quarantined", "written", "source_from", "source_to")
    for run in ("run1", "run2", "run3"):
        for job, stats in clean[run].items():
            assert {k: clean_delta_spark[run][job][k] for k in figures} == {k: stats[k] for k in figures}, (run, job)


def test_a_run_with_nothing_new_is_a_noop(runs):
    assert runs["versions3"] == runs["versions2"]
    assert all(stats["note"].startswith("up to date") for stats in runs["run3"].values())


def test_late_payment_updates_its_old_order_and_only_its_updated_ts(runs):
    before, after = runs["enriched1"], runs["enriched2"]
    assert before["o4"]["fully_paid"] is False and before["o4"]["paid_amount"] == Decimal("10.01")
    assert after["o4"]["fully_paid"] is True and after["o4"]["paid_amount"] == Decimal("30.00")
    assert after["o4"]["updated_ts"] > before["o4"]["updated_ts"]
    assert after["o4"]["last_payment_ts"].timestamp() == later(90).timestamp()
    assert after["o1"]["paid_amount"] == Decimal("20.00") and after["o1"]["fully_paid"] is False  # refund
    assert after["o2"]["status"] == "cancelled" and after["o2"]["updated_ts"] > before["o2"]["updated_ts"]
    assert after["o3"] == before["o3"]  # untouched: same values, same updated_ts
    # The payment that arrived before its order is applied when the order arrives.
    assert after["o9"]["paid_amount"] == Decimal("7.00") and after["o9"]["fully_paid"] is True


def test_crash_mid_run_then_rerun_equals_clean_runs(spark, tmp_path_factory, clean):
    settings = dataclasses.replace(clean["settings"], lakehouse_uri=str(tmp_path_factory.mktemp("crash") / "lakehouse"))
    lake = get_engine(spark, settings)
    append_bronze(spark, lake, settings, BATCH_1, 0)
    run_silver(spark, settings)
    append_bronze(spark, lake, settings, BATCH_2, 1)
    # Merges of a run: orders_clean, order_events, quarantine (orders), payments_clean, quarantine (payments),
    # enriched; a rerun skips the targets that already consumed the bronze version.
    with pytest.raises(SimulatedCrash):  # dies inside the orders job: orders_clean committed, order_events not
        run_silver(spark, settings, lake=CrashingEngine(spark, settings, survive=1))
    with pytest.raises(SimulatedCrash):  # dies inside the payments job: payments_clean committed, quarantine not
        run_silver(spark, settings, lake=CrashingEngine(spark, settings, survive=3))
    rerun = run_silver(spark, settings)
    assert rerun["orders"]["note"].startswith("up to date") and rerun["enrich"]["written"] == 4
    payments = rerun["payments"]
    assert payments["resumed"] > 0, "payments_clean had taken the increment before the crash; quarantine had not"
    assert payments["read"] == payments["valid"] + payments["duplicates"] + payments["quarantined"] + payments["resumed"]
    assert snapshot(lake, settings) == clean["snapshot"]
    assert run_silver(spark, settings)["enrich"]["note"].startswith("up to date")


def test_each_job_runs_alone(spark, tmp_path_factory):
    settings = lakehouse(tmp_path_factory, "alone")
    lake = get_engine(spark, settings)
    append_bronze(spark, lake, settings, BATCH_1, 0)
    assert run_silver(spark, settings, only=["enrich"])["enrich"]["note"] == "no orders yet"
    assert silver_payments.run(spark, settings).valid == 6
    assert lake.version(uri(settings, SILVER_SCHEMA, SILVER_ORDERS)) is None
    assert silver_orders.run(spark, settings).valid == 4
    stats = silver_enrich.run(spark, settings)
    assert stats.written == 4 and enriched(lake, settings)["o1"]["fully_paid"] is True


def test_maintain_between_runs_keeps_silver_exact(spark, tmp_path_factory, clean):
    settings = dataclasses.replace(clean["settings"], lakehouse_uri=str(tmp_path_factory.mktemp("maint") / "lakehouse"))
    lake = get_engine(spark, settings)
    append_bronze(spark, lake, settings, BATCH_1, 0)
    run_silver(spark, settings)
    half = {kind: len(msgs) // 2 for kind, msgs in BATCH_2.items()}
    append_bronze(spark, lake, settings, {k: m[: half[k]] for k, m in BATCH_2.items()}, 1)
    append_bronze(spark, lake, settings, {k: m[half[k]:] for k, m in BATCH_2.items()}, 2)
    bronze_orders = uri(settings, BRONZE_SCHEMA, BRONZE_ORDERS)
    behind = maintain.safe_retention(
        lake, bronze_orders, 1, maintain._readers(settings)[bronze_orders],
        now=datetime.now(timezone.utc) + timedelta(hours=10),
    )
    assert behind == (12, "silver has not read v1+ yet")  # 10 h and some seconds, rounded up, plus 1 h
    results = {r["table"]: r for r in maintain.run_maintain(spark, settings, retention_hours=1)}
    bronze = results["bronze_raw.orders_raw"]
    assert (bronze["files_removed"], bronze["files_added"]) == (3, 1)
    assert results["silver.order_payments_enriched"]["files_deleted"] == 0
    # The compaction removed the files of bronze v1 and v2 from the current version: silver still reads exactly them.
    run = run_silver(spark, settings)
    assert (run["orders"]["read"], run["payments"]["read"]) == (4, 4)
    assert snapshot(lake, settings) == clean["snapshot"]
    with pytest.raises(EcomlakeError):
        maintain.run_maintain(spark, settings, retention_hours=0)


if __name__ == "__main__":  # the delta-spark side of `clean_delta_spark`: settings and jars from the environment
    from ecomlake.spark import get_spark

    _settings = Settings.from_env()
    print(json.dumps(clean_runs(get_spark(_settings, app_name="silver-incremental"), _settings)))
