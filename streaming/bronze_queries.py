"""The bronze queries' lifecycle: started under the bronze locks after the broker checks, run until stopped
(start_bronze) or until they have taken what the topics held at the start (run_available_now), stopped between
two micro-batches."""

from __future__ import annotations

import logging
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ecomlake.errors import EcomlakeError
from ecomlake.locks import single_writer
from ecomlake.settings import Settings
from streaming import checkpoint_log
from streaming.batch_writer import BatchWriter, LagMonitor
from streaming.broker_checks import DEFAULT_CONNECT_TIMEOUT_S, check_same_broker, check_topics, wait_for_broker
from streaming.bronze_table import BronzeTable, bronze_tables, to_bronze_rows
from streaming.incarnations import incarnation, reset_sources
from streaming.offsets import flatten, lost_data
from streaming.query_errors import raise_failure
from streaming.sources import source_for

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from pyspark.sql.streaming import StreamingQuery

log = logging.getLogger("ecomlake.bronze")

DEFAULT_TRIGGER_S = 2.0


@dataclass
class Bronze:
    """The running bronze job: its queries and their writers (for stats)."""

    queries: list["StreamingQuery"]
    writers: list[BatchWriter]
    monitor: LagMonitor
    locks: ExitStack = field(default_factory=ExitStack)

    def stats(self) -> dict:
        return {w.bronze.table: w.stats for w in self.writers}

    def stop(self, wait_s: float = 30.0) -> None:
        """Stop both queries, each between two micro-batches when one ends within `wait_s` (interrupting a batch
        loses and duplicates nothing, but Spark logs the interruption loudly)."""
        for query in self.queries:
            _stop_between_batches(query, wait_s)
        self.monitor.close()
        self.locks.close()


def _stop_between_batches(query: "StreamingQuery", wait_s: float) -> None:
    """Stop `query` between two batches; a query whose Spark context is already gone (the JVM got the same
    SIGTERM, e.g. from Airflow stopping the task's process group) counts as stopped."""
    from py4j.protocol import Py4JError

    try:
        deadline = time.monotonic() + wait_s
        while query.isActive and time.monotonic() < deadline:
            if not query.status["isTriggerActive"]:
                break
            time.sleep(0.02)
        if query.isActive:
            query.stop()
    except Py4JError:
        log.info("Spark was already stopping; the query stops with it")


def _hold_locks(settings: Settings) -> ExitStack:
    """One bronze writer per table: a second `ecomlake bronze` on the same lake is refused at once."""
    locks = ExitStack()
    try:
        for bronze in bronze_tables(settings):
            locks.enter_context(single_writer(settings.lakehouse_uri, f"bronze:{bronze.table}"))
    except BaseException:
        locks.close()
        raise
    return locks


def _prepare(spark: "SparkSession", settings: Settings, connect_timeout_s: float):
    from ecomlake.lake import get_engine

    view = wait_for_broker(settings, connect_timeout_s)
    check_topics(view, settings)
    engine = get_engine(spark, settings)
    return LagMonitor(view), engine


def _start_query(spark, settings, bronze: BronzeTable, engine, monitor, trigger, max_offsets, ending=None):
    current = incarnation(bronze)
    if checkpoint_log.checkpoint_offsets(bronze.checkpoint) is None and engine.exists(bronze.uri) and not current:
        log.warning("%s already has data but its checkpoint %s is new: the topic is read again from the earliest "
                    "offset and appended again", bronze.uri, bronze.checkpoint)
    writer = BatchWriter(bronze, engine, monitor)
    source = source_for(settings).stream(spark, settings, bronze.topic, bronze.checkpoint, max_offsets, ending)
    stream = to_bronze_rows(source, current)
    query = (
        stream.writeStream.queryName(bronze.name)
        .option("checkpointLocation", bronze.checkpoint)
        .foreachBatch(writer)
    )
    query = query.trigger(**trigger) if trigger else query
    return query.start(), writer


CONTINUOUS_MAX_OFFSETS = 40_000
"""Records per micro-batch and topic when bronze runs continuously: a backlog (bronze down, a broker full of
records) arrives in commits that silver's one-pass cycle can take a few at a time (batch/silver/one_pass.py takes
at most 50,000 rows a job); one larger commit would go through the jobs, whose merges read whole tables."""


def start_bronze(spark: "SparkSession", settings: Settings, trigger_seconds: float = DEFAULT_TRIGGER_S,
                 max_offsets: int | None = CONTINUOUS_MAX_OFFSETS, connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
                 reset: bool = False) -> Bronze:
    """Start both queries, running until stopped (a micro-batch every `trigger_seconds`, of at most `max_offsets`
    records a topic); `reset` first moves both to a new broker incarnation (reset_source)."""
    locks = _hold_locks(settings)
    try:
        if reset:
            reset_sources(settings)
        monitor, engine = _prepare(spark, settings, connect_timeout_s)
        queries, writers = [], []
        for bronze in bronze_tables(settings):
            check_same_broker(settings, bronze, engine, monitor)
        for bronze in bronze_tables(settings):
            query, writer = _start_query(spark, settings, bronze, engine, monitor,
                                         {"processingTime": f"{round(trigger_seconds * 1000)} milliseconds"},
                                         max_offsets)
            queries.append(query)
            writers.append(writer)
    except BaseException:
        locks.close()
        raise
    return Bronze(queries, writers, monitor, locks)


def run_available_now(spark: "SparkSession", settings: Settings, max_offsets: int | None = None,
                      connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S, poll_s: float = 0.1,
                      reset: bool = False) -> dict:
    """Process everything in the topics at call time, then stop. Returns rows, batches and seconds per table.

    spark-kafka: Spark's own Trigger.AvailableNow. python: Spark's AvailableNow wrapper for Python sources plans
    one single batch (ignoring maxOffsetsPerTrigger), so instead the end offsets are snapshotted here, the source
    is told never to plan past them (ecomlake.endingOffsets) and the query stops once its checkpoint has
    committed them."""
    with _hold_locks(settings):
        if reset:
            reset_sources(settings)
        return _run_available_now(spark, settings, max_offsets, connect_timeout_s, poll_s)


def _run_available_now(spark: "SparkSession", settings: Settings, max_offsets: int | None,
                       connect_timeout_s: float, poll_s: float) -> dict:
    started = time.monotonic()
    monitor, engine = _prepare(spark, settings, connect_timeout_s)
    running: list[tuple["StreamingQuery | None", BatchWriter, dict | None]] = []
    for bronze in bronze_tables(settings):
        check_same_broker(settings, bronze, engine, monitor)
    for bronze in bronze_tables(settings):
        if source_for(settings).native_available_now:
            query, writer = _start_query(spark, settings, bronze, engine, monitor, {"availableNow": True}, max_offsets)
            running.append((query, writer, None))
            continue
        target = monitor.snapshot(bronze.topic)
        if _caught_up(bronze, target, monitor):
            writer = BatchWriter(bronze, engine, monitor)
            running.append((None, writer, None))
            continue
        query, writer = _start_query(spark, settings, bronze, engine, monitor, None, max_offsets, ending=target)
        running.append((query, writer, target))
    try:
        pending = [(query, writer, target) for query, writer, target in running if query is not None]
        while pending:
            for query, writer, target in list(pending):
                if not query.isActive:
                    raise_failure(query)
                    pending.remove((query, writer, target))
                elif target is not None and _caught_up(writer.bronze, target, monitor):
                    _stop_between_batches(query, 30.0)
                    pending.remove((query, writer, target))
            time.sleep(poll_s)
        for query, writer, _ in running:
            if query is not None:
                raise_failure(query)
    finally:
        for query, _, _ in running:
            if query is not None and query.isActive:
                query.stop()
        monitor.close()
    seconds = time.monotonic() - started
    out: dict = {"seconds": round(seconds, 3)}
    for _, writer, _ in running:
        s = writer.stats
        out[writer.bronze.table] = {"rows": s.rows, "batches": s.batches, "skipped_batches": s.skipped_batches,
                                    "write_s": round(s.write_s, 3)}
    out["rows"] = sum(w.stats.rows for _, w, _ in running)
    return out


def _caught_up(bronze: BronzeTable, target: dict[tuple[str, int], int], monitor: LagMonitor) -> bool:
    committed = checkpoint_log.committed_offsets(bronze.checkpoint)
    done = flatten(committed[1]) if committed else {}
    for tp, position in done.items():
        if tp in target and target[tp] < position:
            raise EcomlakeError(lost_data(tp, target[tp], position, bronze.checkpoint))
    behind = [tp for tp in target if tp not in done]
    if behind:
        done.update(monitor.earliest(behind))
    return all(done[tp] >= end for tp, end in target.items())
