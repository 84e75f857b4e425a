"""Silver on real Delta tables: bronze written with the lake engine's append_batch, then `run_silver` runs.
Second runs are no-ops, runs read only new bronze rows, a late payment updates its old order, and a run that
crashes part-way is completed by the next one into exactly the tables of clean runs."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from deltalake import DeltaTable

from batch import maintain
from batch.silver import enrich as silver_enrich, orders as silver_orders, payments as silver_payments
from batch.silver.jobs import run_silver
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
from ecomlake import tables
from ecomlake.errors import EcomlakeError
from ecomlake.lake import get_engine
from ecomlake.lake.delta_rs import DeltaRsEngine
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


def rows(lake, settings: Settings, table: str, keep_stamps: bool = False) -> list[dict]:
    df = lake.read(uri(settings, SILVER_SCHEMA, table))
    if not keep_stamps:
        df = df.drop(*RUN_STAMPS)
    return sorted((r.asDict(recursive=True) for r in df.collect()), key=repr)


def snapshot(lake, settings: Settings) -> dict[str, list[dict]]:
    return {t: rows(lake, settings, t) for t in SILVER_TABLES}


def enriched(lake, settings: Settings) -> dict[str, dict]:
    return {r["order_id"]: r for r in rows(lake, settings, SILVER_ENRICHED, keep_stamps=True)}


def lakehouse(tmp_path_factory, name: str) -> Settings:
    base = tmp_path_factory.mktemp(name)
    return Settings.from_env({
        "LAKEHOUSE_URI": str(base / "lakehouse"),
        "ECOMLAKE_RUN_DIR": str(base / "run"),
        "TOPIC_ORDER_EVENTS": "orders.inc",
        "TOPIC_PAYMENT_EVENTS": "payments.inc",
    })


@pytest.fixture(scope="module")
def clean(spark, tmp_path_factory):
    """Two bronze batches, each followed by a clean silver run, then one more run with nothing new."""
    settings = lakehouse(tmp_path_factory, "clean")
    lake = get_engine(spark, settings)
    state = {"settings": settings, "lake": lake}
    append_bronze(spark, lake, settings, BATCH_1, 0)
    state["run1"] = run_silver(spark, settings)
    state["enriched1"] = enriched(lake, settings)
    append_bronze(spark, lake, settings, BATCH_2, 1)
    state["run2"] = run_silver(spark, settings)
    state["enriched2"] = enriched(lake, settings)
    state["versions2"] = versions(lake, settings)
    state["run3"] = run_silver(spark, settings)
    state["versions3"] = versions(lake, settings)
    state["snapshot"] = snapshot(lake, settings)
    return state


def test_first_run_builds_every_table(clean):
    lake, settings = clean["lake"], clean["settings"]
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
    run1 = clean["run1"]
    figures = lambda job: tuple(run1[job][k] for k in ("read", "valid", "duplicates", "quarantined"))  # noqa: E731
    assert figures("orders") == (7, 4, 1, 2) and figures("payments") == (7, 6, 0, 1)
    assert clean["enriched1"]["o1"]["fully_paid"] is True and "o9" not in clean["enriched1"]
    for table in (SILVER_ORDERS, SILVER_ORDER_EVENTS, SILVER_PAYMENTS):
        assert DeltaTable(uri(settings, SILVER_SCHEMA, table)).metadata().partition_columns == ["event_date"]


def test_second_run_reads_only_new_bronze_rows(clean):
    run2 = clean["run2"]
    orders, payments = run2["orders"], run2["payments"]
    assert (orders["read"], orders["valid"], orders["duplicates"], orders["quarantined"]) == (4, 2, 1, 1)
    assert (payments["read"], payments["valid"], payments["duplicates"], payments["quarantined"]) == (4, 2, 1, 1)
    # Every bronze row is a silver event, a removed duplicate or quarantined.
    for run in (clean["run1"], run2):
        for job in ("orders", "payments"):
            assert run[job]["read"] == run[job]["valid"] + run[job]["duplicates"] + run[job]["quarantined"]
    events = {table: len(clean["snapshot"][table]) for table in (SILVER_ORDER_EVENTS, SILVER_PAYMENTS)}
    assert events == {SILVER_ORDER_EVENTS: 4 + 2, SILVER_PAYMENTS: 6 + 2}


def test_a_run_with_nothing_new_is_a_noop(clean):
    assert clean["versions3"] == clean["versions2"]
    assert all(stats["note"].startswith("up to date") for stats in clean["run3"].values())


def test_late_payment_updates_its_old_order_and_only_its_updated_ts(clean):
    before, after = clean["enriched1"], clean["enriched2"]
    assert before["o4"]["fully_paid"] is False and before["o4"]["paid_amount"] == Decimal("10.01")
    assert after["o4"]["fully_paid"] is True and after["o4"]["paid_amount"] == Decimal("30.00")
    assert after["o4"]["updated_ts"] > before["o4"]["updated_ts"]
    assert after["o4"]["last_payment_ts"].timestamp() == later(90).timestamp()
    assert after["o1"]["paid_amount"] == Decimal("20.00") and after["o1"]["fully_paid"] is False  # refund
    assert after["o2"]["status"] == "cancelled" and after["o2"]["updated_ts"] > before["o2"]["updated_ts"]
    assert after["o3"] == before["o3"]  # untouched: same values, same updated_ts
    # The payment that arrived before its order is applied when the order arrives.
    assert after["o9"]["paid_amount"] == Decimal("7.00") and after["o9"]["fully_paid"] is True


class SimulatedCrash(BaseException):
    pass


class CrashingEngine(DeltaRsEngine):
    """The real delta-rs engine, dying (like a killed driver) after its `survive`-th successful merge."""

    def __init__(self, spark, settings, survive: int):
        super().__init__(spark, settings)
        self.survive = survive

    def merge(self, *args, **kwargs):
        if self.survive == 0:
            raise SimulatedCrash()
        self.survive -= 1
        return super().merge(*args, **kwargs)


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
