"""What the demo shows while it runs: its figures (DemoState), the row counts and the backlog read from the lake, gold's
latest minute, and the live status table."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ecomlake.settings import Settings
from ecomlake.tables import LAKE_TABLES, ORDERS_RAW, PAYMENTS_RAW
from pipeline.latency import LatencyProbe


def table_rows(uri: str) -> int:
    """Row count of a Delta table from its log's file statistics (no data read); 0 when it doesn't exist."""
    from deltalake import DeltaTable

    if not DeltaTable.is_deltatable(uri):
        return 0
    actions = DeltaTable(uri).get_add_actions(flatten=True)
    return int(sum(v for v in actions.column("num_records").to_pylist() if v))


@dataclass
class DemoState:
    started: float = field(default_factory=time.monotonic)
    phase: str = "starting"
    produced: int = 0
    cycles: int = 0
    silver_s: float = 0.0
    silver_jobs: int = 0
    gold_s: float = 0.0
    gold_status: str = "-"
    silver_cycles: list = field(default_factory=list)
    gold_builds: list = field(default_factory=list)
    lag: list = field(default_factory=list)
    counts: dict = field(default_factory=dict)
    latest_minute: tuple | None = None
    latency: LatencyProbe = field(default_factory=LatencyProbe)
    warm_up_s: float | None = None
    manifest: dict | None = None  # what the generator published, once it has finished


def gold_query(settings: Settings, sql: str) -> tuple[list[str], list[tuple]]:
    """A query on gold's read snapshot (read-only), so the live view never holds the file a gold build writes."""
    import duckdb

    if not Path(settings.warehouse_read_path).exists():
        return [], []
    with duckdb.connect(settings.warehouse_read_path, read_only=True) as con:
        cursor = con.execute(sql)
        return [d[0] for d in cursor.description], cursor.fetchall()


def refresh_counts(settings: Settings, state: DemoState) -> None:
    counts = {f"{t.layer} {t.name.removesuffix('_raw')}": table_rows(t.uri(settings)) for t in LAKE_TABLES}
    try:
        _, rows = gold_query(settings, "select count(*) from gold.fct_sales_minute")
        counts["gold minutes"] = rows[0][0] if rows else 0
        _, latest = gold_query(settings, "select minute_bucket, gmv, paid_orders from gold.fct_sales_minute "
                                         "order by minute_bucket desc limit 1")
        state.latest_minute = latest[0] if latest else None
    except Exception:  # the warehouse is busy while gold builds: keep the last figure
        counts["gold minutes"] = state.counts.get("gold minutes", 0)
    state.counts = counts


def status_table(state: DemoState, seconds: float, rate: float):
    from rich.table import Table

    elapsed = time.monotonic() - state.started
    table = Table(title=f"ecomlake demo — {state.phase} ({elapsed:,.0f}s of ~{seconds:,.0f}s, {rate:g} events/s)")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("events produced", f"{state.produced:,}")
    for name, value in state.counts.items():
        table.add_row(name, f"{value:,}")
    lag = state.latency.newest_published
    table.add_row("freshness lag (now − newest event in gold)",
                  f"{time.time() - lag.timestamp():.1f}s" if lag else "-")
    if state.latest_minute:
        minute, gmv, orders = state.latest_minute
        table.add_row("latest minute GMV (USD)", f"{minute:%H:%M}  ${gmv:,.2f}  ({orders} paid orders)")
    table.add_row("silver cycles / gold builds",
                  f"{len(state.silver_cycles)} / {len(state.gold_builds)} (last: silver {state.silver_s:.1f}s with "
                  f"{state.silver_jobs} Spark jobs, gold {state.gold_s:.1f}s {state.gold_status})")
    if state.lag:
        last = state.lag[-1]
        table.add_row("backlog: Kafka → bronze / bronze → silver (rows)",
                      f"{last['bronze_backlog']:,} / {last['silver_backlog']:,}")
    figures = state.latency.figures()
    if figures.get("paid_orders_measured"):
        table.add_row("end-to-end latency p50 / p95", f"{figures['latency_p50_s']:.1f}s / {figures['latency_p95_s']:.1f}s")
    return table


def sample_lag(settings: Settings, state: DemoState, silver) -> None:
    """Rows published but not in bronze, and in bronze but not read by silver: flat when nothing falls behind."""
    bronze = sum(table_rows(t.uri(settings)) for t in (ORDERS_RAW, PAYMENTS_RAW))
    state.lag.append({"t": round(time.monotonic() - state.started, 1), "produced": state.produced,
                      "bronze_backlog": max(0, state.produced - bronze),
                      "silver_backlog": max(0, bronze - silver.rows_read)})


def write_latency(settings: Settings, figures: dict) -> None:
    """The latency figures so far, for the live dashboard (demo_dir/latency.json, replaced atomically)."""
    out = Path(settings.demo_dir)
    out.mkdir(parents=True, exist_ok=True)
    partial = out / f".latency.json.{os.getpid()}"
    partial.write_text(json.dumps({**figures, "updated": datetime.now(timezone.utc).isoformat()}) + "\n")
    os.replace(partial, out / "latency.json")
