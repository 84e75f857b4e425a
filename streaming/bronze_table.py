"""The two bronze tables (topic, Delta location, checkpoint) and the transform from Kafka rows to bronze rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ecomlake import contract
from ecomlake.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


@dataclass(frozen=True)
class BronzeTable:
    table: str
    topic: str
    uri: str
    checkpoint: str

    @property
    def name(self) -> str:
        return f"bronze_{self.table}"


def bronze_tables(settings: Settings) -> list[BronzeTable]:
    pairs = ((contract.BRONZE_ORDERS, settings.topic_order_events), (contract.BRONZE_PAYMENTS, settings.topic_payment_events))
    return [
        BronzeTable(table, topic, settings.table_uri(contract.BRONZE_SCHEMA, table),
                    settings.checkpoint_uri(f"bronze_{table}"))
        for table, topic in pairs
    ]


def to_bronze_rows(kafka_df: "DataFrame", incarnation: int = 0) -> "DataFrame":
    """Kafka source rows -> bronze rows. Payloads are kept byte for byte (raw_value_b64 when not UTF-8); each row
    carries the broker incarnation it was read from (see streaming.incarnations.reset_source)."""
    from pyspark.sql import functions as F

    value_text = F.col("value").cast("string")
    return kafka_df.select(
        F.make_valid_utf8(F.col("key").cast("string")).alias("raw_key"),
        F.make_valid_utf8(value_text).alias("raw_value"),
        F.when(~F.is_valid_utf8(value_text), F.base64("value")).alias("raw_value_b64"),
        F.col("topic"),
        F.col("partition"),
        F.col("offset"),
        F.col("timestamp").alias("kafka_timestamp"),
        F.current_timestamp().alias("ingest_ts"),
        F.lit(incarnation).cast("int").alias("incarnation"),
    )
