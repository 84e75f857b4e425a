"""`ecomlake bench --only sustained`: the continuous pipeline on a lake with a day of history, against an empty lake.

A near-real-time pipeline is left running, so its cost per cycle must follow the increment, not the tables. Each of
the two runs publishes the `late_and_duplicates` scenario at `--sustained-rate` (1,000) events/s for
`--sustained-seconds` (300) through the demo's services (broker, bronze, silver and gold): one on an empty lake, one
on a lake pre-seeded by pipeline/bench/history.py with `--sustained-history-orders` (30M, about a day at 1,000
events/s) orders. Reported per run: publish → gold p50/p95/max over the run, per minute and per 3 minutes of
publication; the silver cycle and gold build medians per minute; resident memory by part every 10 s; files, bytes and
Delta log size of every table, the streaming checkpoints and the warehouse, before and after; whether gold equals
the history plus the generator's manifest to the cent. `--sustained-seconds 1800 --sustained-history-orders 0` is
the 30-minute live run.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import tempfile
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

from ecomlake.settings import Settings
from ecomlake.tables import (
    ORDER_EVENTS,
    ORDER_PAYMENTS_ENRICHED,
    ORDERS_CLEAN,
    ORDERS_RAW,
    PAYMENTS_CLEAN,
    PAYMENTS_RAW,
    QUARANTINE,
)
from pipeline.bench.cpu import CpuSampler
from pipeline.bench.latency import flat
from pipeline.demo import run_demo

TABLES = (ORDERS_RAW, PAYMENTS_RAW, ORDERS_CLEAN, ORDER_EVENTS, PAYMENTS_CLEAN, ORDER_PAYMENTS_ENRICHED, QUARANTINE)
HISTORY_ORDERS, SECONDS, RATE = 30_000_000, 300.0, 1000.0
HISTORY_GAP = timedelta(minutes=30)  # the history ends before the run's late events (at most 15 minutes back) begin


def _folder(path: Path) -> dict:
    files = [p for p in path.rglob("*") if p.is_file()] if path.exists() else []
    return {"files": len(files), "mib": round(sum(p.stat().st_size for p in files) / 2**20, 1)}


def lake_facts(settings: Settings) -> dict:
    """Active data files and their size, and the Delta log's files and size, of every table; the streaming
    checkpoints; the warehouse, its read snapshot and gold's order state."""
    from deltalake import DeltaTable

    out: dict = {}
    for table in TABLES:
        uri = table.uri(settings)
        if not DeltaTable.is_deltatable(uri):
            continue
        actions = DeltaTable(uri).get_add_actions(flatten=True)
        sizes = actions.column("size_bytes").to_pylist() if actions.num_rows else []
        log = _folder(Path(uri) / "_delta_log")
        out[table.name] = {"data_files": len(sizes), "data_mib": round(sum(sizes) / 2**20, 1),
                           "log_files": log["files"], "log_mib": log["mib"]}
    out["checkpoints"] = _folder(Path(settings.lakehouse_uri) / "_checkpoints")
    for name in ("warehouse.duckdb", "warehouse.read.duckdb", "gold_state.duckdb"):
        path = Path(settings.warehouse_path).with_name(name)
        out[name.replace(".", "_")] = {"mib": round(path.stat().st_size / 2**20, 1) if path.exists() else 0.0}
    return out


def gold_totals(settings: Settings) -> tuple[int, Decimal]:
    import duckdb

    with duckdb.connect(settings.warehouse_path, read_only=True) as con:
        gmv, paid = con.execute("select sum(gmv), sum(paid_orders) from gold.fct_sales_minute").fetchone()
    return int(paid or 0), Decimal(gmv or 0)


def per_minute(records: list[dict], origin: float) -> list[dict]:
    """Median seconds of the cycles (or builds) that finished in each minute of the run."""
    minutes: dict[int, list[float]] = {}
    for record in records:
        minutes.setdefault(int((record["finished_at"] - origin) // 60), []).append(record["seconds"])
    return [{"minute": m, "count": len(v), "median_s": round(statistics.median(v), 3)}
            for m, v in sorted(minutes.items()) if m >= 0]


def seed(settings: Settings, orders: int) -> dict:
    """The history in the lake, silver's order index over it (which the service, one process with the bench, keeps)
    and gold built over it once: the lake as it would be after a day."""
    from ecomlake.spark import get_spark
    from gold.build import run_gold
    from pipeline.bench.history import write_history

    spark = get_spark(settings, app_name="ecomlake-bench-history")
    figures = write_history(spark, settings, orders, datetime.now(timezone.utc) - HISTORY_GAP, timedelta(days=1),
                            progress=lambda line: print(f"   {line}", flush=True))
    started = time.perf_counter()
    from batch.silver import order_minutes
    from ecomlake.lake import get_engine

    order_minutes.for_lake(settings).follow(get_engine(spark, settings))
    figures["history_order_index_build_s"] = round(time.perf_counter() - started, 1)
    print(f"   history: silver's order index built in {figures['history_order_index_build_s']} s (as the service "
          "does at its first cycle)", flush=True)
    started = time.perf_counter()
    result = run_gold(settings, tests=False)
    if result["status"] != "ok":
        raise RuntimeError(f"gold over the history failed: {'; '.join(result['errors'])}")
    figures["history_gold_build_s"] = round(time.perf_counter() - started, 1)
    paid, gmv = gold_totals(settings)
    if (paid, gmv) != (orders, Decimal(figures["history_gmv_usd"])):
        raise RuntimeError(f"gold over the history holds {paid} orders and {gmv} USD, expected {orders} and "
                           f"{figures['history_gmv_usd']}")
    print(f"   history: gold built in {figures['history_gold_build_s']} s", flush=True)
    return figures


def one_run(settings: Settings, label: str, history_orders: int, rate: float, seconds: float) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix=f"sustained-{label}-", dir=settings.run_dir))
    tag = workdir.name
    run = dataclasses.replace(settings, lakehouse_uri=str(workdir / "lakehouse"), topic_order_events=f"orders.{tag}",
                              topic_payment_events=f"payments.{tag}")
    out: dict = {"history_orders": history_orders, "rate_events_per_s": rate, "duration_s": seconds}
    before = (0, Decimal(0))
    if history_orders:
        out.update(seed(run, history_orders))
        before = gold_totals(run)
    out["lake_before"] = lake_facts(run)
    started = time.time()
    with CpuSampler(memory_every_s=10.0) as cpu:
        summary = run_demo(run, seconds=seconds, rate=rate, scenario="late_and_duplicates", live=False)
    out["lake_after"] = lake_facts(run)
    cycles, builds = summary["silver_cycles"], summary["gold_builds"]
    latency = summary["latency"]
    origin = min((c["finished_at"] for c in cycles), default=started)
    out.update({
        "events_produced": summary["events_produced"],
        **{k: v for k, v in latency.items() if k not in ("stages", "windows")},
        "stages": latency.get("stages", {}),
        "latency_per_minute": latency.get("windows", {}).get("60s", []),
        "latency_per_3_minutes": latency.get("windows", {}).get("180s", []),
        "silver_cycles": len(cycles),
        "silver_cycle_s_median": statistics.median(c["seconds"] for c in cycles) if cycles else None,
        "silver_cycle_per_minute": per_minute(cycles, origin),
        "gold_builds": len(builds),
        "gold_build_s_median": statistics.median(b["seconds"] for b in builds) if builds else None,
        "gold_build_per_minute": per_minute(builds, origin),
        "memory_mib": cpu.memory,
        **cpu.cores_busy(),
    })
    manifest = json.loads((Path(run.lakehouse_uri) / "demo" / "manifest.json").read_text())["expected"]
    paid, gmv = gold_totals(run)
    found = (paid - before[0], (gmv - before[1]).quantize(Decimal("0.01")))
    wanted = (int(manifest["fully_paid_orders"]), Decimal(manifest["gmv_usd_exact"]).quantize(Decimal("0.01")))
    out.update({"gold_equals_manifest": found == wanted, "gold_paid_orders": found[0], "gold_gmv_usd": str(found[1]),
                "expected_paid_orders": wanted[0], "expected_gmv_usd": str(wanted[1])})
    return out


def run(settings: Settings, quick: bool = False, history_orders: int | None = None, seconds: float | None = None,
        rate: float | None = None) -> dict:
    Path(settings.run_dir).mkdir(parents=True, exist_ok=True)
    if quick:
        history_orders, seconds, rate = history_orders or 20_000, seconds or 20.0, rate or 50.0
    history_orders = HISTORY_ORDERS if history_orders is None else history_orders
    seconds, rate = seconds or SECONDS, rate or RATE
    runs = {"empty": one_run(settings, "empty", 0, rate, seconds)}
    if history_orders:
        runs["history"] = one_run(settings, "history", history_orders, rate, seconds)
    out = {f"{label}_{key}": value for label, result in runs.items() for key, value in flat(result).items()}
    if "history" in runs and runs["empty"].get("latency_p95_s"):
        out["history_over_empty_p95"] = round(runs["history"]["latency_p95_s"] / runs["empty"]["latency_p95_s"], 2)
    return out
