"""Copies of one event across partitions, on real Delta tables: the first to arrive wins and stays; a copy with the
same event_id but other content is quarantined and never changes silver (or gold)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from datetime import timedelta
from decimal import Decimal

import pytest

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


def conflicting_copy_runs(spark, settings) -> dict:
    """A captured payment in partition 2, then a copy with the same event_id but another amount in partition 0 and
    a plain redelivery, with silver after each; what the tests look at, JSON-able (run by either lake engine)."""
    lake = get_engine(spark, settings)
    captured = payment("o1", 2050)
    append(spark, lake, settings, [Msg(order("o1", total_amount=20.50), 0, partition=2, published=later(0))],
           [Msg(captured, 5, partition=2, published=later(1))], 0)
    run_silver(spark, settings)
    paid_before = rows(lake, settings, tables.ORDER_PAYMENTS_ENRICHED, "order_id")["o1"]["fully_paid"]
    forged = dict(captured, amount_cents=1)
    append(spark, lake, settings, [], [
        Msg(forged, 0, partition=0, published=later(30)),  # same event_id, other content, lower partition
        Msg(captured, 6, partition=2, published=later(31)),  # a plain redelivery
    ], 1)
    second = run_silver(spark, settings)
    kept = rows(lake, settings, tables.PAYMENTS_CLEAN, "event_id")[captured["event_id"]]
    enriched = rows(lake, settings, tables.ORDER_PAYMENTS_ENRICHED, "order_id")["o1"]
    quarantined = sorted((r["partition"], r["offset"], r["reason"]) for r in lake.read(tables.QUARANTINE.uri(settings))
                         .collect() if r["topic"].startswith("payments"))
    return {
        "paid_before": paid_before, "kept": [str(kept["amount"]), kept["partition"], kept["offset"]],
        "enriched": [str(enriched["paid_amount"]), enriched["fully_paid"]], "quarantined": quarantined,
        "second": second["payments"], "third": run_silver(spark, settings)["payments"],
    }


def check_conflicting_copy(seen: dict) -> None:
    assert seen["paid_before"] is True
    assert seen["kept"] == ["20.50", 2, 5], "the first copy to arrive stays"
    assert seen["enriched"] == ["20.50", True]
    assert [tuple(q) for q in seen["quarantined"]] == [(0, 0, "conflicting_duplicate:event_id")]
    second = seen["second"]
    assert (second["duplicates"], second["quarantined"], second["valid"]) == (1, 1, 0)
    assert seen["third"]["quarantined"] == 0, "a rerun with nothing new changes nothing"


def test_a_conflicting_copy_in_a_lower_partition_is_quarantined_and_changes_nothing(spark, settings):
    check_conflicting_copy(json.loads(json.dumps(conflicting_copy_runs(spark, settings))))


@pytest.mark.slow
def test_the_same_on_delta_lake_for_spark(settings, spark_jars):
    from conftest import REPO, cli_env

    env = cli_env(dataclasses.replace(settings, lake_engine="delta-spark"), SPARK_EXTRA_JARS=spark_jars,
                  SPARK_SHUFFLE_PARTITIONS="2")
    proc = subprocess.run([sys.executable, __file__], env=env, cwd=REPO, capture_output=True, text=True, timeout=900)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    check_conflicting_copy(json.loads(lines[-1]))


def test_a_conflicting_order_event_does_not_change_the_order(spark, settings):
    lake = get_engine(spark, settings)
    created = order("o7", total_amount=10)
    append(spark, lake, settings, [Msg(created, 4, partition=1, published=later(0))], [], 0)
    run_silver(spark, settings)
    append(spark, lake, settings, [Msg(dict(created, total_amount=99), 0, partition=0, published=later(20))], [], 1)
    stats = run_silver(spark, settings)
    assert rows(lake, settings, tables.ORDERS_CLEAN, "order_id")["o7"]["total_amount"] == Decimal("10.00")
    assert stats["orders"]["quarantined"] == 1 and stats["orders"]["duplicates"] == 0


if __name__ == "__main__":  # the delta-spark side: settings and jars from the environment
    from ecomlake.settings import Settings
    from ecomlake.spark import get_spark

    _settings = Settings.from_env()
    print(json.dumps(conflicting_copy_runs(get_spark(_settings, app_name="silver-duplicates"), _settings)))
