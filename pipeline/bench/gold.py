"""Gold benchmark: dbt build time on the duckdb target over synthetic silver Delta tables.

Full build (seed, models, data and unit tests) on N orders, then an incremental build after 1% of the orders
got a late payment and 1% new orders arrived, then the same incremental step without tests (what the demo's
scheduler runs). Silver is written directly (synthetic_silver.py), so only gold is measured.
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone


from gold import build as gold
from pipeline.bench.synthetic_silver import Order, Payment, SilverLake, fully_paid, synthetic
from ecomlake.settings import Settings



def _late_changes(orders, payments, fraction: float, step: int):
    """Pay in full a `fraction` of the still unpaid orders (late payments) and add that many new orders."""

    now = datetime.now(timezone.utc)
    paid = {p.order_id for p in payments if p.status == "captured"}
    unpaid = [o for o in orders if o.order_id not in paid and o.status != "cancelled"]
    count = max(1, int(len(orders) * fraction))
    late = [Payment(o.order_id, o.total_amount, now, event_id=f"late-{step}-{o.order_id}") for o in unpaid[:count]]
    new = [Order(f"new-{step}-{i}", now - timedelta(seconds=i % 600), "EUR", o.total_amount)
           for i, o in enumerate(orders[:count])]
    new_payments = [Payment(o.order_id, o.total_amount, now, event_id=f"pay-{o.order_id}") for o in new]
    assert all(fully_paid(o, [p]) for o, p in zip(new, new_payments))
    return orders + new, payments + late + new_payments


def _timed_build(settings: Settings, tests: bool) -> float:
    started = time.perf_counter()
    result = gold.build(settings, tests=tests, quiet=True)
    if not result.success:
        raise RuntimeError(f"gold build failed: {gold.node_failures(result)}")
    return round(time.perf_counter() - started, 3)


def run(settings: Settings, quick: bool = False) -> dict:

    n_orders = 1_000 if quick else 100_000
    with tempfile.TemporaryDirectory(prefix="bench-gold-") as tmp:
        bench = dataclasses.replace(settings, lakehouse_uri=f"{tmp}/lakehouse", run_dir=f"{tmp}/run", dbt_target="duckdb")
        lake = SilverLake(bench.lakehouse_uri)
        orders, payments = synthetic(n_orders, seed=11, span_minutes=24 * 60)
        started = time.perf_counter()
        lake.write(orders, payments, now=datetime.now(timezone.utc) - timedelta(minutes=30))
        silver_s = time.perf_counter() - started

        full_s = _timed_build(bench, tests=True)
        orders, payments = _late_changes(orders, payments, 0.01, step=1)
        lake.write(orders, payments)
        incremental_s = _timed_build(bench, tests=True)
        orders, payments = _late_changes(orders, payments, 0.01, step=2)
        lake.write(orders, payments)
        incremental_models_s = _timed_build(bench, tests=False)

        import duckdb

        with duckdb.connect(bench.warehouse_path, read_only=True) as con:
            minutes = con.execute("select count(*) from gold.fct_sales_minute").fetchone()[0]
    return {
        "gold_orders": n_orders,
        "gold_minutes": minutes,
        "gold_silver_fixture_write_s": round(silver_s, 3),
        "gold_full_build_s": full_s,
        "gold_incremental_build_s": incremental_s,
        "gold_incremental_models_only_s": incremental_models_s,
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(Settings.from_env(), quick="--quick" in sys.argv), indent=2))
