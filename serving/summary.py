"""What the live dashboard shows, as one JSON-able dict: the page and `/api/summary` both render this.

The gold figures are the questions in trino/queries (serving/queries.py), run unchanged on the warehouse's read
snapshot (settings.warehouse_read_path, published by gold after each successful build), so the page shows what
Metabase shows on the cluster stack. The snapshot is opened read-only per refresh and never the file dbt writes:
reading can neither block nor corrupt a gold build. Freshness per layer comes from the Delta logs' file statistics
(no Spark, no data read) and the demo's measured latency from its latency.json.

Bad states are a status and one line, never a trace: no lake yet, gold not built yet, the warehouse busy, an empty
last hour.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from ecomlake.settings import Settings
from ecomlake.tables import ORDERS_CLEAN, ORDERS_RAW, PAYMENTS_CLEAN, PAYMENTS_RAW
from serving import queries

WINDOW_MINUTES = 60
# The trino/queries files the page shows, in page order.
PANELS = (
    "kpis_last_60min",
    "recent_sales",
    "payments_per_minute",
    "cancellations_refunds_per_minute",
    "gmv_by_currency",
    "payments_by_method",
    "quarantine_by_reason",
    "gold_freshness",
)
# Freshness per layer: the bronze ingest time of the newest event each layer holds.
LAYER_TABLES = {"bronze": (ORDERS_RAW, PAYMENTS_RAW), "silver": (ORDERS_CLEAN, PAYMENTS_CLEAN)}

OK, NO_LAKE, NO_GOLD, BUSY, EMPTY = "ok", "no_lake", "no_gold", "busy", "empty"


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        return _utc(value).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def lake_exists(settings: Settings) -> bool:
    """Anything written to the lake yet (a bronze or silver table); S3 lakes are taken as present."""
    if not settings.is_local_lake:
        return True
    root = Path(settings.lakehouse_uri)
    return any((root / t.schema / t.name / "_delta_log").is_dir() for tables in LAYER_TABLES.values() for t in tables)


def run_questions(snapshot: str) -> dict[str, dict]:
    """Every panel's query on the read snapshot (read-only): {name: {title, columns, rows}}."""
    import duckdb

    results = {}
    with duckdb.connect(snapshot, read_only=True) as con:
        for name in PANELS:
            query = queries.load(name)
            cursor = con.execute(query.sql)
            columns = [d[0] for d in cursor.description]
            rows = [[_jsonable(v) for v in row] for row in cursor.fetchall()]
            results[name] = {"title": query.title, "columns": columns, "rows": rows}
    return results


class LayerClock:
    """The newest bronze ingest_ts in each layer's Delta tables, from the logs' per-file max statistics.

    DeltaTable objects are kept and moved forward incrementally, so a refresh reads only the new log entries."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._tables: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _newest(self, uri: str) -> datetime | None:
        from deltalake import DeltaTable

        table = self._tables.get(uri)
        if table is None:
            if not DeltaTable.is_deltatable(uri):
                return None
            table = self._tables[uri] = DeltaTable(uri)
        else:
            table.update_incremental()
        actions = table.get_add_actions(flatten=True)
        if "max.ingest_ts" not in actions.schema.names:
            return None
        values = [v for v in actions.column("max.ingest_ts").to_pylist() if v is not None]
        return _utc(max(values)) if values else None

    def newest(self) -> dict[str, datetime | None]:
        with self._lock:
            found = {}
            for layer, tables in LAYER_TABLES.items():
                times = []
                for table in tables:
                    try:
                        times.append(self._newest(table.uri(self.settings)))
                    except Exception:  # a log being written or vacuumed: the next refresh reads it again
                        self._tables.pop(table.uri(self.settings), None)
                found[layer] = max((t for t in times if t is not None), default=None)
            return found


def read_latency(settings: Settings) -> dict | None:
    """The demo's publish -> gold latency figures (latency.json in the demo dir), if a demo measured any."""
    path = Path(settings.demo_dir) / "latency.json"
    try:
        figures = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return figures if figures.get("paid_orders_measured") else None


def freshness(newest: dict[str, datetime | None], now: datetime) -> dict[str, dict]:
    return {
        layer: {"newest_ingest_ts": _jsonable(ts), "lag_s": round((now - ts).total_seconds(), 1) if ts else None}
        for layer, ts in newest.items()
    }


def _one_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:200]


def is_empty(results: dict[str, dict]) -> bool:
    return not any(results[name]["rows"] for name in ("recent_sales", "payments_per_minute"))


class SummaryReader:
    """Builds the summary, at most once per `ttl_s` however many pages and API clients ask (they share it)."""

    def __init__(self, settings: Settings, ttl_s: float = 1.0):
        self.settings = settings
        self.ttl_s = ttl_s
        self.clock = LayerClock(settings)
        self._cached: tuple[float, dict] | None = None
        self._lock = threading.Lock()

    def get(self) -> dict:
        with self._lock:
            if self._cached and time.monotonic() - self._cached[0] < self.ttl_s:
                return self._cached[1]
            summary = self.read()
            self._cached = (time.monotonic(), summary)
            return summary

    def read(self) -> dict:
        import duckdb

        settings = self.settings
        now = datetime.now(timezone.utc)
        summary: dict[str, Any] = {
            "as_of": now.isoformat(), "window_minutes": WINDOW_MINUTES, "lake": settings.lakehouse_uri,
            "status": OK, "message": "", "questions": {}, "freshness": {}, "latency": read_latency(settings),
        }
        if not lake_exists(settings):
            summary.update(status=NO_LAKE, message=f"No lake yet at {settings.lakehouse_uri}: start `make demo` "
                           "(or run generate, bronze and silver) and this page fills in by itself.")
            return summary
        newest = self.clock.newest()
        snapshot = settings.warehouse_read_path
        if not Path(snapshot).exists():
            summary["freshness"] = freshness({**newest, "gold": None}, now)
            summary.update(status=NO_GOLD, message="Gold is not built yet: run `ecomlake gold` (the demo builds it "
                           "every few seconds); the page shows it as soon as the first build is published.")
            return summary
        try:
            results = run_questions(snapshot)
        except duckdb.Error as err:
            summary["freshness"] = freshness({**newest, "gold": None}, now)
            summary.update(status=BUSY, message=f"The gold warehouse is busy ({_one_line(err)}); retrying at the "
                           "next refresh.")
            return summary
        gold_rows = results["gold_freshness"]["rows"]
        gold_newest = gold_rows[0][0] if gold_rows and gold_rows[0][0] else None
        newest["gold"] = datetime.fromisoformat(gold_newest) if gold_newest else None
        summary["freshness"] = freshness(newest, now)
        summary["questions"] = results
        if is_empty(results):
            summary.update(status=EMPTY, message=f"Nothing in the last {WINDOW_MINUTES} minutes: gold holds no "
                           "sales or payments that recent. Is the generator running?")
        return summary
