"""`ecomlake bench`: every stage's figures in one run, on a private embedded broker and a scratch lakehouse.

Writes bench/results.json and prints a table. Stage benchmarks live in pipeline/bench/<stage>.py, each exposing
`run(settings, quick=False, **sizes) -> dict`. The embedded broker (Tansu) runs for the whole bench; the bronze stage
starts a private Apache Kafka beside it, the gold stage Trino with its metastore and an S3 server (servers.py).

Sizes (default: the full figures; --quick: tiny, a smoke test of every path): --bronze-events, --silver-rows (the
larger bronze of the silver stage), --gold-orders.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import platform
import shutil
import socket
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from ecomlake import broker
from ecomlake.settings import load

STAGES = ("generator", "bronze", "silver", "gold", "latency")
OPTIONAL_STAGES = ("sustained",)  # only with --only: its day of history takes long to write and to run on


def machine_facts() -> dict:
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from ecomlake.java import find_java

    return {
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "cpu": cpu,
        "python": platform.python_version(),
        "java": find_java().describe(),
        "platform": platform.platform(),
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _shown(value) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    text = str(value)
    return text if len(text) <= 100 else text[:97] + "..."


def _print_table(results: dict) -> None:
    print("\nstage      figure                                                 value")
    print("---------  -----------------------------------------------------  ------------")
    for stage in STAGES + OPTIONAL_STAGES:
        figures = results["stages"].get(stage, {})
        for key, value in figures.items():
            print(f"{stage:<9}  {key:<53}  {_shown(value)}")
    _print_bronze_matrix(results["stages"].get("bronze", {}))
    _print_sustained(results["stages"].get("sustained", {}))
    facts = results["machine"]
    print(f"\nmachine: {facts['cores']} cores, {facts['memory_gib']} GiB, {facts['cpu']}; {facts['java']}")


def _print_bronze_matrix(figures: dict) -> None:
    """Bronze events/s per source/engine pair, the two brokers side by side."""
    from ecomlake.settings import KAFKA_SOURCES, LAKE_ENGINES

    if not figures:
        return
    brokers = ("tansu", "kafka")
    title = f"bronze events/s ({figures.get('bronze_events', '?')} events)"
    print(f"\n{title:<36}  {'Tansu':>12}  {'Apache Kafka':>12}")
    for source in KAFKA_SOURCES:
        for engine in LAKE_ENGINES:
            cells = []
            for name in brokers:
                value = figures.get(f"bronze_{name}_{source}_{engine}_events_per_s")
                cells.append(f"{value:>12,.1f}" if value is not None else f"{'skipped':>12}")
            print(f"{source + ' + ' + engine:<36}  {cells[0]}  {cells[1]}")


def _print_sustained(figures: dict) -> None:
    """Publish → gold per minute of the sustained runs, side by side: flat when cost follows the increment."""
    runs = [label for label in ("empty", "history") if f"{label}_latency_per_minute" in figures]
    if not runs:
        return
    rows = {label: {w["from_s"] // 60: w for w in figures[f"{label}_latency_per_minute"]} for label in runs}
    cycles = {label: {m["minute"]: m["median_s"] for m in figures.get(f"{label}_silver_cycle_per_minute", [])}
              for label in runs}
    print("\nsustained: publish -> gold p50 / p95 / max (s) and the silver cycle median, per minute")
    print("minute  " + "  ".join(f"{label:>34}" for label in runs))
    for minute in sorted(set().union(*rows.values())):
        cells = []
        for label in runs:
            w = rows[label].get(minute)
            cycle = cycles[label].get(minute)
            cells.append(f"{w['p50_s']:>6.1f} / {w['p95_s']:>5.1f} / {w['max_s']:>5.1f}  cycle {cycle or 0:>5.2f}"
                         if w else f"{'':>34}")
        print(f"{minute:>6}  " + "  ".join(f"{c:>34}" for c in cells))


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="ecomlake bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test of the benchmarks, not figures")
    parser.add_argument("--only", choices=STAGES + OPTIONAL_STAGES, action="append",
                        help="run only these stages (repeatable); sustained runs only when named")
    parser.add_argument("--out", default="bench/results.json", help="where to write the results (default %(default)s)")
    parser.add_argument("--bronze-events", type=_positive, metavar="N",
                        help="events loaded into each broker for the bronze stage (default 100000; --quick 400)")
    parser.add_argument("--silver-rows", type=_positive, metavar="N",
                        help="the larger bronze of the silver stage; the smaller is N/4, the increment N/100 "
                             "(default 400000; --quick 1000, one size)")
    parser.add_argument("--gold-orders", type=_positive, metavar="N",
                        help="synthetic silver orders of the gold stage (default 100000; --quick 300)")
    parser.add_argument("--delta-snapshot-partitions", type=_positive, metavar="N",
                        help="spark.databricks.delta.snapshotPartitions for silver on delta-spark (default: "
                             "ecomlake.spark's, the shuffle partitions on a local master; Delta's own is 50)")
    parser.add_argument("--no-trino", action="store_true", help="gold on DuckDB only (no Trino, metastore, S3 server)")
    parser.add_argument("--sustained-history-orders", type=_non_negative, metavar="N",
                        help="orders of history written before the sustained stage's second run (default 30000000, "
                             "a day at 1,000 events/s; 0: only the run on an empty lake)")
    parser.add_argument("--sustained-seconds", type=_positive, metavar="S",
                        help="how long each sustained run publishes (default 300)")
    parser.add_argument("--sustained-rate", type=_positive, metavar="R",
                        help="events per second of the sustained runs (default 1000)")
    args = parser.parse_args(argv)
    options = {
        "bronze": {"events": args.bronze_events},
        "silver": {"rows": args.silver_rows, "snapshot_partitions": args.delta_snapshot_partitions},
        "gold": {"orders": args.gold_orders, "trino": not args.no_trino},
        "sustained": {"history_orders": args.sustained_history_orders, "seconds": args.sustained_seconds,
                      "rate": args.sustained_rate},
    }

    base = load()
    scratch = tempfile.mkdtemp(prefix="ecomlake-bench-")
    settings = dataclasses.replace(
        base,
        broker="embedded",
        kafka_bootstrap=f"127.0.0.1:{_free_port()}",
        lakehouse_uri=str(Path(scratch) / "lakehouse"),
        run_dir=str(Path(scratch) / "run"),
    )
    results: dict = {
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "quick": args.quick,
        "command": "ecomlake bench " + " ".join(argv),
        "machine": machine_facts(),
        "stages": {},
    }
    broker.start(settings)
    finished = False
    try:
        for stage in args.only or STAGES:
            module = importlib.import_module(f"pipeline.bench.{stage}")
            print(f"== bench {stage} ...", flush=True)
            started = time.perf_counter()
            stage_settings = dataclasses.replace(
                settings,
                lakehouse_uri=str(Path(scratch) / stage / "lakehouse"),
                topic_order_events=f"orders.bench-{stage}",
                topic_payment_events=f"payments.bench-{stage}",
            )
            results["stages"][stage] = module.run(stage_settings, quick=args.quick, **options.get(stage, {}))
            results.setdefault("stage_seconds", {})[stage] = round(time.perf_counter() - started, 1)
            print(f"   done in {time.perf_counter() - started:.1f}s ({len(results['stages'][stage])} figures)", flush=True)
        finished = True
    finally:
        broker.stop(settings)
        if finished:
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            print(f"bench: scratch directory kept for inspection: {scratch}", file=sys.stderr, flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    _print_table(results)
    print(f"\nwrote {out}")
    return 0
