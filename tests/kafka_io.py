"""Kafka I/O for tests. `publish` sends generator records as the generator's producer would; `read_topics` reads
topics back: partitions assigned explicitly (no consumer-group join, slow on Tansu), read until
the expected count or a timeout, never stopping at the reported high watermark (Tansu's quirk, see docs/stages.md)."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from typing import Mapping

from reference import Message


def read_topics(bootstrap: str, expected: Mapping[str, int], timeout_s: float = 30.0, settle_s: float = 0.5) -> list[Message]:
    """All messages of the topics in `expected` ({topic: count}). Keeps reading `settle_s` after the counts are
    reached, so a topic holding more than expected shows up as extra messages rather than going unnoticed."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"test-reader-{uuid.uuid4().hex}", "enable.auto.commit": False,
        "enable.partition.eof": False, "log_level": 0,
    })
    try:
        assignment = []
        for topic in expected:
            meta = consumer.list_topics(topic, timeout=10).topics[topic]
            assignment += [TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(meta.partitions)]
        consumer.assign(assignment)
        out: list[Message] = []
        counts: Counter = Counter()
        deadline = time.monotonic() + timeout_s
        settle_until = None
        while time.monotonic() < (settle_until or deadline):
            for msg in consumer.consume(num_messages=1000, timeout=0.2):
                if msg.error():
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    raise RuntimeError(f"consume error: {msg.error()}")
                out.append(Message(msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value(), msg.timestamp()[1]))
                counts[msg.topic()] += 1
            if settle_until is None and all(counts[t] >= n for t, n in expected.items()):
                settle_until = time.monotonic() + settle_s
        return out
    finally:
        consumer.close()


def by_topic(messages: list[Message]) -> dict[str, list[Message]]:
    out: dict[str, list[Message]] = {}
    for m in messages:
        out.setdefault(m.topic, []).append(m)
    for msgs in out.values():
        msgs.sort(key=lambda m: (m.partition, m.offset))
    return out


def publish(settings, records) -> None:
    """Send generator records with the stack's producer settings; fails unless every record is confirmed."""
    from confluent_kafka import Producer

    from generator.publish import producer_config

    producer = Producer(producer_config(settings))
    for r in records:
        producer.produce(r.topic, key=r.key, value=r.value)
        producer.poll(0)
    assert producer.flush(30) == 0
