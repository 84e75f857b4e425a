"""A lake written before bronze recorded broker incarnations keeps working: its rows count as incarnation 0, new
rows add the column to bronze and silver, and nothing is read twice or lost."""

from __future__ import annotations

from datetime import timedelta

from deltalake import DeltaTable

from batch.silver.jobs import run_silver
from ecomlake import tables
from ecomlake.lake import get_engine
from silver_rows import BRONZE_DDL, T0, Msg, bronze_row, order, payment

OLD_BRONZE_DDL = BRONZE_DDL.removesuffix(", incarnation int")


def test_a_lake_from_before_incarnations_is_read_and_extended(spark, settings):
    assert OLD_BRONZE_DDL != BRONZE_DDL
    lake = get_engine(spark, settings)
    old = {
        tables.ORDERS_RAW: [Msg(order("o1", total_amount=20.50), 0)],
        tables.PAYMENTS_RAW: [Msg(payment("o1", 2050), 0), Msg("{not json", 1)],
    }
    topics = {tables.ORDERS_RAW: settings.topic_order_events, tables.PAYMENTS_RAW: settings.topic_payment_events}
    for table, msgs in old.items():
        df = spark.createDataFrame([bronze_row(topics[table], m)[:-1] for m in msgs], OLD_BRONZE_DDL)
        lake.append_batch(df, table.uri(settings), "old-bronze", 0)
    first = run_silver(spark, settings)
    assert first["payments"]["valid"] == 1 and first["payments"]["quarantined"] == 1
    assert "incarnation" not in DeltaTable(tables.ORDERS_RAW.uri(settings)).schema().to_arrow().names

    new = {
        tables.ORDERS_RAW: [Msg(order("o2", total_amount=5), 1)],
        tables.PAYMENTS_RAW: [Msg(payment("o2", 500), 2), Msg("{still not json", 3)],
    }
    for table, msgs in new.items():
        df = spark.createDataFrame([bronze_row(topics[table], m) for m in msgs], BRONZE_DDL)
        lake.append_batch(df, table.uri(settings), "new-bronze", 0)
    second = run_silver(spark, settings)
    assert (second["payments"]["read"], second["payments"]["valid"], second["payments"]["quarantined"]) == (2, 1, 1)
    enriched = {r["order_id"]: r["fully_paid"] for r in lake.read(tables.ORDER_PAYMENTS_ENRICHED.uri(settings)).collect()}
    assert enriched == {"o1": True, "o2": True}
    quarantine = lake.read(tables.QUARANTINE.uri(settings)).collect()
    assert sorted((r["offset"], r["incarnation"]) for r in quarantine) == [(1, 0), (3, 0)]
    assert run_silver(spark, settings)["payments"]["note"].startswith("up to date")


def test_a_lake_from_before_first_published_ts_gets_the_column(spark, settings):
    """gold reads order_payments_enriched.first_published_ts: a table written before it gains the column at the
    next silver run, even one with nothing new, and a touched order gets its value."""
    import shutil

    from batch.silver import common, enrich

    lake = get_engine(spark, settings)
    topics = {tables.ORDERS_RAW: settings.topic_order_events, tables.PAYMENTS_RAW: settings.topic_payment_events}

    def publish(table, msgs, app):
        df = spark.createDataFrame([bronze_row(topics[table], m) for m in msgs], BRONZE_DDL)
        lake.append_batch(df, table.uri(settings), app, 0)

    publish(tables.ORDERS_RAW, [Msg(order("o1", total_amount=20), 0)], "b-orders-1")
    publish(tables.PAYMENTS_RAW, [Msg(payment("o1", 2000), 0)], "b-payments-1")
    run_silver(spark, settings)
    uri = tables.ORDER_PAYMENTS_ENRICHED.uri(settings)
    old_rows = lake.read(uri).drop("first_published_ts").collect()
    consumed = common.consumed(lake, uri, enrich.APP_ID)
    shutil.rmtree(uri)
    old_table = spark.createDataFrame(old_rows, common.ENRICHED_DDL.replace("first_published_ts timestamp, ", ""))
    lake.append_batch(old_table, uri, enrich.APP_ID, consumed, partition_by=["published_minute"])
    common._COLUMNS_CHECKED.discard(uri)
    assert "first_published_ts" not in DeltaTable(uri).schema().to_arrow().names

    run_silver(spark, settings)
    assert "first_published_ts" in DeltaTable(uri).schema().to_arrow().names
    assert [r["first_published_ts"] for r in lake.read(uri).collect()] == [None]

    publish(tables.PAYMENTS_RAW, [Msg(payment("o1", 2000, "refunded", at=T0 + timedelta(minutes=1)), 1)],
            "b-payments-2")
    run_silver(spark, settings)
    (row,) = lake.read(uri).collect()
    assert row["paid_amount"] == 0 and row["first_published_ts"] is not None
