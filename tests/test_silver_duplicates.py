"""Copies of one event across partitions, on real Delta tables: the first to arrive wins and stays; a copy with the
same event_id but other content is quarantined and never changes silver (or gold)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from batch.silver.jobs import run_silver
from ecomlake import tables
from ecomlake.lake import get_engine
from silver_rows import T0, Msg, bronze_df, order, payment

later = lambda seconds: T0 + timedelta(seconds=seconds)  # noqa: E731


def append(spark, lake, settings, orders, payments, batch_id):
    for table, topic, msgs in ((tables.ORDERS_RAW, settings.topic_order_events, orders),
                               (tables.PAYMENTS_RAW, settings.topic_payment_events, payments)):
        lake.append_batch(bronze_df(spark, topic, msgs), table.uri(settings), "test-bronze", batch_id)


def rows(lake, settings, table, key):
    return {r[key]: r for r in lake.read(table.uri(settings)).collect()}


def test_a_conflicting_copy_in_a_lower_partition_is_quarantined_and_changes_nothing(spark, settings):
    lake = get_engine(spark, settings)
    captured = payment("o1", 2050)
    append(spark, lake, settings, [Msg(order("o1", total_amount=20.50), 0, partition=2, published=later(0))],
           [Msg(captured, 5, partition=2, published=later(1))], 0)
    run_silver(spark, settings)
    assert rows(lake, settings, tables.ORDER_PAYMENTS_ENRICHED, "order_id")["o1"]["fully_paid"] is True

    forged = dict(captured, amount_cents=1)
    append(spark, lake, settings, [], [
        Msg(forged, 0, partition=0, published=later(30)),  # same event_id, other content, lower partition
        Msg(captured, 6, partition=2, published=later(31)),  # a plain redelivery
    ], 1)
    stats = run_silver(spark, settings)

    payments = rows(lake, settings, tables.PAYMENTS_CLEAN, "event_id")
    assert payments[captured["event_id"]]["amount"] == Decimal("20.50")
    assert (payments[captured["event_id"]]["partition"], payments[captured["event_id"]]["offset"]) == (2, 5)
    enriched = rows(lake, settings, tables.ORDER_PAYMENTS_ENRICHED, "order_id")["o1"]
    assert enriched["paid_amount"] == Decimal("20.50") and enriched["fully_paid"] is True
    quarantined = [r for r in lake.read(tables.QUARANTINE.uri(settings)).collect() if r["topic"].startswith("payments")]
    assert [(r["partition"], r["offset"], r["reason"]) for r in quarantined] == [
        (0, 0, "conflicting_duplicate:event_id")]
    assert stats["payments"]["duplicates"] == 1 and stats["payments"]["quarantined"] == 1
    assert stats["payments"]["valid"] == 0

    again = run_silver(spark, settings)
    assert again["payments"]["quarantined"] == 0, "a rerun with nothing new changes nothing"


def test_a_conflicting_order_event_does_not_change_the_order(spark, settings):
    lake = get_engine(spark, settings)
    created = order("o7", total_amount=10)
    append(spark, lake, settings, [Msg(created, 4, partition=1, published=later(0))], [], 0)
    run_silver(spark, settings)
    append(spark, lake, settings, [Msg(dict(created, total_amount=99), 0, partition=0, published=later(20))], [], 1)
    stats = run_silver(spark, settings)
    assert rows(lake, settings, tables.ORDERS_CLEAN, "order_id")["o7"]["total_amount"] == Decimal("10.00")
    assert stats["orders"]["quarantined"] == 1 and stats["orders"]["duplicates"] == 0
