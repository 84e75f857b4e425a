"""Warm silver's Spark session before the first event: WARM_UP_RUNS silver runs on a scratch lake of generator records.

In a fresh JVM the first silver cycles are several times slower than later ones (class loading, JIT compilation, code
generation for each of a cycle's queries): in a latency run, silver's backlog rose steeply in the first seconds, then
stayed far lower (docs/benchmarks.md#design-measurements). The same queries run on a scratch lake compile what the real
cycles reuse. The first run creates the silver tables (with the Spark jobs) and the later ones merge into them (in one
pass, as the service's cycles do: batch/silver/one_pass.py), so both paths are warm.

Why eight runs: most of the warming is the JIT compiling Spark's own planner and executor code, and it takes many
cycles: the JVM's compiler threads use more CPU than a cycle's real work in the first cycles, and still a good part
of it after a dozen. Two warm-up runs left that compiling to the measured run, where it shared the two cores with the
pipeline; more runs gave a lower p95, with diminishing returns (docs/benchmarks.md#design-measurements).
Only for a local master: a cluster's executors cannot see the driver's scratch directory.
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

WARM_UP_EVENTS = 1_000  # per run
WARM_UP_RUNS = 8


def can_warm(settings: Settings) -> bool:
    return settings.is_local_master


def warm_silver(spark: "SparkSession", settings: Settings, events: int = WARM_UP_EVENTS,
                runs: int = WARM_UP_RUNS) -> tuple[float, int]:
    """Run silver `runs` times on `events` new generator records each, in a scratch lake that is deleted afterwards;
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
        records = list(generate_records("late_and_duplicates", 1, start, 1000.0, warm.topics, count=runs * events))
        bronze = BronzeRows(spark, lake, warm, start, app_id="warm-up")
        for first in range(0, runs * events, events):
            bronze.append(records[first:first + events])
            figures = run_silver(spark, warm, lake=lake, in_one_pass=warm.silver_one_pass)
            read += figures["orders"]["read"] + figures["payments"]["read"]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return time.perf_counter() - started, read
