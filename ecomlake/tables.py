"""The table registry: every table of the lake, once — layer, schema, name, columns, keys and partitioning.

Silver, maintenance, Trino registration, the demo, gold's source checks and the tests all read this list. A table
`<schema>.<name>` lives at `${LAKEHOUSE_URI}/<schema>/<name>` (Settings.table_uri). Spark writes the bronze and
silver tables by path; dbt creates gold's tables itself, so gold appears here only by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ecomlake.contract import (
    BRONZE_ORDERS,
    BRONZE_PAYMENTS,
    BRONZE_SCHEMA,
    GOLD_SCHEMA,
    MONEY_TYPE,
    SILVER_ENRICHED,
    SILVER_ORDER_EVENTS,
    SILVER_ORDERS,
    SILVER_PAYMENTS,
    SILVER_QUARANTINE,
    SILVER_SCHEMA,
)

if TYPE_CHECKING:
    from ecomlake.settings import Settings

ITEMS_TYPE = f"array<struct<sku:string,qty:int,unit_price:{MONEY_TYPE}>>"
# published_minute: the minute (UTC) the row's latest event was published to Kafka (order_events, payments_clean,
# orders_clean: its kafka_timestamp; order_payments_enriched: its last_published_ts), the four tables' partition.
# An order's events are published within seconds of each other, whenever they happened, so a silver cycle reads and
# rewrites the partitions of the last minutes, not the history (batch/silver/order_minutes.py keeps, per order, the
# minutes its rows are in).
PUBLISHED_MINUTE = "published_minute"
# incarnation: which life of the broker bronze read the row from (0, then +1 per `ecomlake bronze --reset-source`):
# a broker that lost its data numbers its offsets from 0 again, so (topic, incarnation, partition, offset) is a
# message's identity in the lake.
LINEAGE_DDL = (
    "topic string, `partition` int, `offset` bigint, kafka_timestamp timestamp, ingest_ts timestamp, incarnation int"
)


@dataclass(frozen=True)
class Table:
    layer: str
    schema: str
    name: str
    ddl: str = ""
    keys: tuple[str, ...] = ()
    partition_by: tuple[str, ...] = ()
    written_by: str = "spark"

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def columns(self) -> list[str]:
        return ddl_columns(self.ddl)

    def uri(self, settings: "Settings") -> str:
        return settings.table_uri(self.schema, self.name)


def ddl_columns(ddl: str) -> list[str]:
    """Column names of a `name type, ...` DDL string (no Spark session needed)."""
    names, depth, start = [], 0, 0
    for i, ch in enumerate(ddl + ","):
        depth += {"<": 1, "(": 1, ">": -1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            names.append(ddl[start:i].split()[0].strip("`"))
            start = i + 1
    return names


# raw_value_b64 keeps the exact bytes of a payload that is not UTF-8 (NULL otherwise): see streaming/bronze.py.
BRONZE_DDL = (
    "raw_key string, raw_value string, raw_value_b64 string, topic string, `partition` int, `offset` bigint, "
    "kafka_timestamp timestamp, ingest_ts timestamp, incarnation int"
)
BRONZE_KEYS = ("topic", "incarnation", "partition", "offset")

ORDERS_RAW = Table("bronze", BRONZE_SCHEMA, BRONZE_ORDERS, BRONZE_DDL, BRONZE_KEYS)
PAYMENTS_RAW = Table("bronze", BRONZE_SCHEMA, BRONZE_PAYMENTS, BRONZE_DDL, BRONZE_KEYS)
ORDERS_CLEAN = Table(
    "silver", SILVER_SCHEMA, SILVER_ORDERS,
    f"order_id string, event_id string, event_type string, user_id string, items {ITEMS_TYPE}, currency string, "
    f"total_amount {MONEY_TYPE}, status string, order_ts timestamp, event_ts timestamp, event_date date, "
    "published_minute timestamp, " + LINEAGE_DDL,
    keys=("order_id",), partition_by=(PUBLISHED_MINUTE,),
)
ORDER_EVENTS = Table(
    "silver", SILVER_SCHEMA, SILVER_ORDER_EVENTS,
    f"order_id string, event_id string, event_type string, user_id string, items {ITEMS_TYPE}, currency string, "
    f"total_amount {MONEY_TYPE}, status string, event_ts timestamp, event_date date, published_minute timestamp, "
    + LINEAGE_DDL,
    keys=("event_id",), partition_by=(PUBLISHED_MINUTE,),
)
PAYMENTS_CLEAN = Table(
    "silver", SILVER_SCHEMA, SILVER_PAYMENTS,
    f"event_id string, payment_id string, order_id string, amount {MONEY_TYPE}, amount_cents bigint, "
    "currency string, status string, method string, event_ts timestamp, event_date date, published_minute timestamp, "
    + LINEAGE_DDL,
    keys=("event_id",), partition_by=(PUBLISHED_MINUTE,),
)
ORDER_PAYMENTS_ENRICHED = Table(
    "silver", SILVER_SCHEMA, SILVER_ENRICHED,
    f"order_id string, user_id string, total_amount {MONEY_TYPE}, paid_amount {MONEY_TYPE}, currency string, "
    "status string, fully_paid boolean, order_ts timestamp, last_payment_ts timestamp, "
    "first_published_ts timestamp, last_published_ts timestamp, updated_ts timestamp, published_minute timestamp",
    keys=("order_id",), partition_by=(PUBLISHED_MINUTE,),
)
QUARANTINE = Table(
    "silver", SILVER_SCHEMA, SILVER_QUARANTINE,
    "topic string, `partition` int, `offset` bigint, raw_key string, raw_value string, raw_value_b64 string, "
    "kafka_timestamp timestamp, reason string, quarantined_ts timestamp, source_table string, incarnation int",
    keys=BRONZE_KEYS,
)
FCT_SALES_MINUTE = Table("gold", GOLD_SCHEMA, "fct_sales_minute", keys=("minute_bucket",), written_by="dbt")
# What the live dashboard and Metabase read besides fct_sales_minute (dbt/models/gold).
FCT_PAYMENTS_MINUTE = Table("gold", GOLD_SCHEMA, "fct_payments_minute", keys=("minute_bucket", "payment_method"),
                            written_by="dbt")
FCT_SALES_CURRENCY_MINUTE = Table("gold", GOLD_SCHEMA, "fct_sales_currency_minute", keys=("minute_bucket", "currency"),
                                  written_by="dbt")
FCT_CANCELLATIONS_MINUTE = Table("gold", GOLD_SCHEMA, "fct_cancellations_minute", keys=("minute_bucket",),
                                 written_by="dbt")
FCT_QUARANTINE_MINUTE = Table("gold", GOLD_SCHEMA, "fct_quarantine_minute",
                              keys=("minute_bucket", "source_table", "reason_code"), written_by="dbt")

TABLES: tuple[Table, ...] = (
    ORDERS_RAW, PAYMENTS_RAW, ORDERS_CLEAN, ORDER_EVENTS, PAYMENTS_CLEAN, ORDER_PAYMENTS_ENRICHED, QUARANTINE,
    FCT_SALES_MINUTE, FCT_PAYMENTS_MINUTE, FCT_SALES_CURRENCY_MINUTE, FCT_CANCELLATIONS_MINUTE, FCT_QUARANTINE_MINUTE,
)
# The tables Spark writes by path (what maintenance compacts and Trino must register).
LAKE_TABLES: tuple[Table, ...] = tuple(t for t in TABLES if t.written_by == "spark")
# The silver tables gold reads (dbt/models/staging/_sources.yml declares the same).
GOLD_SOURCES: tuple[Table, ...] = (ORDERS_CLEAN, PAYMENTS_CLEAN, ORDER_PAYMENTS_ENRICHED, QUARANTINE)


def in_layer(layer: str) -> tuple[Table, ...]:
    return tuple(t for t in TABLES if t.layer == layer)


def by_name(qualified: str) -> Table:
    for table in TABLES:
        if table.qualified == qualified:
            return table
    raise KeyError(qualified)


def with_incarnation(rows):
    """Rows written before bronze recorded broker incarnations have none (no column, or NULL): the first, 0."""
    from pyspark.sql import functions as F

    if "incarnation" not in rows.columns:
        return rows.withColumn("incarnation", F.lit(0))
    return rows.withColumn("incarnation", F.expr("coalesce(incarnation, 0)"))
