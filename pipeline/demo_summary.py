"""The demo's summary: written to <lakehouse>/demo/ and printed with the queries a user would run next on gold."""

from __future__ import annotations

from pathlib import Path

from ecomlake.settings import Settings
from pipeline.demo_status import gold_query
from serving import queries

# The questions from trino/queries a user would ask next, and how many rows of each the summary shows.
TOP_QUERIES = {"recent_sales": 5, "busiest_minutes": 3, "total_gmv": 1}


def print_summary(settings: Settings, summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title="ecomlake demo — summary" + (" (interrupted)" if summary["interrupted"] else ""))
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("run time", f"{summary['seconds']}s, scenario {summary['scenario']}, {summary['rate']:g} events/s")
    table.add_row("events produced", f"{summary['events_produced']:,}")
    for name, value in summary["counts"].items():
        table.add_row(name, f"{value:,}")
    latency = summary["latency"]
    if latency.get("paid_orders_measured"):
        table.add_row("end-to-end latency (publish → gold)",
                      f"p50 {latency['latency_p50_s']}s, p95 {latency['latency_p95_s']}s, max {latency['latency_max_s']}s "
                      f"over {latency['paid_orders_measured']:,} paid orders")
        names = {"publish_to_bronze": "publish → bronze", "bronze_to_silver": "bronze → silver",
                 "silver_to_gold": "silver → gold"}
        for key, name in names.items():
            stage = latency.get("stages", {}).get(key)
            if stage:
                table.add_row(f"  {name}", f"p50 {stage['p50_s']}s, p95 {stage['p95_s']}s")
    cycles = summary.get("silver_cycles") or []
    if cycles:
        seconds = sorted(c["seconds"] for c in cycles)
        jobs = sorted(c["spark_jobs"] for c in cycles)
        table.add_row("silver cycles / gold builds",
                      f"{len(cycles)} (median {seconds[len(seconds) // 2]}s, {jobs[len(jobs) // 2]} Spark jobs) / "
                      f"{len(summary.get('gold_builds') or [])}")
    console.print(table)
    if not Path(settings.warehouse_path).exists():
        return
    console.print(f"\nQuery gold yourself: duckdb {settings.warehouse_path}")
    for name, limit in TOP_QUERIES.items():
        title, sql = queries.load(name).title, queries.load(name).sql
        try:
            columns, rows = gold_query(settings, sql)
            rows = rows[:limit]
        except Exception as err:
            console.print(f"[red]{title}: {err}[/red]")
            continue
        result = Table(title=f"{title}\n[dim]{sql}[/dim]", title_justify="left")
        for column in columns:
            result.add_column(column, justify="right")
        for row in rows:
            result.add_row(*(f"{v:,.2f}" if hasattr(v, "quantize") else str(v) for v in row))
        console.print(result)
    if summary["dashboard"]:
        console.print(f"\nDashboard: {summary['dashboard']['html']}  (PNG: {summary['dashboard']['png']})")
    if summary.get("live_dashboard"):
        console.print(f"The live dashboard stopped with the demo; `ecomlake dashboard` serves it again at "
                      f"{summary['live_dashboard']}")
