"""`ecomlake bronze`: stream both topics into bronze_raw.orders_raw and bronze_raw.payments_raw, exactly once.

One streaming query per topic, each with its own checkpoint under `${LAKEHOUSE_URI}/_checkpoints/bronze_<table>`.
Every micro-batch is appended with `LakeEngine.append_batch(app_id, txn_version=batch_id)`: the Delta commit
records the (app_id, batch id) application transaction, so when the process dies after the Delta commit but
before Spark's checkpoint commit, the replayed batch is recognised and skipped. app_id is the query's id from its
checkpoint (`bronze/<table>/<query id>`): stable across restarts, new when the checkpoint is deleted (then the
topic is read again from the earliest offset and appended again — delete the table with its checkpoint).

Bronze never rejects a payload. raw_value is the payload decoded as UTF-8; when the bytes are not valid UTF-8,
raw_value holds a decoding with U+FFFD replacement characters and raw_value_b64 the exact bytes, base64-encoded
(raw_value_b64 is NULL for every valid payload). raw_key is decoded the same way (keys are order ids).

Also runnable with spark-submit: `spark-submit streaming/bronze.py --available-now`.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import re
import signal
import sys
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

from ecomlake.arguments import positive_float, positive_int
from ecomlake import contract
from ecomlake.errors import EcomlakeError
from ecomlake.locks import check_lake, single_writer
from ecomlake.settings import Settings, debug_enabled, load
from streaming import checkpoint_log
from streaming.kafka_client import BrokerView, records_at
from streaming.offsets import flatten, lost_data
from streaming.sources import source_for

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.streaming import StreamingQuery

log = logging.getLogger("ecomlake.bronze")

DEFAULT_TRIGGER_S = 2.0
DEFAULT_CONNECT_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class BronzeTable:
    table: str
    topic: str
    uri: str
    checkpoint: str

    @property
    def name(self) -> str:
        return f"bronze_{self.table}"


def bronze_tables(settings: Settings) -> list[BronzeTable]:
    pairs = ((contract.BRONZE_ORDERS, settings.topic_order_events), (contract.BRONZE_PAYMENTS, settings.topic_payment_events))
    return [
        BronzeTable(table, topic, settings.table_uri(contract.BRONZE_SCHEMA, table),
                    settings.checkpoint_uri(f"bronze_{table}"))
        for table, topic in pairs
    ]


# --- transform -------------------------------------------------------------------------------------------
def to_bronze_rows(kafka_df: "DataFrame", incarnation: int = 0) -> "DataFrame":
    """Kafka source rows -> bronze rows. Payloads are kept byte for byte (raw_value_b64 when not UTF-8); each row
    carries the broker incarnation it was read from (see `reset_source`)."""
    from pyspark.sql import functions as F

    value_text = F.col("value").cast("string")
    return kafka_df.select(
        F.make_valid_utf8(F.col("key").cast("string")).alias("raw_key"),
        F.make_valid_utf8(value_text).alias("raw_value"),
        F.when(~F.is_valid_utf8(value_text), F.base64("value")).alias("raw_value_b64"),
        F.col("topic"),
        F.col("partition"),
        F.col("offset"),
        F.col("timestamp").alias("kafka_timestamp"),
        F.current_timestamp().alias("ingest_ts"),
        F.lit(incarnation).cast("int").alias("incarnation"),
    )


# --- broker incarnations ---------------------------------------------------------------------------------
INCARNATION_FILE = "incarnation"


def incarnation(bronze: BronzeTable) -> int:
    """The broker incarnation the table's checkpoint reads: 0 until the first `--reset-source`."""
    text = checkpoint_log.read_text(f"{bronze.checkpoint}/{INCARNATION_FILE}")
    return int(text) if text and text.strip().isdigit() else 0


def _set_aside(bronze: BronzeTable) -> list[int]:
    """Incarnations whose checkpoints were set aside (`<checkpoint>-incarnation-<n>`)."""
    from pyarrow import fs

    from ecomlake.lake.fs import resolve

    filesystem, path = resolve(bronze.checkpoint)
    parent, prefix = path.rsplit("/", 1)[0], path.rsplit("/", 1)[1] + "-incarnation-"
    if filesystem.get_file_info(parent).type != fs.FileType.Directory:
        return []
    names = [i.base_name for i in filesystem.get_file_info(fs.FileSelector(parent))]
    return [int(n[len(prefix):]) for n in names if n.startswith(prefix) and n[len(prefix):].isdigit()]


def reset_source(bronze: BronzeTable) -> int | None:
    """Start reading a new broker incarnation (a broker that lost its data, a recreated topic) from its earliest
    offset, keeping every row bronze already holds: the checkpoint is set aside as `<checkpoint>-incarnation-<n>`
    and the new one reads incarnation n+1, which new rows carry, so their Kafka coordinates never collide with the
    old rows'. Returns the new incarnation, or None when there was nothing to reset (no checkpoint yet)."""
    from pyarrow import fs

    from ecomlake.lake.fs import resolve

    filesystem, path = resolve(bronze.checkpoint)
    if filesystem.get_file_info(f"{path}/offsets").type != fs.FileType.Directory:
        return None
    current = incarnation(bronze)
    new = max([current, *_set_aside(bronze)]) + 1
    _move_tree(filesystem, path, f"{path}-incarnation-{current}")
    checkpoint_log.write_text(f"{bronze.checkpoint}/{INCARNATION_FILE}", f"{new}\n")
    return new


def _move_tree(filesystem, source: str, target: str) -> None:
    """A rename on a local file system; object stores have no directories to rename, so there every object is
    copied, then the source removed."""
    from pyarrow import fs

    if isinstance(filesystem, fs.LocalFileSystem):
        filesystem.move(source, target)
        return
    for info in filesystem.get_file_info(fs.FileSelector(source, recursive=True)):
        if info.type == fs.FileType.File:
            filesystem.copy_file(info.path, target + info.path[len(source):])
    filesystem.delete_dir(source)


def reset_sources(settings: Settings) -> None:
    """`ecomlake bronze --reset-source`, under the bronze locks."""
    for bronze in bronze_tables(settings):
        new = reset_source(bronze)
        if new is None:
            log.info("%s: no checkpoint yet, nothing to reset", bronze.table)
        else:
            log.info("%s: reading broker incarnation %d from its earliest offset; the rows of earlier "
                     "incarnations stay (their checkpoint: %s-incarnation-%d)", bronze.table, new, bronze.checkpoint,
                     new - 1)


# --- broker checks ---------------------------------------------------------------------------------------
def wait_for_broker(settings: Settings, timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S) -> BrokerView:
    """A connected broker view; retries with a message while the broker is unreachable, then fails in one line."""
    from confluent_kafka import KafkaException

    deadline = time.monotonic() + timeout_s
    attempt = 0
    while True:
        attempt += 1
        view = BrokerView(settings.kafka_bootstrap, timeout_s=10.0)
        try:
            view.consumer.list_topics(timeout=min(2.0, max(deadline - time.monotonic(), 0.5)))
            return view
        except KafkaException:
            view.close()
        left = deadline - time.monotonic()
        if left <= 0:
            hint = " (start the embedded one with `ecomlake broker start`)" if settings.broker == "embedded" else ""
            raise EcomlakeError(
                f"Kafka broker at {settings.kafka_bootstrap} is not reachable after {timeout_s:.0f}s{hint}"
            )
        log.warning("Kafka broker at %s not reachable (attempt %d); retrying for another %.0fs",
                    settings.kafka_bootstrap, attempt, left)
        time.sleep(min(1.0, left))


def check_topics(view: BrokerView, settings: Settings) -> None:
    _, missing = view.partitions(list(settings.topics))
    if missing:
        names = " and ".join(repr(t) for t in missing)
        raise EcomlakeError(
            f"topic {names} does not exist on {settings.kafka_bootstrap}; create it (`ecomlake generate` creates "
            "both topics) or point TOPIC_ORDER_EVENTS / TOPIC_PAYMENT_EVENTS at existing topics"
        )


# --- per-batch writer ------------------------------------------------------------------------------------
@dataclass
class QueryStats:
    rows: int = 0
    batches: int = 0
    skipped_batches: int = 0
    write_s: float = 0.0
    last_lag: int | None = None


class BatchFailed(Exception):
    """A micro-batch's write failed; its message is batch_failure's one line."""


# Spark (4.0) tells a query stopped mid-batch from a failed one by matching this text followed by
# `(.|\r\n|\r|\n)*` and the exception's class against the message of the foreachBatch function's error. That
# pattern recurses once per character: a Py4JJavaError's text, with the JVM stack trace in it, overflowed the
# stream thread's stack, and the JVM printed a thousand lines of regex frames before our one-line error.
_SOURCE_ERROR = re.compile(r"KafkaSourceError: (.+)")
_ECOMLAKE_ERROR = re.compile(r"EcomlakeError: (.+)")
_PY4J_ERROR = "py4j.protocol.Py4JJavaError: An error occurred while calling"
_INTERRUPTIONS = ("java.lang.InterruptedException", "java.nio.channels.ClosedByInterruptException",
                  "java.io.InterruptedIOException", "java.io.UncheckedIOException")


def batch_failure(err: Exception) -> str:
    """A one-line text for a failed batch that keeps what the query's caller reads back (_raise_failure's causes)
    and, for an interrupted batch, the form by which Spark recognises a stop."""
    text = f"EcomlakeError: {err}" if isinstance(err, EcomlakeError) else str(err)
    for cause in (_SOURCE_ERROR, _ECOMLAKE_ERROR):
        found = cause.search(text)
        if found:
            return found.group(0)
    # A Py4JJavaError reads "An error occurred while calling oN.method.\n: <the JVM's exception>\n\tat ...".
    lines = text.split("\n: ", 1)[-1].strip().splitlines()
    first = lines[0][:500] if lines else type(err).__name__
    interruption = next((name for name in _INTERRUPTIONS if name in text), None)
    return f"{first} ({_PY4J_ERROR} append_batch: {interruption})" if interruption else first


@dataclass
class BatchWriter:
    """foreachBatch sink: one idempotent Delta append per micro-batch, one log line per batch."""

    bronze: BronzeTable
    engine: object
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


class LagMonitor:
    """Broker offsets for the lag figure (shared by the queries' callbacks, hence the lock). Lag uses the
    reported end offsets (no probe: it is informative). On Kafka they are exact; on the embedded broker, whose report
    stops at a partition's last record batch (design.md), lag leaves out the rest of that batch: the records of the
    generator's last 50 ms (generator.publish.producer_config)."""

    def __init__(self, view: BrokerView):
        self.view = view
        self.lock = threading.Lock()

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
            tps, _ = self.view.partitions([topic])
            return self.view.latest(tps)


# --- queries ---------------------------------------------------------------------------------------------
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


def check_same_broker(settings: Settings, bronze: BronzeTable, engine, monitor: "LagMonitor") -> None:
    """Stop, rather than skip messages, when the broker is not the one the checkpoint read from.

    A broker that lost its data (the embedded one keeps it in memory) or a topic deleted and created again starts
    its offsets over. With fewer messages than before, the end offsets fall below the checkpoint (lost_data);
    with more, offsets the checkpoint already passed hold new messages that bronze would never read. So the last
    message bronze stored in each partition must still be on the broker at the same offset."""
    committed = checkpoint_log.committed_offsets(bronze.checkpoint)
    if committed is None or not engine.exists(bronze.uri):
        return
    last = {tp: offset - 1 for tp, offset in flatten(committed[1]).items() if offset > 0}
    with monitor.lock:
        earliest = monitor.view.earliest(list(last))
        ends = monitor.view.latest(list(last))
        for tp, offset in last.items():
            if ends[tp] <= offset:
                raise EcomlakeError(lost_data(tp, ends[tp], offset + 1, bronze.checkpoint))
        checkable = {tp: offset for tp, offset in last.items() if earliest[tp] <= offset}
        on_broker = records_at(monitor.view, checkable)
    if not checkable:
        return
    from pyspark.sql import functions as F

    from ecomlake.tables import with_incarnation

    wanted = None
    for (_, partition), offset in checkable.items():
        cond = (F.col("partition") == partition) & (F.col("offset") == offset)
        wanted = cond if wanted is None else wanted | cond
    current = with_incarnation(engine.read(bronze.uri)).filter(F.col("incarnation") == incarnation(bronze))
    stored = {
        (r["topic"], r["partition"]): r
        for r in current.filter(wanted).select(
            "topic", "partition", "offset", "raw_value", "raw_value_b64", "kafka_timestamp").collect()
    }
    for tp, offset in sorted(checkable.items()):
        row, record = stored.get(tp), on_broker.get(tp)
        if row is None or record is None:
            continue
        value = base64.b64decode(row["raw_value_b64"]) if row["raw_value_b64"] else (row["raw_value"] or "").encode()
        stored_ms = round(row["kafka_timestamp"].timestamp() * 1000)
        if value != (record[1] or b"") or stored_ms != record[0]:
            raise EcomlakeError(
                f"{tp[0]}/{tp[1]} offset {offset} on {settings.kafka_bootstrap} is not the message bronze stored "
                f"from there: the broker lost its data or the topic was recreated, and reading on from offset "
                f"{offset + 1} would skip every new message below it. To read the new broker from its earliest "
                "offset and keep the rows already stored, run `ecomlake bronze --reset-source`"
            )


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


def start_bronze(spark: "SparkSession", settings: Settings, trigger_seconds: float = DEFAULT_TRIGGER_S,
                 max_offsets: int | None = None, connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
                 reset: bool = False) -> Bronze:
    """Start both queries, running until stopped (a micro-batch every `trigger_seconds`); `reset` first moves
    both to a new broker incarnation (reset_source)."""
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
    running: list[tuple["StreamingQuery", BatchWriter, dict | None]] = []
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
        pending = [r for r in running if r[0] is not None]
        while pending:
            for query, writer, target in list(pending):
                if not query.isActive:
                    _raise_failure(query, writer.bronze)
                    pending.remove((query, writer, target))
                elif target is not None and _caught_up(writer.bronze, target, monitor):
                    _stop_between_batches(query, 30.0)
                    pending.remove((query, writer, target))
            time.sleep(poll_s)
        for query, writer, _ in running:
            if query is not None:
                _raise_failure(query, writer.bronze)
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


def _raise_failure(query: "StreamingQuery", bronze: BronzeTable) -> None:
    error = query.exception()
    if error is None:
        return
    text = str(error)
    found = _SOURCE_ERROR.search(text)
    if found:
        raise EcomlakeError(found.group(1).strip())
    found = _ECOMLAKE_ERROR.search(text)
    if found:
        raise EcomlakeError(found.group(1).strip())
    raise error


# --- command line ----------------------------------------------------------------------------------------




def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ecomlake bronze",
        description="Stream TOPIC_ORDER_EVENTS and TOPIC_PAYMENT_EVENTS into the Delta tables "
        "bronze_raw.orders_raw and bronze_raw.payments_raw under LAKEHOUSE_URI, exactly once "
        "(KAFKA_SOURCE picks the Kafka reader, LAKE_ENGINE the Delta writer).",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--available-now", action="store_true",
                      help="process everything in the topics now, then stop")
    mode.add_argument("--trigger", type=positive_float, metavar="SECONDS", default=DEFAULT_TRIGGER_S,
                      help=f"run until stopped, one micro-batch every SECONDS (default {DEFAULT_TRIGGER_S:g})")
    parser.add_argument("--max-offsets-per-trigger", type=positive_int, metavar="N",
                        help="at most N records per micro-batch and topic (default: no limit)")
    parser.add_argument("--reset-source", action="store_true",
                        help="the broker lost its data or the topics were recreated: read them from the earliest "
                        "offset as a new broker incarnation, keeping the rows already in bronze")
    parser.add_argument("--connect-timeout", type=positive_float, metavar="SECONDS",
                        default=DEFAULT_CONNECT_TIMEOUT_S,
                        help=f"how long to retry an unreachable broker at start (default {DEFAULT_CONNECT_TIMEOUT_S:g})")
    return parser


def _setup_logging() -> None:
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s bronze: %(message)s", "%H:%M:%S"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    _setup_logging()
    settings = load()
    from ecomlake.spark import get_spark

    if settings.is_local_lake:
        check_lake(settings.lakehouse_uri)
    spark = get_spark(settings, app_name="ecomlake-bronze")
    if args.available_now:
        result = run_available_now(spark, settings, args.max_offsets_per_trigger, args.connect_timeout,
                                   reset=args.reset_source)
        rate = result["rows"] / result["seconds"] if result["seconds"] else 0.0
        print(f"bronze: {result['rows']} new rows ({result[contract.BRONZE_ORDERS]['rows']} orders, "
              f"{result[contract.BRONZE_PAYMENTS]['rows']} payments) in {result['seconds']:.1f}s ({rate:.0f} rows/s)")
        return 0
    job = start_bronze(spark, settings, args.trigger, args.max_offsets_per_trigger, args.connect_timeout,
                       reset=args.reset_source)
    log.info("streaming %s -> %s (checkpoints under %s); Ctrl-C to stop",
             ", ".join(b.topic for b in bronze_tables(settings)), contract.BRONZE_SCHEMA,
             settings.checkpoint_uri(""))
    previous = signal.signal(signal.SIGTERM, _interrupt)
    watchdog = BrokerWatchdog(settings.kafka_bootstrap, args.connect_timeout)
    try:
        while True:
            for query, writer in zip(job.queries, job.writers):
                if not query.isActive:
                    job.stop()
                    if watchdog.down_since is not None:
                        raise EcomlakeError(watchdog.failure())
                    if not watchdog.reachable():
                        raise EcomlakeError(watchdog.failed_mid_batch())
                    _raise_failure(query, writer.bronze)
                    raise EcomlakeError(f"query {query.name} stopped unexpectedly")
            if watchdog.check():
                job.stop(wait_s=5.0)
                raise EcomlakeError(watchdog.failure())
            time.sleep(0.5)
    except KeyboardInterrupt:
        log.info("stopping")
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        job.stop()


class BrokerWatchdog:
    """Notices a broker that went away under a running bronze, so the job stops within --connect-timeout with the
    real cause instead of a source error minutes later (or never: Spark's Kafka source retries on its own)."""

    def __init__(self, bootstrap: str, timeout_s: float, every_s: float = 2.0):
        self.bootstrap, self.timeout_s, self.every_s = bootstrap, timeout_s, every_s
        self.down_since: float | None = None
        self.next_probe = 0.0

    def check(self) -> bool:
        """Probe (at most every `every_s`); True once the broker has been unreachable for the whole timeout."""
        from ecomlake.broker import answers_metadata

        now = time.monotonic()
        if now >= self.next_probe:
            self.next_probe = now + self.every_s
            if answers_metadata(self.bootstrap, timeout_s=min(2.0, self.timeout_s)):
                self.down_since = None
            elif self.down_since is None:
                self.down_since = now
                log.warning("Kafka broker at %s is not answering; stopping in %.0fs unless it comes back",
                            self.bootstrap, self.timeout_s)
        if self.down_since is not None and now - self.down_since >= self.timeout_s:
            return True
        return False

    def reachable(self) -> bool:
        from ecomlake.broker import answers_metadata

        return answers_metadata(self.bootstrap, timeout_s=min(2.0, self.timeout_s))

    def failed_mid_batch(self) -> str:
        """A source that reads the broker inside the batch (Spark's Kafka source) fails the query at once."""
        return (f"Kafka broker at {self.bootstrap} is not reachable; bronze stopped (the batch under way was not "
                "committed and is read again) and resumes where it stopped when run again with the broker back")

    def failure(self) -> str:
        return (f"Kafka broker at {self.bootstrap} is not reachable (for {self.timeout_s:.0f}s); bronze stopped "
                "between batches and resumes where it stopped when run again with the broker back")


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _submit_main() -> int:
    """Entry point under spark-submit: the same one-line errors as the `ecomlake` command."""
    try:
        return main()
    except EcomlakeError as err:
        print(f"bronze: error: {err}", file=sys.stderr)
        return err.exit_code


if __name__ == "__main__":
    sys.exit(_submit_main())
