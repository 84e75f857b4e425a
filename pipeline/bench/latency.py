"""End-to-end latency (publish -> visible in gold.fct_sales_minute) in continuous mode at a stated rate."""

from __future__ import annotations

from ecomlake.settings import RunDefaults
from pipeline.demo import run_demo


def run(settings, quick: bool = False) -> dict:
    if quick:
        rate, seconds = 50.0, 15.0
    else:
        defaults = RunDefaults.from_env()
        rate, seconds = defaults.bench_latency_rate, defaults.bench_latency_seconds
    summary = run_demo(settings, seconds=seconds, rate=rate, scenario="steady", interval=2.0 if quick else 5.0,
                       trigger=1.0, live=False)
    return {
        "rate_events_per_s": rate,
        "duration_s": seconds,
        "events_produced": summary["events_produced"],
        **summary["latency"],
        "silver_gold_cycles": summary["cycles"],
    }
