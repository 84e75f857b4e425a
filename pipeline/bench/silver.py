"""Silver benchmark, per lake engine (delta-rs and delta-spark): the run time for 1% new bronze data on top of a
large bronze, against a full rebuild of the same data, and the same increment on a bronze 4x smaller (the
incremental run must follow the new data, not the table size).

Bronze holds the generator's "late_and_duplicates" records (duplicates, late and early events, split payments...)
written straight into the bronze tables with the lake engine's append_batch, so no broker is involved and only
silver is measured. Per bronze size: a first full run, then two 1% increments each followed by an incremental run
(the faster one is reported), then the silver tables are deleted and rebuilt from the same bronze (and must hold
the same rows). --quick: one size, one increment, no warm-up.

Each engine runs in its own process (`python -m pipeline.bench.silver ENGINE ...`, one Spark session each: delta-spark
needs its jars at session start, from the JVM parts cache) on the same records (same seed and start), and the silver
tables both build must hold the same number of rows. Keys: silver_<figure>_s_<size>_<engine>, and
silver_incremental_s_<size>_delta-spark_over_delta-rs. `snapshot_partitions` overrides Delta Lake for Spark's
spark.databricks.delta.snapshotPartitions (ecomlake.spark sets the shuffle partitions on a local master; Delta's own
default is 50) in the delta-spark process, to measure its effect.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from ecomlake.contract import SILVER_SCHEMA
from ecomlake.settings import LAKE_ENGINES, Settings
from ecomlake.tables import in_layer
from pipeline.bench.servers import Unavailable, jar_problem, subprocess_env, with_spark_jars
from pipeline.bronze_rows import BronzeRows

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from ecomlake.lake import LakeEngine

CHUNK = 50_000
INCREMENTS = 2  # each incremental figure is the best of this many runs (the machines are shared and noisy)
QUICK_ROWS, FULL_ROWS = 1_000, 400_000  # the larger bronze; the smaller is a quarter, the increment 1%
REPO = Path(__file__).resolve().parents[2]


def _tag(size: int) -> str:
    return f"{size / 1000:g}k"


def _timed_silver(spark: "SparkSession", settings: Settings) -> tuple[float, dict]:
    from batch.silver.jobs import run_silver

    started = time.perf_counter()
    figures = run_silver(spark, settings)
    return round(time.perf_counter() - started, 3), figures


def _silver_rows(lake: "LakeEngine", settings: Settings) -> dict[str, int]:
    return {t.name: lake.read(t.uri(settings)).count() for t in in_layer("silver") if lake.exists(t.uri(settings))}


def _one_size(spark: "SparkSession", settings: Settings, size: int, new_rows: int, workdir: str,
              start: datetime, increments: int = INCREMENTS) -> dict:
    from ecomlake.lake import get_engine
    from generator.events import generate_records

    bench = dataclasses.replace(settings, lakehouse_uri=f"{workdir}/lakehouse-{size}")
    lake = get_engine(spark, bench)
    records = list(generate_records("late_and_duplicates", seed=5, start=start, rate=100, topics=bench.topics,
                                    count=size + increments * new_rows))
    bronze = BronzeRows(spark, lake, bench, start)
    for first in range(0, size, CHUNK):
        bronze.append(records[first:min(first + CHUNK, size)])
    full_s, _ = _timed_silver(spark, bench)
    incremental = []
    for first in range(size, len(records), new_rows):
        bronze.append(records[first:first + new_rows])
        seconds, figures = _timed_silver(spark, bench)
        assert figures["orders"]["read"] + figures["payments"]["read"] == new_rows, figures
        incremental.append(seconds)
    rows = _silver_rows(lake, bench)
    shutil.rmtree(f"{bench.lakehouse_uri}/{SILVER_SCHEMA}")
    rebuild_s, figures = _timed_silver(spark, bench)
    assert figures["orders"]["read"] + figures["payments"]["read"] == len(records), figures
    rebuilt = _silver_rows(lake, bench)
    if rebuilt != rows:
        raise RuntimeError(f"silver bench ({settings.lake_engine}, {size}): the rebuild holds {rebuilt} rows, "
                           f"the incremental runs {rows}")
    tag = _tag(size)
    return {
        f"silver_first_run_s_{tag}": full_s,
        f"silver_incremental_s_{tag}": min(incremental),
        f"silver_rebuild_s_{tag}": rebuild_s,
        f"silver_rebuild_over_incremental_{tag}": round(rebuild_s / min(incremental), 2),
        f"silver_rows_{tag}": rows,
    }


def measure(settings: Settings, sizes: tuple[int, ...], new_rows: int, start: datetime, warm_up: bool = True,
            snapshot_partitions: int | None = None, increments: int = INCREMENTS) -> dict:
    """Every size on settings.lake_engine, in this process; keys without the engine suffix."""
    from ecomlake.spark import get_spark

    spark = get_spark(settings, app_name=f"ecomlake-bench-silver-{settings.lake_engine}")
    if snapshot_partitions and settings.lake_engine == "delta-spark":
        spark.conf.set("spark.databricks.delta.snapshotPartitions", str(snapshot_partitions))
    figures: dict = {}
    Path(settings.run_dir).mkdir(parents=True, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="bench-silver-", dir=settings.run_dir)
    try:
        if warm_up:  # JIT and code generation, not reported
            _one_size(spark, settings, 1_000, 10, workdir, start)
        for size in sizes:
            figures.update(_one_size(spark, settings, size, new_rows, workdir, start, increments))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return figures


def _measure_in_subprocess(settings: Settings, sizes: tuple[int, ...], new_rows: int, start: datetime,
                           warm_up: bool, snapshot_partitions: int | None, increments: int) -> dict:
    command = [sys.executable, "-m", "pipeline.bench.silver", settings.lake_engine, "--sizes",
               ",".join(map(str, sizes)), "--new-rows", str(new_rows), "--start", start.isoformat(),
               "--increments", str(increments)]
    if not warm_up:
        command.append("--no-warm-up")
    if snapshot_partitions:
        command += ["--snapshot-partitions", str(snapshot_partitions)]
    proc = subprocess.run(command, env=subprocess_env(settings), capture_output=True, text=True, timeout=7200,
                          cwd=REPO)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"silver bench {settings.lake_engine} failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(lines[-1])


def run(settings: Settings, quick: bool = False, rows: int | None = None,
        snapshot_partitions: int | None = None) -> dict:
    large = rows or (QUICK_ROWS if quick else FULL_ROWS)
    # --quick: one size, one increment, no warm-up (every path once; the figures mean nothing)
    sizes, new_rows = ((large,) if quick else (large // 4, large)), max(1, large // 100)
    increments = 1 if quick else INCREMENTS
    start = (datetime.now(timezone.utc) - timedelta(hours=2)).replace(microsecond=0)
    out: dict = {"silver_new_rows": new_rows}
    if snapshot_partitions:
        out["silver_delta_spark_snapshot_partitions"] = snapshot_partitions
    by_engine: dict[str, dict] = {}
    for engine in LAKE_ENGINES:
        on = dataclasses.replace(settings, lake_engine=engine)
        if engine != "delta-rs":
            try:
                on = with_spark_jars(on)
            except Unavailable as err:
                out[f"silver_{engine}_skipped"] = str(err)
                continue
            reason = jar_problem(on)
            if reason:
                out[f"silver_{engine}_skipped"] = reason
                continue
        print(f"   silver {engine} ...", flush=True)
        by_engine[engine] = figures = _measure_in_subprocess(on, sizes, new_rows, start, warm_up=not quick,
                                                             snapshot_partitions=snapshot_partitions,
                                                             increments=increments)
        for key, value in figures.items():
            if not key.startswith("silver_rows_"):
                out[f"{key}_{engine}"] = value
        if len(sizes) == 2:
            small, big = (_tag(s) for s in sizes)
            out[f"silver_incremental_growth_for_4x_bronze_{engine}"] = round(
                figures[f"silver_incremental_s_{big}"] / figures[f"silver_incremental_s_{small}"], 2)
    for size in sizes:
        tag = _tag(size)
        counts = {engine: figures[f"silver_rows_{tag}"] for engine, figures in by_engine.items()}
        if len({json.dumps(c, sort_keys=True) for c in counts.values()}) > 1:
            raise RuntimeError(f"silver bench: the engines disagree on silver's rows for {tag} bronze rows: {counts}")
        if counts:
            out[f"silver_rows_{tag}"] = sum(next(iter(counts.values())).values())
        if len(counts) == len(LAKE_ENGINES):
            out[f"silver_rows_{tag}_equal_across_engines"] = True
            out[f"silver_incremental_s_{tag}_delta-spark_over_delta-rs"] = round(
                out[f"silver_incremental_s_{tag}_delta-spark"] / out[f"silver_incremental_s_{tag}_delta-rs"], 2)
    return out


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.bench.silver",
                                     description="One engine's silver figures as one JSON line (settings from env).")
    parser.add_argument("engine", choices=LAKE_ENGINES)
    parser.add_argument("--sizes", required=True, help="bronze sizes, comma-separated")
    parser.add_argument("--new-rows", type=int, required=True)
    parser.add_argument("--start", required=True, help="the records' start time (ISO 8601)")
    parser.add_argument("--no-warm-up", action="store_true")
    parser.add_argument("--increments", type=int, default=INCREMENTS)
    parser.add_argument("--snapshot-partitions", type=int)
    args = parser.parse_args(argv)
    settings = dataclasses.replace(Settings.from_env(), lake_engine=args.engine)
    figures = measure(settings, tuple(int(s) for s in args.sizes.split(",")), args.new_rows,
                      datetime.fromisoformat(args.start), warm_up=not args.no_warm_up,
                      snapshot_partitions=args.snapshot_partitions, increments=args.increments)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
