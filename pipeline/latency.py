"""Publish → gold latency of every fully paid order, and where it goes (the demo's and the bench's figures).

Measured, not estimated. When each gold build starts, the version of silver's enriched table is noted, and the fully
paid orders of that version are read while the build runs (the build reads that version or a later one); when the
build has finished, every order seen there for the first time is visible in gold.fct_sales_minute, and its latency is
that moment minus the Kafka timestamp (publication time) of the latest event that went into it (`last_published_ts`).
Reading them before the build instead delayed every build by the read (docs/benchmarks.md#design-measurements).

The stages of the same order:
- publish → bronze: the commit time of the first bronze commit holding a record published at or after that
  event (commit times and the published range of each commit come from the bronze Delta logs);
- bronze → silver: from there to the end of the silver cycle that wrote the order (the first cycle ending after
  the order's `updated_ts`, which silver stamps when the cycle starts enriching);
- silver → gold: from there to the end of the gold build that made it visible.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import unquote

from ecomlake.lake.delta_log import added_files, commit_actions, latest_version
from ecomlake.settings import Settings
from ecomlake.tables import ORDER_PAYMENTS_ENRICHED, ORDERS_RAW, PAYMENTS_RAW


class Latencies:
    """A multiset of latencies counted per millisecond, the resolution the figures are reported in: adding, removing
    and every figure cost the same however many orders were measured. The probe reports its figures after every
    build, over every order of the run, and it shares its process (and GIL) with silver's driver: sorting lists of
    every latency after each build had come to a third of a second per build after half an hour at 1,000 events/s."""

    def __init__(self) -> None:
        import numpy as np

        self._counts = np.zeros(1024, dtype=np.int32)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def add(self, seconds: float) -> None:
        ms = max(0, round(seconds * 1000))
        if ms >= len(self._counts):
            import numpy as np

            self._counts = np.concatenate([self._counts, np.zeros(max(ms + 1, 2 * len(self._counts)) -
                                                                  len(self._counts), dtype=np.int32)])
        self._counts[ms] += 1
        self._n += 1

    def remove(self, seconds: float) -> None:
        ms = max(0, round(seconds * 1000))
        if ms < len(self._counts) and self._counts[ms] > 0:
            self._counts[ms] -= 1
            self._n -= 1

    def _ranked(self, ranks: "list[int]") -> "list[float]":
        """The values at these 1-based ranks, in seconds."""
        import numpy as np

        at = np.searchsorted(np.cumsum(self._counts), ranks)
        return [int(ms) / 1000 for ms in at]

    def spread(self, prefix: str = "") -> dict:
        """p50 (the median) / p95 (nearest rank: no interpolation, every figure is one that was measured) / max."""
        n = self._n
        if not n:
            return {}
        low, high, p95, top = self._ranked([(n + 1) // 2, n // 2 + 1, max(1, -(-n * 95 // 100)), n])
        return {f"{prefix}p50_s": round((low + high) / 2 if n % 2 == 0 else low, 3), f"{prefix}p95_s": p95,
                f"{prefix}max_s": top}


def _relative(path: str, table_uri: str) -> str:
    """A dataset fragment's path relative to the table's root (as the Delta log names it, once unquoted)."""
    root = str(table_uri).removeprefix("file://").rstrip("/") + "/"
    return path[len(root):] if path.startswith(root) else path.lstrip("/")


def _ts(value) -> float:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


@dataclass
class BronzeCommits:
    """Per bronze commit: (newest publication time in it, commit time), read from the Delta logs as they grow."""

    uris: tuple
    done: dict = field(default_factory=dict)
    commits: list = field(default_factory=list)  # sorted by newest publication time

    def refresh(self) -> None:
        for uri in self.uris:
            latest = latest_version(uri)
            if latest is None:
                continue
            for version in range(self.done.get(uri, -1) + 1, latest + 1):
                actions = commit_actions(uri, version)
                committed = next((a["commitInfo"].get("timestamp") for a in actions if "commitInfo" in a), None)
                newest = None
                for action in actions:
                    stats = action.get("add", {}).get("stats")
                    if stats:
                        import json

                        top = json.loads(stats).get("maxValues", {}).get("kafka_timestamp")
                        if top is not None:
                            newest = max(newest or 0.0, _ts(top))
                if committed is not None and newest is not None:
                    bisect.insort(self.commits, (newest, committed / 1000))
            self.done[uri] = latest

    def landed(self, published: float) -> float | None:
        """When a record published at `published` was in bronze: the earliest commit holding one published later."""
        i = bisect.bisect_left(self.commits, (published, 0.0))
        return min((c for _, c in self.commits[i:i + 64]), default=None)


@dataclass
class LatencyProbe:
    total: Latencies = field(default_factory=Latencies)
    to_bronze: Latencies = field(default_factory=Latencies)
    to_silver: Latencies = field(default_factory=Latencies)
    to_gold: Latencies = field(default_factory=Latencies)
    silver_ends: list = field(default_factory=list)
    newest_published: datetime | None = None
    bronze: BronzeCommits | None = None
    started: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    _read_version: int | None = field(default=None, repr=False)
    _unclaimed: dict = field(default_factory=dict, repr=False)  # found by a snapshot, not yet made visible
    windows: "Windows" = field(default_factory=lambda: Windows())
    _by_order: dict = field(default_factory=dict, repr=False)

    def snapshot(self, settings: Settings, version: int | None = None) -> dict:
        """The fully paid orders in silver (at `version` of the enriched table, default the latest) not yet measured:
        order id -> (last published, updated_ts).

        Only rows updated since the probe began count, and after the first read only the files committed since the
        previous one are read: on a lake with a day of history a read of the whole table would cost more than the
        build it times. The probe shares its process with silver's driver, so it filters in Arrow and turns only the
        new orders into Python objects (their Python conversion holds the GIL silver's Py4J calls wait for); which of the
        changed rows were measured already is looked up by id, a cost of the rows read, not of the orders measured."""
        import pyarrow as pa
        import pyarrow.compute as pc

        uri = ORDER_PAYMENTS_ENRICHED.uri(settings)
        table = self._changed_rows(uri, version)
        if table is None:
            return {}
        seen = pa.array([order_id in self._by_order for order_id in table["order_id"].to_pylist()], pa.bool_())
        ready = pc.and_(pc.fill_null(table["fully_paid"], False), pc.is_valid(table["last_published_ts"]))
        self._revoke(table.filter(pc.and_(seen, pc.invert(ready)))["order_id"].to_pylist())
        for order_id in table.filter(pc.and_(pc.invert(seen), pc.invert(ready)))["order_id"].to_pylist():
            self._unclaimed.pop(order_id, None)
        new = table.filter(pc.and_(ready, pc.invert(seen)))
        ids, published, updated = (new.column(c).to_pylist() for c in ("order_id", "last_published_ts", "updated_ts"))
        self._unclaimed.update((o, (p, u)) for o, p, u in zip(ids, published, updated))
        return dict(self._unclaimed)

    def _changed_rows(self, uri: str, version: int | None):
        """The enriched rows updated since the probe began, read from the files added since the last read (every
        active file the first time); None while the table does not exist."""
        import pyarrow as pa
        import pyarrow.dataset as ds
        from deltalake import DeltaTable

        if not DeltaTable.is_deltatable(uri):
            return None
        delta = DeltaTable(uri, version=version)
        current = delta.version()
        dataset = delta.to_pyarrow_dataset()
        since = pa.scalar(self.started, pa.timestamp("us", tz="UTC"))
        if self._read_version is not None:
            added = {unquote(add["path"]) for add in added_files(uri, self._read_version, current)}
            fragments = [f for f in dataset.get_fragments() if _relative(f.path, uri) in added]
            dataset = ds.FileSystemDataset(fragments, dataset.schema, dataset.format, dataset.filesystem)
        self._read_version = current
        columns = ["order_id", "fully_paid", "last_published_ts", "updated_ts"]
        return dataset.to_table(columns=columns, filter=ds.field("updated_ts") >= since)

    def _revoke(self, order_ids: list) -> None:
        """Measured orders that are no longer fully paid (cancelled or refunded since) leave the figures, so these
        cover the orders gold counts as paid; one paid again is measured again."""
        for order_id in order_ids:
            for values, value in zip((self.total, self.to_bronze, self.to_silver, self.to_gold),
                                     self._by_order.pop(order_id, ())):
                if value is not None:
                    values.remove(value)
            self.windows.remove(order_id)

    def silver_cycle_ended(self, at: float) -> None:
        self.silver_ends.append(at)

    def visible(self, pending: dict, at: float, settings: Settings | None = None) -> None:
        if settings is not None and self.bronze is None:
            self.bronze = BronzeCommits((ORDERS_RAW.uri(settings), PAYMENTS_RAW.uri(settings)))
        if self.bronze is not None:
            self.bronze.refresh()
        for order_id, (published, updated) in pending.items():
            self._unclaimed.pop(order_id, None)
            if published.tzinfo is None:
                published = published.replace(tzinfo=timezone.utc)
            t0 = published.timestamp()
            total = max(0.0, at - t0)
            self.total.add(total)
            if self.newest_published is None or published > self.newest_published:
                self.newest_published = published
            i = bisect.bisect_left(self.silver_ends, _ts(updated)) if updated is not None else len(self.silver_ends)
            t_silver = self.silver_ends[i] if i < len(self.silver_ends) else None
            t_bronze = self.bronze.landed(t0) if self.bronze is not None else None
            to_bronze = to_silver = to_gold = None
            if t_silver is not None:
                to_gold = max(0.0, at - t_silver)
                self.to_gold.add(to_gold)
                if t_bronze is not None and t_bronze <= t_silver:
                    to_bronze, to_silver = max(0.0, t_bronze - t0), t_silver - t_bronze
                    self.to_bronze.add(to_bronze)
                    self.to_silver.add(to_silver)
            self._by_order[order_id] = (total, to_bronze, to_silver, to_gold)
            self.windows.add(order_id, t0, total)

    def figures(self) -> dict:
        """Called after every build."""
        if not self.total:
            return {"paid_orders_measured": 0}
        out = {"paid_orders_measured": len(self.total), **self.total.spread("latency_")}
        stages = {"publish_to_bronze": self.to_bronze, "bronze_to_silver": self.to_silver,
                  "silver_to_gold": self.to_gold}
        out["stages"] = {name: values.spread() for name, values in stages.items() if values}
        out["windows"] = self.windows.figures()
        return out


@dataclass
class Windows:
    """The same figures per window of publication time (counted from the first order measured), for each width in
    `widths_s`: whether latency grows over a long run. Each call recomputes only the windows that changed."""

    widths_s: tuple = (60, 180)
    origin: float | None = None
    _values: dict = field(default_factory=dict)  # (width, index) -> latencies
    _where: dict = field(default_factory=dict)  # order id -> (publication time, latency)
    _dirty: set = field(default_factory=set)
    _figures: dict = field(default_factory=dict)

    def add(self, order_id: str, published: float, total: float) -> None:
        if self.origin is None:
            self.origin = published
        self._where[order_id] = (published, total)
        for key in self._keys(published):
            self._values.setdefault(key, Latencies()).add(total)
            self._dirty.add(key)

    def remove(self, order_id: str) -> None:
        published, total = self._where.pop(order_id, (None, None))
        if published is None:
            return
        for key in self._keys(published):
            self._values[key].remove(total)
            self._dirty.add(key)

    def _keys(self, published: float) -> list[tuple[int, int]]:
        assert self.origin is not None  # set by the first add, and only added orders have keys
        offset = max(0.0, published - self.origin)
        return [(width, int(offset // width)) for width in self.widths_s]

    def figures(self) -> dict:
        """{"60s": [{"from_s", "orders", "p50_s", "p95_s", "max_s"}, ...], "180s": [...]}"""
        for key in self._dirty:
            values = self._values[key]
            self._figures[key] = {"from_s": key[0] * key[1], "orders": len(values), **values.spread()}
        self._dirty.clear()
        out: dict = {f"{width}s": [] for width in self.widths_s}
        for (width, _), figures in sorted(self._figures.items()):
            if figures["orders"]:
                out[f"{width}s"].append(figures)
        return out
