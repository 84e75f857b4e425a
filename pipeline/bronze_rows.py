"""Generator records written straight into the bronze tables, as bronze would have written them from Kafka: for
runs that measure or warm silver without a broker (the silver bench, the silver warm-up)."""

from __future__ import annotations

import base64
import zlib
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from ecomlake.contract import BRONZE_ORDERS, BRONZE_PAYMENTS, BRONZE_SCHEMA
from ecomlake.settings import Settings
from ecomlake.tables import ORDERS_RAW

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from ecomlake.lake import LakeEngine


class BronzeRows:
    """Writes generator records as bronze rows: Kafka coordinates as a 3-partition topic keyed by order_id gives."""

    def __init__(self, spark: "SparkSession", lake: "LakeEngine", settings: Settings, start: datetime,
                 app_id: str = "bench-bronze"):
        self.spark, self.lake, self.settings, self.start, self.app_id = spark, lake, settings, start, app_id
        self.next_offset: dict[tuple[str, int], int] = {}
        self.batch = 0

    def append(self, records) -> None:
        import pandas as pd

        rows: dict[str, list] = {}
        for r in records:
            partition = zlib.crc32(r.key) % self.settings.topic_partitions
            offset = self.next_offset.get((r.topic, partition), 0)
            self.next_offset[(r.topic, partition)] = offset + 1
            published = self.start + timedelta(seconds=r.at)
            try:
                raw, b64 = r.value.decode("utf-8"), None
            except UnicodeDecodeError:
                raw, b64 = r.value.decode("utf-8", errors="replace"), base64.b64encode(r.value).decode()
            rows.setdefault(r.topic, []).append(
                (r.key.decode(), raw, b64, r.topic, partition, offset, published, published, 0)
            )
        tables = {self.settings.topic_order_events: BRONZE_ORDERS, self.settings.topic_payment_events: BRONZE_PAYMENTS}
        columns = ORDERS_RAW.columns
        for topic, topic_rows in rows.items():
            frame = pd.DataFrame(topic_rows, columns=columns)
            df = self.spark.createDataFrame(frame, ORDERS_RAW.ddl)
            uri = self.settings.table_uri(BRONZE_SCHEMA, tables[topic])
            self.lake.append_batch(df, uri, self.app_id, self.batch)
        self.batch += 1
