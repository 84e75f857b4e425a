"""silver.order_payments_enriched: per order, what was paid (captured minus refunded, in the order's currency),
whether it is fully paid, and when the row last changed.

Only orders touched since the last run are recomputed: those with events in files that order_events and
payments_clean gained after the versions this table consumed. A payment that arrived before its order waits in
payments_clean and is applied when the order arrives; a late payment recomputes its old order. updated_ts moves
only on rows whose values change. The consumed (order_events, payments_clean) versions are packed into one
application-transaction version (both engines record one per commit) that commits with the data. Runs alone with
`ecomlake silver --only enrich` or `spark-submit batch/silver_enrich.py`.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from batch.silver import common
from ecomlake.contract import (
    MONEY_TYPE,
    SILVER_ENRICHED,
    SILVER_ORDER_EVENTS,
    SILVER_ORDERS,
    SILVER_PAYMENTS,
    SILVER_SCHEMA,
)
from ecomlake.tables import PUBLISHED_MINUTE

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from ecomlake.lake import LakeEngine
    from ecomlake.settings import Settings

APP_ID = common.app_id(f"{SILVER_SCHEMA}.{SILVER_ORDER_EVENTS}+{SILVER_SCHEMA}.{SILVER_PAYMENTS}")
ENRICHED_COLUMNS = common.columns(common.ENRICHED_DDL)
VALUE_COLUMNS = [c for c in ENRICHED_COLUMNS if c != "updated_ts"]
_SHIFT = 2**31


def pack_versions(events_version: int, payments_version: int | None) -> int:
    """One monotonic application-transaction version for the pair (a missing payments table counts as -1)."""
    payments_version = -1 if payments_version is None else payments_version
    return (events_version + 1) * _SHIFT + payments_version + 1


def unpack_versions(packed: int | None) -> tuple[int | None, int | None]:
    if packed is None:
        return None, None
    events_version, payments_version = packed // _SHIFT - 1, packed % _SHIFT - 1
    return events_version, (None if payments_version < 0 else payments_version)


def enrich(orders: DataFrame, order_events: DataFrame, payments: DataFrame) -> DataFrame:
    """One row per order (all columns but updated_ts) from its orders_clean row, its order events (for the first and
    last publication times) and all its payments."""
    published = order_events.groupBy("order_id").agg(F.min("kafka_timestamp").alias("_order_first_published"),
                                                     F.max("kafka_timestamp").alias("_order_published"))
    o = orders.select("order_id", "user_id", "total_amount", "currency", "status", "order_ts").join(
        published, "order_id", "left"
    )
    p = payments.join(o.select("order_id", F.col("currency").alias("_order_currency")), "order_id")
    in_currency = F.col("currency") == F.col("_order_currency")
    signed = (
        F.when(in_currency & (F.col("status") == "captured"), F.col("amount"))
        .when(in_currency & (F.col("status") == "refunded"), -F.col("amount"))
        .otherwise(F.lit(0).cast(MONEY_TYPE))
    )
    totals = p.groupBy("order_id").agg(
        F.sum(signed).alias("_paid"),
        F.max("event_ts").alias("last_payment_ts"),
        F.min("kafka_timestamp").alias("_payments_first_published"),
        F.max("kafka_timestamp").alias("_payments_published"),
    )
    paid = F.expr(f"try_cast(coalesce(_paid, 0) AS {MONEY_TYPE})")
    return (
        o.join(totals, "order_id", "left")
        .withColumn("paid_amount", paid)
        .withColumn("fully_paid", (F.col("status") != "cancelled") & (F.col("paid_amount") >= F.col("total_amount")))
        .withColumn("first_published_ts", F.least("_order_first_published", "_payments_first_published"))
        .withColumn("last_published_ts", F.greatest("_order_published", "_payments_published"))
        .withColumn(PUBLISHED_MINUTE, F.date_trunc("minute", "last_published_ts"))
        .select(*VALUE_COLUMNS)
    )


def changed_rows(fresh: DataFrame, existing: DataFrame, updated_ts: datetime) -> DataFrame:
    """Rows of `fresh` that are new or differ from their stored row, stamped with `updated_ts`."""
    changed = common.changed_only(fresh, existing, ["order_id"], VALUE_COLUMNS)
    return changed.withColumn("updated_ts", F.lit(updated_ts).cast("timestamp")).select(*ENRICHED_COLUMNS)


def _span(start: int | None, end: int | None) -> str:
    if end is None:
        return "-"
    return f"v{0 if start is None else start + 1}..v{end}" if start != end else "unchanged"


def _touched(lake: "LakeEngine", uri: str, start: int | None, end: int | None) -> DataFrame | None:
    if end is None or start == end:
        return None
    return lake.changes_since(uri, start, end).select("order_id")


def run(spark: "SparkSession", settings: "Settings", lake: "LakeEngine | None" = None) -> common.JobStats:
    """Recompute the enriched rows of the orders touched since the last run."""
    from ecomlake.lake import get_engine

    lake = lake or get_engine(spark, settings)
    stats = common.JobStats("enrich")
    orders_uri = settings.table_uri(SILVER_SCHEMA, SILVER_ORDERS)
    events_uri = settings.table_uri(SILVER_SCHEMA, SILVER_ORDER_EVENTS)
    payments_uri = settings.table_uri(SILVER_SCHEMA, SILVER_PAYMENTS)
    enriched_uri = settings.table_uri(SILVER_SCHEMA, SILVER_ENRICHED)
    events_v, payments_v = lake.version(events_uri), lake.version(payments_uri)
    if events_v is None or not lake.exists(orders_uri):
        return stats.done("no orders yet")
    target = pack_versions(events_v, payments_v)
    done = common.consumed(lake, enriched_uri, APP_ID)
    if done is not None and done >= target:
        return stats.done(f"up to date (order_events v{events_v}, payments_clean v{payments_v})")
    events_from, payments_from = unpack_versions(done)
    stats.source_from, stats.source_to = events_from, events_v
    stats.span = (
        f"orders touched in order_events {_span(events_from, events_v)}, "
        f"payments_clean {_span(payments_from, payments_v)}"
    )
    touched = [
        t for t in (
            _touched(lake, events_uri, events_from, events_v),
            _touched(lake, payments_uri, payments_from, payments_v),
        ) if t is not None
    ]
    keys = touched[0] if len(touched) == 1 else touched[0].unionByName(touched[1])
    keys = keys.distinct().persist()
    try:
        of = lambda uri, version=None: lake.read(uri, version).join(F.broadcast(keys), "order_id", "left_semi")  # noqa: E731
        if payments_v is None:
            payments = common.empty(spark, common.PAYMENTS_CLEAN_DDL)
        else:
            payments = of(payments_uri, payments_v)
        if lake.exists(enriched_uri):
            existing = of(enriched_uri)
        else:
            existing = common.empty(spark, common.ENRICHED_DDL)
        fresh = enrich(of(orders_uri), of(events_uri, events_v), payments)
        rows = changed_rows(fresh, existing, common.run_timestamp())
        stats.written = stats.valid = lake.merge_counted(rows, enriched_uri, ["order_id"], app_id=APP_ID,
                                                         txn_version=target, partition_by=[PUBLISHED_MINUTE])
        stats.read = keys.count()
    finally:
        keys.unpersist()
    return stats.done()


def main(argv: Sequence[str] | None = None) -> int:
    argparse.ArgumentParser(prog="ecomlake silver --only enrich", description=__doc__).parse_args(argv)
    return common.run_standalone(run)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
