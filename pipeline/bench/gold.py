"""Gold benchmark: dbt build time on the duckdb target and on the trino target over the same synthetic silver Delta
tables, and whether both build the same gold to the cent.

Full build (seed, models, data and unit tests) on N orders, then an incremental build after 1% of the orders
got a late payment and 1% new orders arrived, then the same incremental step without tests (what the demo's
scheduler runs). Silver is written directly (synthetic_silver.py), so only gold is measured. Each step is built by
DuckDB and then by Trino on the same silver version; gold.fct_sales_minute of both is compared minute by minute
(gmv in cents, paid orders) after every step.

Trino is the cluster stack's: Trino 476 with the project's catalogs, the Hive Metastore 4.0.1 and an S3 server,
started here (pipeline/bench/servers.py). Silver is read in place (registered at its file:// locations, as
`ecomlake register-tables` does); gold is written to s3://lakehouse/gold, because Trino 476 writes Delta on object
storage only. Without Trino's parts (mvn, a Java >= 24, moto) its figures are reported as skipped, with the reason.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from ecomlake.settings import Settings
from gold import build as gold
from pipeline.bench.servers import Unavailable, trino_stack
from pipeline.bench.synthetic_silver import CENT, Order, Payment, SilverLake, fully_paid, synthetic

QUICK_ORDERS, FULL_ORDERS = 300, 100_000
GOLD_LOCATION = "s3://lakehouse/gold"
FACTS = "SELECT minute_bucket, gmv, paid_orders FROM {table}"


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


def _timed_build(settings: Settings, tests: bool, env: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    with gold._environ(env or {}):
        result = gold.build(settings, tests=tests, quiet=True)
    if not result.success:
        raise RuntimeError(f"gold build on {settings.dbt_target} failed: {gold.node_failures(result)}")
    return round(time.perf_counter() - started, 3)


def _cents(rows) -> dict[datetime, tuple[Decimal, int]]:
    return {minute.astimezone(timezone.utc): (Decimal(gmv).quantize(CENT, rounding=ROUND_HALF_UP), int(n))
            for minute, gmv, n in rows}


def _duckdb_facts(settings: Settings) -> dict[datetime, tuple[Decimal, int]]:
    import duckdb

    with duckdb.connect(settings.warehouse_path, read_only=True) as con:
        return _cents(con.execute(FACTS.format(table="gold.fct_sales_minute")).fetchall())


class _Trino:
    """The trino target: a running TrinoServer, the settings dbt runs with and the environment its profile reads."""

    def __init__(self, server, settings: Settings):
        from serving import trino_tables

        self.server = server
        self.settings = settings
        self.env = {"TRINO_HOST": "127.0.0.1", "TRINO_PORT": str(server.port), "TRINO_USER": "ecomlake",
                    "TRINO_CATALOG": "delta", "TRINO_AUTH": "none"}
        server.query(f"CREATE SCHEMA IF NOT EXISTS delta.gold WITH (location = '{GOLD_LOCATION}')")
        conn = server.connect()
        try:
            report = trino_tables.register_tables(conn.cursor(), settings, "delta")
        finally:
            conn.close()
        missing = {"silver.orders_clean", "silver.payments_clean", "silver.order_payments_enriched"} \
            - set(report.registered) - set(report.already_known)
        if missing:
            raise RuntimeError(f"gold bench: Trino did not register {sorted(missing)}: {report.lines()}")

    def build(self, tests: bool) -> float:
        return _timed_build(self.settings, tests, self.env)

    def facts(self) -> dict[datetime, tuple[Decimal, int]]:
        return _cents(self.server.query(FACTS.format(table="delta.gold.fct_sales_minute")))


def _differing(a: dict, b: dict) -> list[str]:
    return [f"{m:%Y-%m-%d %H:%M}: {a.get(m)} vs {b.get(m)}" for m in sorted(a.keys() | b.keys()) if a.get(m) != b.get(m)]


def run(settings: Settings, quick: bool = False, orders: int | None = None, trino: bool = True) -> dict:
    n_orders = orders or (QUICK_ORDERS if quick else FULL_ORDERS)
    logging.getLogger("trino.auth").setLevel(logging.WARNING)  # "keyring module not found", once per connection
    out: dict = {"gold_orders": n_orders}
    Path(settings.run_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-gold-", dir=settings.run_dir) as tmp, ExitStack() as stack:
        lakehouse = f"{tmp}/lakehouse"
        bench = dataclasses.replace(settings, lakehouse_uri=lakehouse, run_dir=f"{tmp}/run-duckdb", dbt_target="duckdb")
        engines: dict[str, _Trino] = {}
        if trino:
            started = time.perf_counter()
            try:
                server = stack.enter_context(trino_stack(Path(tmp) / "trino-stack"))
            except Unavailable as err:
                out["gold_trino_skipped"] = str(err)
            else:
                out["gold_trino_stack_start_s"] = round(time.perf_counter() - started, 1)
        else:
            out["gold_trino_skipped"] = "--no-trino"
        lake = SilverLake(lakehouse)
        rows, payments = synthetic(n_orders, seed=11, span_minutes=24 * 60)
        started = time.perf_counter()
        lake.write(rows, payments, now=datetime.now(timezone.utc) - timedelta(minutes=30))
        out["gold_silver_fixture_write_s"] = round(time.perf_counter() - started, 3)
        if "gold_trino_skipped" not in out:
            engines["trino"] = _Trino(server, dataclasses.replace(bench, run_dir=f"{tmp}/run-trino",
                                                                  dbt_target="trino"))

        agree = True

        def step(name: str, tests: bool) -> None:
            nonlocal agree
            out[f"gold_{name}_s_duckdb"] = _timed_build(bench, tests)
            for target, engine in engines.items():
                out[f"gold_{name}_s_{target}"] = engine.build(tests)
                diff = _differing(_duckdb_facts(bench), engine.facts())
                if diff:
                    agree = False
                    out[f"gold_{name}_{target}_differing_minutes"] = len(diff)
                    print(f"   gold {name}: {target} differs from duckdb in {len(diff)} minutes, e.g. {diff[:3]}",
                          file=sys.stderr, flush=True)

        step("full_build", tests=True)
        rows, payments = _late_changes(rows, payments, 0.01, step=1)
        lake.write(rows, payments)
        step("incremental_build", tests=True)
        rows, payments = _late_changes(rows, payments, 0.01, step=2)
        lake.write(rows, payments)
        step("incremental_models_only", tests=False)

        facts = _duckdb_facts(bench)
        out["gold_minutes"] = len(facts)
        out["gold_paid_orders"] = sum(n for _, n in facts.values())
        if engines:
            out["gold_trino_equals_duckdb_to_the_cent"] = agree
            for name in ("full_build", "incremental_build"):
                out[f"gold_{name}_trino_over_duckdb"] = round(out[f"gold_{name}_s_trino"] / out[f"gold_{name}_s_duckdb"], 2)
    return out


if __name__ == "__main__":
    import json

    print(json.dumps(run(Settings.from_env(), quick="--quick" in sys.argv), indent=2))
