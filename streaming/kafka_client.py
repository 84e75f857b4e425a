"""The Kafka side of the Python source: consumer settings and the driver's view of partitions and end offsets.

Assign-only consumers: no consumer group is joined and nothing is committed to Kafka.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Mapping, cast

from streaming.offsets import KafkaSourceError

if TYPE_CHECKING:
    from confluent_kafka import Message

log = logging.getLogger("ecomlake.kafka_source")


def position_of(msg: Message) -> tuple[tuple[str, int], int]:
    """((topic, partition), offset) of a consumed record or end-of-partition event. confluent-kafka types them
    Optional for the errors of no partition (a broker down), which carry none and which callers tell by error()."""
    return (cast(str, msg.topic()), cast(int, msg.partition())), cast(int, msg.offset())


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
        found: list[tuple[str, int]] = []
        missing: list[str] = []
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
                    tp, offset = position_of(msg)
                    err = msg.error()
                    if err is None:
                        ends[tp] = max(ends[tp], offset + 1)
                        fetched.add(tp)
                    elif err.code() == KafkaError._PARTITION_EOF:
                        ends[tp] = max(ends[tp], offset)
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


def records_at(view: "BrokerView", coordinates: dict[tuple[str, int], int]) -> dict[tuple[str, int], tuple[int, bytes | None]]:
    """(timestamp ms, value) of the record at each (topic, partition) -> offset; a record the broker does not return
    within the view's timeout is left out."""
    from confluent_kafka import TopicPartition

    if not coordinates:
        return {}
    view.consumer.assign([TopicPartition(t, p, o) for (t, p), o in coordinates.items()])
    found: dict[tuple[str, int], tuple[int, bytes | None]] = {}
    deadline = time.monotonic() + view.timeout_s
    try:
        while len(found) < len(coordinates) and time.monotonic() < deadline:
            for msg in view.consumer.consume(num_messages=len(coordinates), timeout=0.1):
                tp, offset = position_of(msg)
                if msg.error() is None and coordinates.get(tp) == offset and tp not in found:
                    found[tp] = (msg.timestamp()[1], msg.value())
    finally:
        view.consumer.unassign()
    return found
