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
import time
from dataclasses import dataclass, field
from typing import Iterator, Mapping

from pyspark.sql.datasource import DataSource, DataSourceStreamReader, InputPartition

from streaming.checkpoint_log import batch_ids, checkpoint_offsets, read_text, write_text
from streaming.kafka_client import BrokerView, consumer_config, position_of
from streaming.offsets import (
    EARLIEST,
    LATEST,
    KafkaSourceError,
    flatten,
    lost_data,
    nest,
    parse_offsets_option,
    split_budget,
)

SOURCE_NAME = "ecomlake_kafka"
SCHEMA = (
    "key binary, value binary, topic string, partition int, offset bigint, timestamp timestamp, timestampType int"
)
ARROW_BATCH_ROWS = 20_000
SMALL_BATCH_RECORDS = 20_000
INITIAL_OFFSETS_FILE = "ecomlake_kafka_initial_offsets.json"

log = logging.getLogger("ecomlake.kafka_source")


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
        ending_option = opts.get("ecomlake.endingoffsets")
        ending = None if ending_option is None else parse_offsets_option("ecomlake.endingOffsets", ending_option)
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
            if not batch_ids(f"{self.opts.checkpoint}/commits"):
                return flatten(self.initialOffset())
        return None

    def latestOffset(self) -> dict:
        from confluent_kafka import KafkaException

        try:
            return self._latest_offset()
        except KafkaException as err:
            raise KafkaSourceError(
                f"Kafka broker at {self.opts.bootstrap} is not reachable ({err.args[0].str() if err.args else err})"
            ) from None

    def _latest_offset(self) -> dict:
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

    # Spark hands back the partitions planned above: always KafkaTasks (its API types them InputPartition).
    def read(self, partition: KafkaTask) -> Iterator:  # type: ignore[override]
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
    keys: list[bytes | None] = []
    values: list[bytes | None] = []
    topics: list[str] = []
    partitions: list[int] = []
    offsets: list[int] = []
    stamps: list[int | None] = []
    types: list[int] = []
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
                tp, offset = position_of(msg)
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
