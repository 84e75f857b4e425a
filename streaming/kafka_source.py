"""Seam 1, `KAFKA_SOURCE=python`: a Spark Python streaming data source over confluent-kafka.

Register it with `register(spark)`, then `spark.readStream.format("ecomlake_kafka")`. It yields the same columns
as Spark's Kafka source (key, value, topic, partition, offset, timestamp, timestampType) and honours the same
options:

  kafka.bootstrap.servers   host:port[,host:port]              (required)
  subscribe                 topic[,topic...]                    (required)
  startingOffsets           earliest | latest | JSON {"topic": {"0": 23, "1": -2}} (-2 earliest, -1 latest;
                            partitions not named start at earliest). Default: latest, as in Spark.
  maxOffsetsPerTrigger      upper bound of records per micro-batch, split over partitions by backlog
  kafka.<librdkafka key>    passed to the consumer (e.g. kafka.security.protocol)

and three of its own:

  ecomlake.checkpointLocation  the query's checkpoint location (see "Where the reader is", below)
  ecomlake.endingOffsets       JSON like startingOffsets: never plan past these offsets (available-now runs)
  ecomlake.readTimeoutMs       how long a read task waits for a planned record before failing (default 60000)

Offsets are JSON dicts {topic: {partition: next offset}}, the same shape Spark's Kafka source writes; Spark keeps
them in the checkpoint's offsets log. Nothing is committed to Kafka and no consumer group is joined (assign()).

Partitions are rediscovered on every trigger: a partition or subscribed topic that appears later is read from its
earliest offset.

Where the reader is: pyspark 4.0's `latestOffset()` takes no arguments, so the reader must know its own
position to honour maxOffsetsPerTrigger. It remembers the end it last planned; after a restart (first call, no
position yet) it reads the position from the last file of `<checkpoint>/offsets/` (whose last line is this
source's offset JSON) — hence `ecomlake.checkpointLocation`. Without that option the first batch after a
(re)start is not capped (correct, just larger). With startingOffsets=latest the resolved start offsets are
also kept in the checkpoint, so a restart before the first batch commits replays the same range.

End offsets: some brokers misreport them. The embedded broker (Tansu) reports a partition's end as the start of
its last record batch + 1, so with a batching producer records past the reported end exist. The reader
therefore probes past the reported high watermark (a short fetch from there; the fetch response and the
end-of-partition event carry the true end), and every read task polls until the last offset of its planned
range has arrived, failing with a clear message after `ecomlake.readTimeoutMs` if records are missing.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Iterator, Mapping

from pyspark.sql.datasource import DataSource, DataSourceStreamReader, InputPartition

SOURCE_NAME = "ecomlake_kafka"
SCHEMA = (
    "key binary, value binary, topic string, partition int, offset bigint, timestamp timestamp, timestampType int"
)
EARLIEST, LATEST = -2, -1
ARROW_BATCH_ROWS = 20_000
SMALL_BATCH_RECORDS = 20_000
INITIAL_OFFSETS_FILE = "ecomlake_kafka_initial_offsets.json"

Offsets = dict  # {topic: {"partition": offset}}, canonical order: topics sorted, partitions numeric

log = logging.getLogger("ecomlake.kafka_source")


class KafkaSourceError(RuntimeError):
    """A problem the user must act on (missing records, lost broker data); its message is one line."""


# --- offsets ---------------------------------------------------------------------------------------------
def canonical(offsets: Mapping) -> Offsets:
    """The one serialisation of an offsets dict, so equal positions compare equal as JSON in Spark."""
    return {
        topic: {str(p): int(o) for p, o in sorted(parts.items(), key=lambda kv: int(kv[0]))}
        for topic, parts in sorted(offsets.items())
    }


def flatten(offsets: Mapping) -> dict[tuple[str, int], int]:
    return {(t, int(p)): int(o) for t, parts in offsets.items() for p, o in parts.items()}


def nest(flat: Mapping[tuple[str, int], int]) -> Offsets:
    out: dict = {}
    for (t, p), o in flat.items():
        out.setdefault(t, {})[str(p)] = o
    return canonical(out)


def parse_offsets_option(name: str, value: str) -> dict[tuple[str, int], int] | str:
    value = value.strip()
    if value in ("earliest", "latest"):
        return value
    try:
        data = json.loads(value)
        return flatten(data)
    except (ValueError, AttributeError, TypeError):
        raise KafkaSourceError(
            f"{name}={value!r}: use earliest, latest or JSON like {{\"topic\": {{\"0\": 42}}}}"
        ) from None


# --- checkpoint files (local paths, file://, or anything pyarrow.fs opens) ------------------------------
def _fs_and_path(uri: str):
    from pyarrow import fs

    if "://" not in uri:
        return fs.LocalFileSystem(), os.path.abspath(uri)
    if uri.startswith("file://"):
        return fs.LocalFileSystem(), uri[len("file://"):]
    if uri.startswith("s3a://"):
        uri = "s3://" + uri[len("s3a://"):]
        endpoint = os.environ.get("S3_ENDPOINT")
        if endpoint:
            bucket_path = uri[len("s3://"):]
            return fs.S3FileSystem(endpoint_override=endpoint), bucket_path
    return fs.FileSystem.from_uri(uri)


def read_text(uri: str) -> str | None:
    """A small file's text, or None when it does not exist."""
    from pyarrow import fs

    filesystem, path = _fs_and_path(uri)
    if filesystem.get_file_info(path).type != fs.FileType.File:
        return None
    with filesystem.open_input_stream(path) as stream:
        return stream.read().decode("utf-8")


def write_text(uri: str, text: str) -> None:
    filesystem, path = _fs_and_path(uri)
    filesystem.create_dir(os.path.dirname(path), recursive=True)
    with filesystem.open_output_stream(path) as stream:
        stream.write(text.encode("utf-8"))


def _batch_ids(uri: str) -> list[int]:
    from pyarrow import fs

    filesystem, path = _fs_and_path(uri)
    if filesystem.get_file_info(path).type != fs.FileType.Directory:
        return []
    infos = filesystem.get_file_info(fs.FileSelector(path))
    return sorted(int(i.base_name) for i in infos if i.base_name.isdigit())


def checkpoint_offsets(checkpoint: str, batch_id: int | None = None) -> tuple[int, Offsets] | None:
    """(batch id, source offsets) from the query's offsets log: batch `batch_id`, default the latest planned."""
    ids = _batch_ids(f"{checkpoint}/offsets")
    if batch_id is None:
        if not ids:
            return None
        batch_id = ids[-1]
    text = read_text(f"{checkpoint}/offsets/{batch_id}")
    if text is None:
        return None
    return batch_id, canonical(json.loads(text.strip().splitlines()[-1]))


def committed_offsets(checkpoint: str) -> tuple[int, Offsets] | None:
    """(batch id, source offsets) of the last batch the query committed, or None before the first commit."""
    ids = _batch_ids(f"{checkpoint}/commits")
    return checkpoint_offsets(checkpoint, ids[-1]) if ids else None


# --- broker access ---------------------------------------------------------------------------------------
def consumer_config(bootstrap: str, extra: Mapping[str, str] | None = None, **overrides) -> dict:
    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": "ecomlake-kafka-source",  # never joined: partitions are assign()ed, nothing is committed
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "error",
        "socket.connection.setup.timeout.ms": 5000,
        "log_level": 2,
    }
    conf.update(extra or {})
    conf.update(overrides)
    return conf


class BrokerView:
    """Driver-side metadata: partitions of the subscribed topics and their true end offsets."""

    def __init__(self, bootstrap: str, extra: Mapping[str, str] | None = None, timeout_s: float = 10.0):
        from confluent_kafka import Consumer

        self.timeout_s = timeout_s
        self.unconfirmed: set[tuple[str, int]] = set()
        self.consumer = Consumer(consumer_config(
            bootstrap, extra, **{"enable.partition.eof": True}
        ))

    def close(self) -> None:
        self.consumer.close()

    def partitions(self, topics: list[str]) -> tuple[list[tuple[str, int]], list[str]]:
        """(topic, partition) pairs of the topics that exist, and the names of those that do not."""
        meta = self.consumer.list_topics(timeout=self.timeout_s)
        found, missing = [], []
        for topic in topics:
            tm = meta.topics.get(topic)
            if tm is None or tm.error is not None:
                missing.append(topic)
            else:
                found.extend((topic, p) for p in sorted(tm.partitions))
        return found, missing

    def earliest(self, tps: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        from confluent_kafka import TopicPartition

        return {
            (t, p): self.consumer.get_watermark_offsets(TopicPartition(t, p), timeout=self.timeout_s)[0]
            for t, p in tps
        }

    def reported_latest(self, tps: list[tuple[str, int]]) -> dict[tuple[str, int], tuple[int, int]]:
        """(low, high) watermarks as the broker reports them (the high one may be short, see latest())."""
        from confluent_kafka import TopicPartition

        return {
            (t, p): self.consumer.get_watermark_offsets(TopicPartition(t, p), timeout=self.timeout_s) for t, p in tps
        }

    def latest(self, tps: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """True end offsets. The reported high watermark is checked by fetching the record just below it: the
        fetch response carries the broker's real high watermark (and the rest of that record batch)."""
        from confluent_kafka import KafkaError, TopicPartition

        if not tps:
            return {}
        reported = self.reported_latest(tps)
        ends = {tp: hi for tp, (lo, hi) in reported.items()}
        pending = {tp for tp, (lo, hi) in reported.items() if hi > lo}  # an empty report means an empty partition
        if not pending:
            self.unconfirmed = set()
            return ends
        self.consumer.assign([TopicPartition(t, p, reported[(t, p)][1] - 1) for t, p in pending])
        fetched = set()
        deadline = time.monotonic() + self.timeout_s
        try:
            while pending and time.monotonic() < deadline:
                for msg in self.consumer.consume(num_messages=10_000, timeout=0.05):
                    tp = (msg.topic(), msg.partition())
                    err = msg.error()
                    if err is None:
                        ends[tp] = max(ends[tp], msg.offset() + 1)
                        fetched.add(tp)
                    elif err.code() == KafkaError._PARTITION_EOF:
                        ends[tp] = max(ends[tp], msg.offset())
                    elif not err.retriable():
                        raise KafkaSourceError(f"probing end offsets of {tp[0]}/{tp[1]}: {err.str()}")
                    else:
                        continue
                    pending.discard(tp)
            for t, p in fetched:
                ends[(t, p)] = max(ends[(t, p)], self.consumer.get_watermark_offsets(TopicPartition(t, p), cached=True)[1])
        finally:
            self.consumer.unassign()
        self.unconfirmed = pending
        if pending:
            log.warning("end offsets of %s not confirmed within %.0fs; using the broker's report", sorted(pending),
                        self.timeout_s)
        return ends


# --- the data source -------------------------------------------------------------------------------------
@dataclass
class SourceOptions:
    bootstrap: str
    topics: list[str]
    starting: object = "latest"
    ending: dict[tuple[str, int], int] | None = None
    max_offsets: int | None = None
    checkpoint: str | None = None
    read_timeout_s: float = 60.0
    kafka_conf: dict = field(default_factory=dict)

    @classmethod
    def parse(cls, options: Mapping[str, str]) -> "SourceOptions":
        opts = {k.lower(): v for k, v in options.items()}
        bootstrap = opts.get("kafka.bootstrap.servers", "").strip()
        topics = [t.strip() for t in opts.get("subscribe", "").split(",") if t.strip()]
        if not bootstrap:
            raise KafkaSourceError("option kafka.bootstrap.servers is required")
        if not topics:
            raise KafkaSourceError("option subscribe (comma-separated topics) is required")
        for unsupported in ("assign", "subscribepattern"):
            if unsupported in opts:
                raise KafkaSourceError(f"option {unsupported} is not supported by {SOURCE_NAME}; use subscribe")
        max_offsets = opts.get("maxoffsetspertrigger")
        ending = opts.get("ecomlake.endingoffsets")
        if ending is not None:
            ending = parse_offsets_option("ecomlake.endingOffsets", ending)
            if isinstance(ending, str):
                raise KafkaSourceError("ecomlake.endingOffsets must be JSON offsets")
        kafka_conf = {
            k[len("kafka."):]: v for k, v in opts.items()
            if k.startswith("kafka.") and k != "kafka.bootstrap.servers"
        }
        return cls(
            bootstrap=bootstrap,
            topics=topics,
            starting=parse_offsets_option("startingOffsets", opts.get("startingoffsets", "latest")),
            ending=ending,
            max_offsets=int(max_offsets) if max_offsets else None,
            checkpoint=opts.get("ecomlake.checkpointlocation") or None,
            read_timeout_s=int(opts.get("ecomlake.readtimeoutms", "60000")) / 1000.0,
            kafka_conf=kafka_conf,
        )


class KafkaDataSource(DataSource):
    """Kafka topics as a Spark stream, with the columns and option names of Spark's built-in Kafka source."""

    @classmethod
    def name(cls) -> str:
        return SOURCE_NAME

    def schema(self) -> str:
        return SCHEMA

    def streamReader(self, schema) -> "KafkaStreamReader":
        return KafkaStreamReader(SourceOptions.parse(self.options))


@dataclass(frozen=True)
class KafkaTask(InputPartition):
    """One Spark task: offset ranges [start, end) of one or more Kafka partitions, read by one consumer."""

    ranges: tuple  # ((topic, partition, start, end), ...)
    bootstrap: str
    read_timeout_s: float
    kafka_conf: tuple = ()


def plan_tasks(ranges: list[tuple[str, int, int, int]], small: int = SMALL_BATCH_RECORDS) -> list[tuple]:
    """A small batch is one task (one consumer, one fetch for all partitions: less per-batch overhead); a larger
    one gets a task per partition, read in parallel."""
    if sum(end - start for _, _, start, end in ranges) <= small:
        return [tuple(ranges)] if ranges else []
    return [(r,) for r in ranges]


def lost_data(tp: tuple[str, int], end: int, position: int, checkpoint: str | None) -> str:
    return (
        f"{tp[0]}/{tp[1]} ends at offset {end} on the broker but the query already read up to {position}: the broker "
        f"lost data (the embedded broker keeps data in memory only). Delete the query's checkpoint"
        f"{' ' + checkpoint if checkpoint else ''} (and its table, to keep offsets unique) to start over"
    )


def split_budget(backlog: dict[tuple[str, int], int], limit: int) -> dict[tuple[str, int], int]:
    """Records to take from each partition: all of them if they fit in `limit`, else shares proportional to the
    backlog that add up to exactly `limit`."""
    total = sum(backlog.values())
    if total <= limit:
        return dict(backlog)
    take = {tp: (limit * n) // total for tp, n in backlog.items()}
    left = limit - sum(take.values())
    for tp in sorted(backlog, key=lambda tp: backlog[tp] - take[tp], reverse=True):
        if left == 0:
            break
        if take[tp] < backlog[tp]:
            take[tp] += 1
            left -= 1
    return take


class KafkaStreamReader(DataSourceStreamReader):
    """Lives in Spark's planner process for the whole query: plans offset ranges; read() runs in tasks."""

    def __init__(self, options: SourceOptions):
        self.opts = options
        self._view: BrokerView | None = None
        self._initial: dict[tuple[str, int], int] | None = None
        self._position: dict[tuple[str, int], int] | None = None
        self._warned_missing: set[str] = set()

    @property
    def view(self) -> BrokerView:
        if self._view is None:
            self._view = BrokerView(self.opts.bootstrap, self.opts.kafka_conf)
        return self._view

    def _partitions(self) -> list[tuple[str, int]]:
        tps, missing = self.view.partitions(self.opts.topics)
        for topic in set(missing) - self._warned_missing:
            log.warning("topic %s does not exist yet; it will be read from its earliest offset once it does", topic)
        self._warned_missing = set(missing)
        return tps

    def _resolve(self, spec, tps: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        earliest = self.view.earliest(tps)
        if spec == "earliest":
            return earliest
        if spec == "latest":
            return self.view.latest(tps)
        latest = self.view.latest(tps) if LATEST in spec.values() else {}
        out = {}
        for tp in tps:
            wanted = spec.get(tp, EARLIEST)
            out[tp] = earliest[tp] if wanted == EARLIEST else latest[tp] if wanted == LATEST else wanted
        return out

    def initialOffset(self) -> dict:
        if self._initial is None:
            saved_uri = f"{self.opts.checkpoint}/sources/{INITIAL_OFFSETS_FILE}" if self.opts.checkpoint else None
            saved = read_text(saved_uri) if saved_uri else None
            if saved:
                self._initial = flatten(json.loads(saved))
            else:
                self._initial = self._resolve(self.opts.starting, self._partitions())
                if saved_uri and self.opts.starting != "earliest":
                    write_text(saved_uri, json.dumps(nest(self._initial)))
        return nest(self._initial)

    def _recover_position(self) -> dict[tuple[str, int], int] | None:
        if self.opts.checkpoint:
            found = checkpoint_offsets(self.opts.checkpoint)
            if found is not None:
                return flatten(found[1])
            if not _batch_ids(f"{self.opts.checkpoint}/commits"):
                return flatten(self.initialOffset())
        return None

    def latestOffset(self) -> dict:
        position = self._position
        if position is None:
            position = self._recover_position()
        tps = self._partitions()
        ends = self.view.latest(tps)
        known = dict(position) if position is not None else {}
        new = [tp for tp in tps if tp not in known]
        known.update(self.view.earliest(new) if new else {})
        for tp, end in ends.items():
            if end < known[tp] and tp in self.view.unconfirmed:
                ends[tp] = known[tp]
            elif end < known[tp]:
                raise KafkaSourceError(lost_data(tp, end, known[tp], self.opts.checkpoint))
        target = dict(ends)
        if self.opts.ending is not None:
            target = {tp: min(end, self.opts.ending.get(tp, known[tp])) for tp, end in target.items()}
            target = {tp: max(end, known[tp]) for tp, end in target.items()}
        if self.opts.max_offsets and position is not None:
            take = split_budget({tp: target[tp] - known[tp] for tp in target}, self.opts.max_offsets)
            target = {tp: known[tp] + n for tp, n in take.items()}
        for tp, offset in known.items():
            target.setdefault(tp, offset)
        self._position = target
        return nest(target)

    def partitions(self, start: dict, end: dict) -> list[KafkaTask]:
        begin, stop = flatten(start), flatten(end)
        self._position = dict(stop)
        unknown = [tp for tp in stop if tp not in begin]
        if unknown:
            begin.update(self.view.earliest(unknown))
        conf = tuple(sorted(self.opts.kafka_conf.items()))
        ranges = [(t, p, begin[(t, p)], e) for (t, p), e in sorted(stop.items()) if e > begin[(t, p)]]
        return [KafkaTask(group, self.opts.bootstrap, self.opts.read_timeout_s, conf) for group in plan_tasks(ranges)]

    def read(self, partition: KafkaTask) -> Iterator:
        return read_task(partition)

    def commit(self, end: dict) -> None:
        """Nothing to do: progress lives in Spark's checkpoint, never in Kafka."""

    def stop(self) -> None:
        if self._view is not None:
            self._view.close()
            self._view = None


def _arrow_schema():
    import pyarrow as pa

    return pa.schema([
        ("key", pa.binary()), ("value", pa.binary()), ("topic", pa.string()), ("partition", pa.int32()),
        ("offset", pa.int64()), ("timestamp", pa.timestamp("us", tz="UTC")), ("timestampType", pa.int32()),
    ])


def read_task(task: KafkaTask) -> Iterator:
    """Every record of the task's ranges as Arrow record batches. Polls until each range's last offset arrived
    (the broker's own end report is not trusted); fails clearly when planned records never arrive."""
    import pyarrow as pa
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    schema = _arrow_schema()
    end = {(t, p): e for t, p, _, e in task.ranges}
    next_offset = {(t, p): s for t, p, s, _ in task.ranges}
    pending = {tp for tp in end if next_offset[tp] < end[tp]}
    consumer = Consumer(consumer_config(task.bootstrap, dict(task.kafka_conf)))
    consumer.assign([TopicPartition(t, p, next_offset[(t, p)]) for t, p in pending])
    keys, values, topics, partitions, offsets, stamps, types = [], [], [], [], [], [], []
    columns = (keys, values, topics, partitions, offsets, stamps, types)

    def flush():
        batch = pa.RecordBatch.from_arrays([
            pa.array(keys, pa.binary()), pa.array(values, pa.binary()), pa.array(topics, pa.string()),
            pa.array(partitions, pa.int32()), pa.array(offsets, pa.int64()),
            pa.array(stamps, pa.int64()).cast(pa.timestamp("us", tz="UTC")), pa.array(types, pa.int32()),
        ], schema=schema)
        for column in columns:
            column.clear()
        return batch

    def finished(done: list[tuple[str, int]]) -> None:
        pending.difference_update(done)
        consumer.pause([TopicPartition(t, p) for t, p in done])

    last_progress = time.monotonic()
    try:
        while pending:
            wanted = sum(end[tp] - next_offset[tp] for tp in pending)
            msgs = consumer.consume(num_messages=max(1, min(10_000, wanted)), timeout=0.5)
            done = []
            for msg in msgs:
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF or err.retriable():
                        continue
                    raise KafkaSourceError(f"reading {msg.topic()}/{msg.partition()}: {err.str()}")
                tp = (msg.topic(), msg.partition())
                offset = msg.offset()
                if tp not in pending or offset < next_offset[tp]:
                    continue
                if offset >= end[tp]:
                    done.append(tp)
                    continue
                ts_type, ts_ms = msg.timestamp()
                keys.append(msg.key())
                values.append(msg.value())
                topics.append(tp[0])
                partitions.append(tp[1])
                offsets.append(offset)
                stamps.append(ts_ms * 1000 if ts_type else None)
                types.append(ts_type - 1 if ts_type else -1)  # Kafka's ids: CreateTime 0, LogAppendTime 1
                next_offset[tp] = offset + 1
                if offset + 1 >= end[tp]:
                    done.append(tp)
                last_progress = time.monotonic()
            finished(done)
            if len(offsets) >= ARROW_BATCH_ROWS:
                yield flush()
            if pending and not msgs:
                positions = consumer.position([TopicPartition(t, p) for t, p in pending])
                # The rest of a range may hold no records (transaction markers, compacted away).
                finished([(tp.topic, tp.partition) for tp in positions if tp.offset >= end[(tp.topic, tp.partition)]])
                if pending and time.monotonic() - last_progress > task.read_timeout_s:
                    missing = ", ".join(f"{t}/{p} [{next_offset[(t, p)]}, {end[(t, p)]})" for t, p in sorted(pending))
                    raise KafkaSourceError(
                        f"offsets {missing} were planned but did not arrive within {task.read_timeout_s:.0f}s; the "
                        "broker no longer has them (restarted, or retention)"
                    )
        if offsets:
            yield flush()
    finally:
        consumer.close()


def register(spark) -> None:
    """Make `format("ecomlake_kafka")` available in this Spark session."""
    spark.dataSource.register(KafkaDataSource)
