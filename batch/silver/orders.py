"""silver.orders_clean: one row per order_id holding its latest valid event; silver.order_events: every distinct
valid order event (the history orders_clean is folded from); contract breakers go to silver.quarantine.

Each run reads only the bronze rows added since the version each target last consumed. orders_clean is
recomputed for the orders those rows touch, from their whole event history (stored events plus the new ones), so
late, out-of-order and redelivered events give the same rows in any batching. Runs alone with
`ecomlake silver --only orders` or `spark-submit batch/silver_orders.py`.
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from typing import TYPE_CHECKING, Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from batch.silver import common
from ecomlake.contract import (
    BRONZE_ORDERS,
    BRONZE_SCHEMA,
    CURRENCIES,
    ORDER_EVENT_DDL,
    ORDER_EVENT_TYPES,
    ORDER_REQUIRED,
    ORDER_STATUSES,
    SILVER_ORDER_EVENTS,
    SILVER_ORDERS,
    SILVER_QUARANTINE,
    SILVER_SCHEMA,
)
from ecomlake.projection import project, quoted
from ecomlake.settings import Settings
from ecomlake.tables import PUBLISHED_MINUTE

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from ecomlake.lake import LakeEngine

SOURCE_TABLE = f"{BRONZE_SCHEMA}.{BRONZE_ORDERS}"
APP_ID = common.app_id(SOURCE_TABLE)
FIELD_KINDS = {
    "event_id": "string",
    "event_type": "string",
    "order_id": "string",
    "user_id": "string",
    "items": "array",
    "currency": "string",
    "total_amount": "number",
    "status": "string",
    "event_ts": "string",
}
ITEM_KINDS = {"sku": "string", "qty": "integer", "unit_price": "number"}
EVENT_COLUMNS = (
    "order_id", "event_id", "event_type", "user_id", "items", "currency", "total_amount", "status", "event_ts",
    *common.LINEAGE,
)
CLEAN_COLUMNS = common.columns(common.ORDERS_CLEAN_DDL)
EVENT_TABLE_COLUMNS = common.columns(common.ORDER_EVENTS_DDL)
assert set(FIELD_KINDS) == set(ORDER_REQUIRED)


def classify(bronze: DataFrame, max_ahead_s: int = Settings.event_ts_max_ahead_s) -> DataFrame:
    """Bronze rows with the typed event fields and `reason` (NULL when the event honours the contract). The VARIANT
    parse the checks use is left out: the widest column, and the silver jobs cache what this returns."""
    doc = common.with_json(bronze, ORDER_EVENT_DDL).withColumn(
        "_event_ts", F.expr("try_to_timestamp(_doc.event_ts)")
    )
    d = lambda name: F.col(f"_doc.{name}")  # noqa: E731
    rules = [common.malformed()]
    rules += [common.missing(name) for name in ORDER_REQUIRED]
    rules += [
        common.wrong_type(name, FIELD_KINDS[name], ITEM_KINDS if name == "items" else None) for name in ORDER_REQUIRED
    ]
    rules += [
        common.invalid(common.not_in(d("event_type"), ORDER_EVENT_TYPES), "event_type"),
        common.invalid(
            "size(_doc.items) = 0 OR exists(_doc.items, i -> i.qty IS NULL OR i.qty <= 0 "
            "OR i.unit_price IS NULL OR i.unit_price < 0)",
            "items",
        ),
        common.invalid(common.not_in(d("currency"), CURRENCIES), "currency"),
        common.invalid(d("total_amount").isNull() | (d("total_amount") < 0), "total_amount"),
        common.invalid(common.not_in(d("status"), ORDER_STATUSES), "status"),
        common.invalid(F.col("_event_ts").isNull(), "event_ts"),
        common.future_event_ts(max_ahead_s),
    ]
    return doc.withColumn("reason", common.first_reason(rules)).drop("_json")


def _typed() -> dict[str, str]:
    """The SQL of each typed event column of a classified row (lineage columns are taken as they are)."""
    typed = {c: f"_doc.{quoted(c)}" for c in ORDER_REQUIRED}
    return {**typed, "event_ts": "_event_ts", "event_date": "to_date(_event_ts)",
            PUBLISHED_MINUTE: common.PUBLISHED_MINUTE_SQL}


def split(classified: DataFrame) -> tuple[DataFrame, DataFrame]:
    """(valid order events with typed columns and lineage, rejected bronze rows with their reason)."""
    typed = _typed()
    valid = project(classified.filter("reason IS NULL"), [
        f"{typed[c]} AS {quoted(c)}" if c in typed else quoted(c) for c in EVENT_COLUMNS
    ])
    rejected = project(classified.filter("reason IS NOT NULL"), map(quoted, (*common.RAW_COLUMNS, "reason")))
    return valid, rejected


def increment_rows(classified: DataFrame) -> DataFrame:
    """Every classified row as one row: order_events' columns (NULL unless the row is valid), the raw columns and
    the reason. What silver's one-pass cycle collects (batch/silver/one_pass.py)."""
    return common.increment_rows(classified, EVENT_TABLE_COLUMNS, _typed())


def validate(bronze: DataFrame) -> tuple[DataFrame, DataFrame]:
    return split(classify(bronze))


def valid_events(classified: DataFrame) -> DataFrame:
    """The valid order events of a classified increment, as order_events rows."""
    return with_event_date(split(classified)[0])


def fold(history: DataFrame) -> DataFrame:
    """orders_clean rows from each order's distinct valid events: the latest by (event_ts, offset) (a cancel event
    thus updates the status), order_ts = its order_created event time, or its earliest event time if none."""
    event_columns = [c for c in CLEAN_COLUMNS if c not in ("order_ts", "event_date", PUBLISHED_MINUTE)]
    per_order = history.groupBy("order_id").agg(
        F.max_by(F.struct(*event_columns), F.struct("event_ts", "incarnation", "offset", "partition")).alias("latest"),
        F.coalesce(
            F.min(F.when(F.col("event_type") == "order_created", F.col("event_ts"))), F.min("event_ts")
        ).alias("order_ts"),
    )
    return per_order.select("latest.*", "order_ts").withColumn("event_date", F.to_date("event_ts")).withColumn(
        PUBLISHED_MINUTE, F.expr(common.PUBLISHED_MINUTE_SQL)).select(*CLEAN_COLUMNS)


def with_event_date(events: DataFrame) -> DataFrame:
    derived = {"event_date": "to_date(event_ts) AS event_date",
               PUBLISHED_MINUTE: f"{common.PUBLISHED_MINUTE_SQL} AS {PUBLISHED_MINUTE}"}
    return project(events, [derived.get(c, quoted(c)) for c in EVENT_TABLE_COLUMNS])


# --- the job ------------------------------------------------------------------------------------------------------
def write_clean(
    lake: "LakeEngine", batch: common.Increment, uri: str, events_uri: str, stats: common.JobStats
) -> None:
    """Recompute the orders the increment touches from their stored events plus its own, and merge the rows
    that change into orders_clean, recording the bronze version in that commit."""
    events = batch.once(valid_events)
    touched = events.select("order_id").distinct()
    history = events
    if lake.exists(events_uri):
        stored_events = common.with_incarnation(lake.read(events_uri))
        history = stored_events.join(F.broadcast(touched), "order_id", "left_semi").unionByName(events)
    if lake.exists(uri):
        stored = common.with_incarnation(lake.read(uri)).join(F.broadcast(touched), "order_id", "left_semi")
    else:
        stored = common.empty(batch.classified.sparkSession, common.ORDERS_CLEAN_DDL)
    rows = common.changed_only(fold(common.dedupe(history)), stored, ["order_id"], CLEAN_COLUMNS)
    stats.written += lake.merge_counted(rows, uri, ["order_id"], partition_by=[PUBLISHED_MINUTE], app_id=APP_ID,
                                        txn_version=batch.end)


def run(spark: "SparkSession", settings: "Settings", lake: "LakeEngine | None" = None) -> common.JobStats:
    """Fold the bronze orders added since the last run into orders_clean, order_events and quarantine.

    orders_clean commits before order_events, so order_events never runs ahead of it (enrichment follows
    order_events); after a crash between the two, order_events has the older position and catches up first.
    """
    from ecomlake.lake import get_engine

    lake = lake or get_engine(spark, settings)
    stats = common.JobStats("orders")
    clean_uri = settings.table_uri(SILVER_SCHEMA, SILVER_ORDERS)
    events_uri = settings.table_uri(SILVER_SCHEMA, SILVER_ORDER_EVENTS)
    quarantine_uri = settings.table_uri(SILVER_SCHEMA, SILVER_QUARANTINE)
    writers = {
        clean_uri: lambda batch: write_clean(lake, batch, clean_uri, events_uri, stats),
        events_uri: lambda batch: common.write_events(
            lake, batch, batch.once(valid_events), events_uri, APP_ID, stats
        ),
        quarantine_uri: lambda batch: common.write_quarantine(
            lake, batch, batch.once(split)[1], quarantine_uri, SOURCE_TABLE, stats,
            conflicts=common.conflicting_rows(lake, batch, batch.once(valid_events), events_uri),
        ),
    }
    return common.run_increment(
        lake, stats, settings.table_uri(BRONZE_SCHEMA, BRONZE_ORDERS), APP_ID,
        partial(classify, max_ahead_s=settings.event_ts_max_ahead_s), writers
    )


def main(argv: Sequence[str] | None = None) -> int:
    argparse.ArgumentParser(prog="ecomlake silver --only orders", description=__doc__).parse_args(argv)
    return common.run_standalone(run)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
