"""End-to-end latency (publish -> visible in gold.fct_sales_minute) in continuous mode at a stated rate."""

from __future__ import annotations

from ecomlake.demo import run_demo
from ecomlake.settings import positive_number


def run(settings, quick: bool = False) -> dict:
    if quick:
        rate, seconds = 50.0, 15.0
    else:
        rate, seconds = positive_number("BENCH_LATENCY_RATE", 1000.0), positive_number("BENCH_LATENCY_SECONDS", 90.0)
    summary = run_demo(settings, seconds=seconds, rate=rate, scenario="steady", interval=2.0 if quick else 5.0,
                       trigger=1.0, live=False)
    return {
        "rate_events_per_s": rate,
        "duration_s": seconds,
        "events_produced": summary["events_produced"],
        **summary["latency"],
        "silver_gold_cycles": summary["cycles"],
    }
