"""Silver benchmark: the run time for 1% new bronze data on top of a large bronze, against a full rebuild of the
same data, and the same increment on a bronze 4x smaller (the incremental run must follow the new data, not the
table size).

Bronze holds the generator's "late_and_duplicates" records (duplicates, late and early events, split payments...)
written straight into the bronze tables with the lake engine's append_batch, so no broker is involved and only
silver is measured. Per bronze size: a first full run, then two 1% increments each followed by an incremental run
(the faster one is reported), then the silver tables are deleted and rebuilt from the same bronze.
"""

from __future__ import annotations

import base64
import dataclasses
import shutil
import tempfile
import time
import zlib
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from ecomlake.contract import BRONZE_ORDERS, BRONZE_PAYMENTS, BRONZE_SCHEMA, SILVER_SCHEMA
from ecomlake.settings import Settings
from ecomlake.tables import ORDERS_RAW

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from ecomlake.lake import LakeEngine

CHUNK = 50_000
INCREMENTS = 2  # each incremental figure is the best of this many runs (the machines are shared and noisy)


class _Bronze:
    """Writes generator records as bronze rows: Kafka coordinates as a 3-partition topic keyed by order_id gives."""

    def __init__(self, spark: "SparkSession", lake: "LakeEngine", settings: Settings, start: datetime):
        self.spark, self.lake, self.settings, self.start = spark, lake, settings, start
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
                (r.key.decode(), raw, b64, r.topic, partition, offset, published, published)
            )
        tables = {self.settings.topic_order_events: BRONZE_ORDERS, self.settings.topic_payment_events: BRONZE_PAYMENTS}
        columns = ORDERS_RAW.columns
        for topic, topic_rows in rows.items():
            frame = pd.DataFrame(topic_rows, columns=columns)
            df = self.spark.createDataFrame(frame, ORDERS_RAW.ddl)
            uri = self.settings.table_uri(BRONZE_SCHEMA, tables[topic])
            self.lake.append_batch(df, uri, "bench-bronze", self.batch)
        self.batch += 1


def _tag(size: int) -> str:
    return f"{size / 1000:g}k"


def _timed_silver(spark: "SparkSession", settings: Settings) -> tuple[float, dict]:
    from batch.silver.jobs import run_silver

    started = time.perf_counter()
    figures = run_silver(spark, settings)
    return round(time.perf_counter() - started, 3), figures


def _one_size(spark: "SparkSession", settings: Settings, size: int, new_rows: int, workdir: str) -> dict:
    from ecomlake.lake import get_engine
    from generator.events import generate_records

    bench = dataclasses.replace(settings, lakehouse_uri=f"{workdir}/lakehouse-{size}")
    lake = get_engine(spark, bench)
    start = datetime.now(timezone.utc) - timedelta(hours=2)
    records = list(generate_records("late_and_duplicates", seed=5, start=start, rate=100, topics=bench.topics,
                                    count=size + INCREMENTS * new_rows))
    bronze = _Bronze(spark, lake, bench, start)
    for first in range(0, size, CHUNK):
        bronze.append(records[first:min(first + CHUNK, size)])
    full_s, _ = _timed_silver(spark, bench)
    incremental = []
    for first in range(size, len(records), new_rows):
        bronze.append(records[first:first + new_rows])
        seconds, figures = _timed_silver(spark, bench)
        assert figures["orders"]["read"] + figures["payments"]["read"] == new_rows, figures
        incremental.append(seconds)
    shutil.rmtree(f"{bench.lakehouse_uri}/{SILVER_SCHEMA}")
    rebuild_s, figures = _timed_silver(spark, bench)
    assert figures["orders"]["read"] + figures["payments"]["read"] == len(records), figures
    tag = _tag(size)
    return {
        f"silver_first_run_s_{tag}": full_s,
        f"silver_incremental_s_{tag}": min(incremental),
        f"silver_rebuild_s_{tag}": rebuild_s,
        f"silver_rebuild_over_incremental_{tag}": round(rebuild_s / min(incremental), 2),
    }


def run(settings: Settings, quick: bool = False) -> dict:
    from ecomlake.spark import get_spark

    large = 5_000 if quick else 400_000
    sizes, new_rows = (large // 4, large), large // 100
    spark = get_spark(settings, app_name="ecomlake-bench-silver")
    figures: dict = {"silver_new_rows": new_rows}
    workdir = tempfile.mkdtemp(prefix="bench-silver-")
    try:
        _one_size(spark, settings, 1_000, 10, workdir)  # warm-up: JIT and code generation, not reported
        for size in sizes:
            figures.update(_one_size(spark, settings, size, new_rows, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    small, big = (_tag(s) for s in sizes)
    figures["silver_incremental_growth_for_4x_bronze"] = round(
        figures[f"silver_incremental_s_{big}"] / figures[f"silver_incremental_s_{small}"], 2
    )
    return figures
