"""The foreachBatch sink: one idempotent Delta append per micro-batch, with the lag behind the broker it reports."""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ecomlake.errors import EcomlakeError
from ecomlake.settings import debug_enabled
from streaming import checkpoint_log
from streaming.bronze_table import BronzeTable
from streaming.kafka_client import BrokerView
from streaming.offsets import flatten
from streaming.query_errors import BatchFailed, batch_failure

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from ecomlake.lake.base import LakeEngine

log = logging.getLogger("ecomlake.bronze")


@dataclass
class QueryStats:
    rows: int = 0
    batches: int = 0
    skipped_batches: int = 0
    write_s: float = 0.0
    last_lag: int | None = None


class LagMonitor:
    """Broker offsets for the lag figure (shared by the queries' callbacks, hence the lock). Lag uses the
    reported end offsets (no probe: it is informative). On Kafka they are exact; on the embedded broker, whose report
    stops at a partition's last record batch, lag leaves out the rest of that batch: the records of the
    generator's last 50 ms (generator.publish.producer_config)."""

    def __init__(self, view: BrokerView):
        self.view: BrokerView | None = view  # None once closed
        self.lock = threading.Lock()

    @property
    def open_view(self) -> BrokerView:
        """The view, for the checks and snapshots taken before the monitor is closed."""
        if self.view is None:
            raise EcomlakeError("the broker view is already closed")
        return self.view

    def lag(self, processed: dict[tuple[str, int], int]) -> int | None:
        if not processed or self.view is None:
            return None
        try:
            with self.lock:
                reported = self.view.reported_latest(list(processed))
        except Exception:  # lag is informative only; never fail a batch for it
            return None
        return sum(max(0, reported[tp][1] - o) for tp, o in processed.items())

    def earliest(self, tps: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        with self.lock:
            return self.view.earliest(tps) if self.view is not None else {}

    def close(self) -> None:
        with self.lock:
            if self.view is not None:
                self.view.close()
                self.view = None

    def snapshot(self, topic: str) -> dict[tuple[str, int], int]:
        with self.lock:
            tps, _ = self.open_view.partitions([topic])
            return self.open_view.latest(tps)


@dataclass
class BatchWriter:
    """foreachBatch sink: one idempotent Delta append per micro-batch, one log line per batch."""

    bronze: BronzeTable
    engine: LakeEngine
    monitor: "LagMonitor"
    stats: QueryStats = field(default_factory=QueryStats)
    _app_id: str | None = None

    def app_id(self) -> str:
        if self._app_id is None:
            text = checkpoint_log.read_text(f"{self.bronze.checkpoint}/metadata")
            if not text:
                raise EcomlakeError(f"checkpoint {self.bronze.checkpoint} has no metadata file")
            self._app_id = f"bronze/{self.bronze.table}/{json.loads(text)['id']}"
        return self._app_id

    def __call__(self, df: "DataFrame", batch_id: int) -> None:
        started = time.monotonic()
        try:
            wrote = self.engine.append_batch(df, self.bronze.uri, self.app_id(), batch_id)
        except Exception as err:
            if debug_enabled():
                log.exception("%s batch %d failed", self.bronze.table, batch_id)
            raise BatchFailed(batch_failure(err)) from None
        elapsed = time.monotonic() - started
        rows, processed = self._batch_range(batch_id)
        lag = self.monitor.lag(processed)
        self.stats.batches += 1
        self.stats.write_s += elapsed
        self.stats.last_lag = lag
        if wrote:
            self.stats.rows += rows
            log.info("%s batch %d: %d rows in %.2fs (%.0f rows/s), lag %s", self.bronze.table, batch_id, rows,
                     elapsed, rows / elapsed if elapsed > 0 else 0.0, "?" if lag is None else lag)
        else:
            self.stats.skipped_batches += 1
            log.info("%s batch %d: already committed to Delta before a restart; skipped", self.bronze.table, batch_id)

    def _batch_range(self, batch_id: int) -> tuple[int, dict[tuple[str, int], int]]:
        """Records in the batch (end minus start offsets from Spark's offsets log) and its end offsets."""
        end = checkpoint_log.checkpoint_offsets(self.bronze.checkpoint, batch_id)
        if end is None:
            return 0, {}
        stop = flatten(end[1])
        begin = None
        if batch_id > 0:
            begin = checkpoint_log.checkpoint_offsets(self.bronze.checkpoint, batch_id - 1)
        start = flatten(begin[1]) if begin else self.monitor.earliest(list(stop))
        return sum(max(0, o - start.get(tp, 0)) for tp, o in stop.items()), stop
