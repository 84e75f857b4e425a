"""The broker bronze reads, probed three ways: reachable at start (wait_for_broker, check_topics), still the one the
checkpoints read from (check_same_broker), and still there while the queries run (BrokerWatchdog)."""

from __future__ import annotations

import base64
import logging
import time

from ecomlake.errors import EcomlakeError
from ecomlake.settings import Settings
from streaming import checkpoint_log
from streaming.batch_writer import LagMonitor
from streaming.bronze_table import BronzeTable
from streaming.incarnations import incarnation
from streaming.kafka_client import BrokerView, records_at
from streaming.offsets import flatten, lost_data

log = logging.getLogger("ecomlake.bronze")

DEFAULT_CONNECT_TIMEOUT_S = 30.0


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


def check_same_broker(settings: Settings, bronze: BronzeTable, engine, monitor: LagMonitor) -> None:
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
        earliest = monitor.open_view.earliest(list(last))
        ends = monitor.open_view.latest(list(last))
        for tp, offset in last.items():
            if ends[tp] <= offset:
                raise EcomlakeError(lost_data(tp, ends[tp], offset + 1, bronze.checkpoint))
        checkable = {tp: offset for tp, offset in last.items() if earliest[tp] <= offset}
        on_broker = records_at(monitor.open_view, checkable)
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
