"""Warm silver's Spark session before the first event: two silver runs on a scratch lake of generator records.

In a fresh JVM the first silver cycles are several times slower than later ones (class loading, JIT compilation,
code generation for each of a cycle's queries): in the 300 s latency run at 1,000 events/s, silver's backlog rose to
23,700 rows in the first 30 s, then stayed at 3,000-7,000 (see the README). The same queries run on a scratch lake
compile what the real cycles reuse. The first run creates the silver tables and the second merges into them, so both
of a cycle's paths are warm. Only for a local master: a cluster's executors cannot see the driver's scratch directory.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from ecomlake.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

WARM_UP_EVENTS = 2_000  # per run


def can_warm(settings: Settings) -> bool:
    return settings.is_local_master


def warm_silver(spark: "SparkSession", settings: Settings, events: int = WARM_UP_EVENTS) -> tuple[float, int]:
    """Run silver twice on `events` new generator records each, in a scratch lake that is deleted afterwards;
    returns the seconds it took and the bronze rows silver read."""
    from batch.silver.jobs import run_silver
    from ecomlake.lake import get_engine
    from generator.events import generate_records
    from pipeline.bronze_rows import BronzeRows

    started, read = time.perf_counter(), 0
    scratch = Path(tempfile.mkdtemp(prefix="ecomlake-warm-up-"))
    try:
        warm = dataclasses.replace(settings, lakehouse_uri=str(scratch / "lakehouse"))
        lake = get_engine(spark, warm)
        start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=1)
        records = list(generate_records("late_and_duplicates", 1, start, 1000.0, warm.topics, count=2 * events))
        bronze = BronzeRows(spark, lake, warm, start, app_id="warm-up")
        for run in (records[:events], records[events:]):
            bronze.append(run)
            figures = run_silver(spark, warm, lake=lake)
            read += figures["orders"]["read"] + figures["payments"]["read"]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return time.perf_counter() - started, read
