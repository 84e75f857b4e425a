"""What the soak's topics really hold, read record by record from the earliest offset to each partition's end.

Watermarks are not a message count: Tansu reports a partition's latest offset as the start of its last record
batch + 1 (6 of 1,500 messages after a batching producer; docs/stages.md, Bronze), and on Apache Kafka control records
(transaction markers) take offsets too. So every record is read and counted, and its payload hashed the way the
generator's manifest hashes what was delivered: the count, the digest and the number of repeated payloads
(redeliveries) are then checked against the manifest independently of bronze.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from ecomlake.errors import EcomlakeError

READ_TIMEOUT_S = 120.0


@dataclass
class TopicTally:
    """One topic's records: how many, how many repeat an earlier payload byte for byte, and the payload digest."""

    messages: int = 0
    repeated: int = 0
    digest_sum: int = 0
    seen: set[bytes] = field(default_factory=set, repr=False)

    @property
    def digest(self) -> str:
        """As generator.manifest.value_digest: order-independent, sum of sha256 mod 2^256."""
        return f"{self.digest_sum:064x}"


def tally(records: Iterable[tuple[str, bytes | None]], topics: Iterable[str] = ()) -> dict[str, TopicTally]:
    """Per topic tallies of (topic, value) records; every topic in `topics` appears, even with no records."""
    out = {topic: TopicTally() for topic in topics}
    for topic, value in records:
        sha = hashlib.sha256(value or b"").digest()
        t = out.setdefault(topic, TopicTally())
        t.messages += 1
        t.digest_sum = (t.digest_sum + int.from_bytes(sha, "big")) % (1 << 256)
        if sha in t.seen:
            t.repeated += 1
        else:
            t.seen.add(sha)
    return out


def read_records(bootstrap: str, topics: Iterable[str],
                 timeout_s: float = READ_TIMEOUT_S) -> Iterator[tuple[str, bytes | None]]:
    """(topic, value) of every record of `topics`, from the earliest offset until each partition reports its end
    (the end a fetch response carries, which is the real one on Tansu too). Assign-only: no group is joined."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    from streaming.kafka_client import position_of

    topics = list(topics)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "ecomlake-soak-tally", "enable.auto.commit": False,
                         "enable.partition.eof": True, "auto.offset.reset": "earliest", "log_level": 0})
    try:
        meta = consumer.list_topics(timeout=10)
        missing = [t for t in topics if t not in meta.topics or meta.topics[t].error is not None]
        if missing:
            raise EcomlakeError(f"Kafka at {bootstrap} has no topic {', '.join(missing)}")
        pending = {(t, p) for t in topics for p in meta.topics[t].partitions}
        consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in sorted(pending)])
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise EcomlakeError(f"reading Kafka at {bootstrap}: no end reached within {timeout_s:.0f}s on "
                                    + ", ".join(f"{t}/{p}" for t, p in sorted(pending)))
            for msg in consumer.consume(num_messages=10_000, timeout=0.5):
                err = msg.error()
                tp, _ = position_of(msg)
                if err is None:
                    yield tp[0], msg.value()
                elif err.code() == KafkaError._PARTITION_EOF:
                    pending.discard(tp)
                elif not err.retriable():
                    raise EcomlakeError(f"reading Kafka at {bootstrap}: {err.str()}")
    finally:
        consumer.close()


def kafka_tally(bootstrap: str, topics: Iterable[str], timeout_s: float = READ_TIMEOUT_S) -> dict[str, TopicTally]:
    topics = list(topics)
    return tally(read_records(bootstrap, topics, timeout_s), topics)
