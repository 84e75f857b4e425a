"""The demo's static dashboard file (HTML with charts, plus a PNG) rendered from gold at the end of a run.

The embedded stack's BI proper is the live dashboard (serving/live.py, the same questions as Metabase); this file
keeps a record of a finished demo: GMV per minute and paid orders over the last 60 minutes, drawn from
gold.fct_sales_minute in the DuckDB warehouse.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

WINDOW_MINUTES = 60


@dataclass(frozen=True)
class MinuteSales:
    minute_bucket: datetime
    gmv: Decimal
    paid_orders: int


def read_last_minutes(warehouse_path: str, now: datetime | None = None, minutes: int = WINDOW_MINUTES) -> list[MinuteSales]:
    """Gold rows of the last `minutes` minutes up to `now` (UTC), oldest first."""
    import duckdb

    now = now or datetime.now(timezone.utc)
    since = now - timedelta(minutes=minutes)
    with duckdb.connect(warehouse_path, read_only=True) as con:
        rows = con.execute(
            "select minute_bucket, gmv, paid_orders from gold.fct_sales_minute "
            "where minute_bucket >= ? order by minute_bucket",
            [since],
        ).fetchall()
    return [MinuteSales(_utc(r[0]), Decimal(r[1]), int(r[2])) for r in rows]


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _figure(rows: list[MinuteSales], title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    fig, (ax_gmv, ax_orders) = plt.subplots(2, 1, figsize=(11, 6.5), sharex=True, constrained_layout=True)
    fig.suptitle(title, fontsize=14, fontweight="bold")
    minutes = [r.minute_bucket for r in rows]
    width = 1 / (24 * 60) * 0.8
    ax_gmv.bar(minutes, [float(r.gmv) for r in rows], width=width, color="#2f6fdf")
    ax_gmv.set_ylabel("GMV (USD)")
    ax_gmv.set_title("GMV per minute", loc="left", fontsize=11)
    ax_gmv.grid(axis="y", alpha=0.3)
    ax_orders.plot(minutes, [r.paid_orders for r in rows], marker="o", color="#1a9c5b")
    ax_orders.set_ylabel("paid orders")
    ax_orders.set_title("Paid orders per minute", loc="left", fontsize=11)
    ax_orders.grid(alpha=0.3)
    ax_orders.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=timezone.utc))
    ax_orders.set_xlabel("minute (UTC)")
    return fig


def render(rows: list[MinuteSales], out_dir: str, generated_at: datetime | None = None) -> tuple[Path, Path]:
    """Write dashboard.html (charts inline as SVG, plus a table) and dashboard.png; return their paths."""
    import matplotlib.pyplot as plt

    generated_at = generated_at or datetime.now(timezone.utc)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    total_gmv = sum((r.gmv for r in rows), Decimal("0"))
    total_orders = sum(r.paid_orders for r in rows)
    title = f"ecomlake — sales, last {WINDOW_MINUTES} minutes (GMV ${total_gmv:,.2f}, {total_orders} paid orders)"
    fig = _figure(rows, title)
    png_path, html_path = out / "dashboard.png", out / "dashboard.html"
    fig.savefig(png_path, dpi=110)
    svg = io.BytesIO()
    fig.savefig(svg, format="svg")
    plt.close(fig)
    table = "\n".join(
        f"<tr><td>{r.minute_bucket:%Y-%m-%d %H:%M}</td><td>{r.gmv:,.2f}</td><td>{r.paid_orders}</td></tr>"
        for r in reversed(rows)
    )
    svg_b64 = base64.b64encode(svg.getvalue()).decode()
    html_path.write_text(
        f"""<!doctype html>
<html><head><meta charset="utf-8"><meta http-equiv="refresh" content="30">
<title>ecomlake dashboard</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse}}
td,th{{padding:4px 12px;border-bottom:1px solid #ddd;text-align:right}}th{{background:#f4f4f4}}</style></head>
<body><h1>{html.escape(title)}</h1>
<p>Generated {generated_at:%Y-%m-%d %H:%M:%S} UTC from <code>gold.fct_sales_minute</code>.</p>
<img alt="GMV and paid orders per minute" src="data:image/svg+xml;base64,{svg_b64}">
<h2>Per minute</h2>
<table><tr><th>minute (UTC)</th><th>GMV (USD)</th><th>paid orders</th></tr>
{table}
</table></body></html>
""",
        encoding="utf-8",
    )
    return html_path, png_path
