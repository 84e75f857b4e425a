"""End-to-end latency (publish -> visible in gold.fct_sales_minute) with the continuous services, and the ceiling.

The main run: the `late_and_duplicates` scenario at BENCH_LATENCY_RATE (1,000) events/s for BENCH_LATENCY_SECONDS
(300), everything on this machine (broker, generator, bronze, silver and gold services), as `make demo` runs it.
Reported: p50/p95/max over every fully paid order, the same per stage (publish -> bronze -> silver -> gold), Spark jobs
and seconds per silver cycle, the backlog (Kafka -> bronze, bronze -> silver) every 5 s, whether gold equals the
generator's manifest to the cent, and the cores each part kept busy (pipeline.bench.cpu).

The ceiling: shorter runs (BENCH_CEILING_SECONDS, 60) at rising rates (BENCH_CEILING_RATES) until p95 passes 30 s;
the highest rate that stayed under is the ceiling, and the stage with the largest p95 at the first rate over it is
where the pipeline saturates.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import tempfile
from decimal import Decimal
from pathlib import Path

from ecomlake.settings import RunDefaults, Settings
from pipeline.bench.cpu import CpuSampler
from pipeline.demo import run_demo

CEILING_P95_S = 30.0


def _gold_matches_manifest(settings: Settings) -> dict:
    import duckdb

    manifest = json.loads((Path(settings.lakehouse_uri) / "demo" / "manifest.json").read_text())
    expected = manifest["expected"]
    with duckdb.connect(settings.warehouse_path, read_only=True) as con:
        gmv, paid = con.execute("select sum(gmv), sum(paid_orders) from gold.fct_sales_minute").fetchone()
    cents = Decimal("0.01")
    found = (int(paid or 0), Decimal(gmv or 0).quantize(cents))
    wanted = (int(expected["fully_paid_orders"]), Decimal(expected["gmv_usd_exact"]).quantize(cents))
    return {"gold_equals_manifest": found == wanted, "gold_paid_orders": found[0], "gold_gmv_usd": str(found[1]),
            "expected_paid_orders": wanted[0], "expected_gmv_usd": str(wanted[1])}


def _one_run(settings: Settings, rate: float, seconds: float, scenario: str) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix=f"latency-{int(rate)}-", dir=settings.run_dir))
    tag = workdir.name
    run = dataclasses.replace(settings, lakehouse_uri=str(workdir / "lakehouse"), topic_order_events=f"orders.{tag}",
                              topic_payment_events=f"payments.{tag}")
    with CpuSampler() as cpu:
        summary = run_demo(run, seconds=seconds, rate=rate, scenario=scenario, live=False)
    cycles = summary["silver_cycles"]
    builds = summary["gold_builds"]
    out = {
        "rate_events_per_s": rate,
        "duration_s": seconds,
        "scenario": scenario,
        "events_produced": summary["events_produced"],
        **{k: v for k, v in summary["latency"].items() if k != "stages"},
        "stages": summary["latency"].get("stages", {}),
        "silver_warm_up_s": summary["silver_warm_up_s"],
        "silver_cycles": len(cycles),
        "silver_cycle_s_median": statistics.median(c["seconds"] for c in cycles) if cycles else None,
        "silver_spark_jobs_per_cycle_median": statistics.median(c["spark_jobs"] for c in cycles) if cycles else None,
        "gold_builds": len(builds),
        "gold_build_s_median": statistics.median(b["seconds"] for b in builds) if builds else None,
        "backlog": summary["lag"],
        **cpu.cores_busy(),
    }
    out.update(_gold_matches_manifest(run))
    return out


def _saturated_stage(run: dict) -> str | None:
    stages = run.get("stages") or {}
    return max(stages, key=lambda s: stages[s].get("p95_s", 0)) if stages else None


def run(settings: Settings, quick: bool = False) -> dict:
    Path(settings.run_dir).mkdir(parents=True, exist_ok=True)
    defaults = RunDefaults.from_env()
    if quick:
        return flat(_one_run(settings, 50.0, 15.0, "late_and_duplicates"))
    main = _one_run(settings, defaults.bench_latency_rate, defaults.bench_latency_seconds, "late_and_duplicates")
    ceiling, tried = None, []
    for rate in defaults.bench_ceiling_rates:
        result = main if rate == defaults.bench_latency_rate and defaults.bench_ceiling_seconds == main["duration_s"] \
            else _one_run(settings, rate, defaults.bench_ceiling_seconds, "late_and_duplicates")
        p95 = result.get("latency_p95_s")
        tried.append({"rate": rate, "p95_s": p95, "p50_s": result.get("latency_p50_s"),
                      "saturated_stage": _saturated_stage(result), "stages": result.get("stages")})
        if p95 is None or p95 > CEILING_P95_S:
            break
        ceiling = rate
    return {**flat(main), "ceiling_rate_events_per_s": ceiling, "ceiling_p95_limit_s": CEILING_P95_S,
            "ceiling_saturated_stage": tried[-1]["saturated_stage"] if tried else None, "ceiling_runs": tried}


def flat(result: dict) -> dict:
    """One figure per key (the bench's table), the stages spelled out; the backlog series stays a list."""
    out = {k: v for k, v in result.items() if k != "stages"}
    for stage, figures in (result.get("stages") or {}).items():
        for key, value in figures.items():
            out[f"{stage}_{key}"] = value
    return out
