"""Publishing: topics, producer settings per stack, pacing, progress, interruption. Every record handed to the
producer ends up either in the manifest (delivered) or in the failure count (reported), never lost silently."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Iterable

from ecomlake.errors import EcomlakeError
from ecomlake.settings import Settings
from generator.events import Record, generate_records, parse_start
from generator.manifest import Manifest, write

CONNECT_TIMEOUT_S = 8.0
FLUSH_TIMEOUT_S = 30.0
EMBEDDED_LINGER_MS = 500  # at most this much added to publish -> bronze (half on average); bronze triggers every 2 s
MAX_BACKLOG_S = 1.0  # pacing: a producer that fell behind catches up at most this much (a token bucket's depth)


def producer_config(settings: Settings) -> dict:
    """Real Kafka: durable, idempotent, batched. Embedded Tansu: batched too when the python source reads it (that
    source reads past Tansu's end-offset quirk, docs/stages.md); one record per batch for Spark's Kafka source, which
    stops at the end Tansu reports and would miss the rest of a partition's last batch.

    Batching matters on Tansu: its in-memory store's work per request grows with the number of batches a partition
    holds. At 1,000 events/s with bronze reading, one record per batch had Tansu's CPU climb towards a whole core
    within minutes, CPU that the 2-core laptop's silver needed. Batched every 50 ms it still climbed, from 0.05 to
    0.6 of a core over 30 minutes, most of the pipeline's slowdown in that run; every 500 ms (EMBEDDED_LINGER_MS) a
    partition gets ten times fewer batches (docs/benchmarks.md#design-measurements). The count still grows with the
    topic, which Tansu's memory store keeps whole (it has no retention here), so a run of days needs `KAFKA_BROKER=kafka`."""
    common = {
        "bootstrap.servers": settings.kafka_bootstrap,
        "client.id": "ecomlake-generator",
        "partitioner": "murmur2_random",  # the Java clients' partitioner: same key, same partition everywhere
        "message.timeout.ms": int(FLUSH_TIMEOUT_S * 1000),
        "log_level": 0,
    }
    if settings.broker == "embedded":
        if settings.kafka_source == "python":
            return {**common, "linger.ms": EMBEDDED_LINGER_MS, "acks": "all"}
        return {**common, "batch.num.messages": 1, "linger.ms": 0, "acks": "all"}
    return {**common, "acks": "all", "enable.idempotence": True, "linger.ms": 20, "compression.type": "lz4"}


def admin_client(settings: Settings, **extra):
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": settings.kafka_bootstrap, "socket.connection.setup.timeout.ms": 3000,
                        "log_level": 0, **extra})


def check_reachable(settings: Settings, timeout_s: float = CONNECT_TIMEOUT_S):
    """Fail fast with one line when nothing answers at KAFKA_BOOTSTRAP: after `timeout_s`, or after 3 s when every
    broker already refused the connection. Returns the cluster metadata."""
    from confluent_kafka import KafkaError, KafkaException

    refused: list[bool] = []
    admin = admin_client(settings, error_cb=lambda err: refused.append(err.code() == KafkaError._ALL_BROKERS_DOWN))
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < timeout_s:
        try:
            return admin.list_topics(timeout=min(1.0, timeout_s - elapsed))
        except KafkaException:
            admin.poll(0)
            if any(refused) and time.monotonic() - started >= 3.0:
                break
    hint = " (start the embedded one: `ecomlake broker start`)" if settings.broker == "embedded" else ""
    raise EcomlakeError(
        f"no Kafka broker answered at KAFKA_BOOTSTRAP={settings.kafka_bootstrap} within "
        f"{time.monotonic() - started:.0f}s{hint}"
    )


def ensure_topics(settings: Settings, timeout_s: float = 15.0) -> None:
    """Create the order and payment topics (TOPIC_PARTITIONS partitions) unless they exist; wait until they do."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import NewTopic

    admin = admin_client(settings)
    existing = check_reachable(settings).topics
    missing = [t for t in settings.topics if t not in existing]
    if missing:
        replication = 1 if settings.broker == "embedded" else -1
        futures = admin.create_topics([NewTopic(t, settings.topic_partitions, replication) for t in missing],
                                      operation_timeout=timeout_s)
        for topic, future in futures.items():
            try:
                future.result(timeout=timeout_s)
            except KafkaException as err:
                if err.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise EcomlakeError(f"cannot create topic {topic!r}: {err.args[0].str()}") from None
    deadline = time.monotonic() + timeout_s
    while True:
        topics = admin.list_topics(timeout=timeout_s).topics
        if all(t in topics and topics[t].partitions and not topics[t].error for t in settings.topics):
            return
        if time.monotonic() > deadline:
            raise EcomlakeError(f"topics {', '.join(settings.topics)} did not become available within {timeout_s:.0f}s")
        time.sleep(0.1)


@dataclass
class RunResult:
    manifest: dict
    produced: int = 0
    delivered: int = 0
    failed: int = 0
    elapsed_s: float = 0.0
    stopped_by: str | None = None  # "SIGINT" | "SIGTERM" | "stop" (the caller's stop event) when cut short
    errors: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if self.stopped_by in ("SIGINT", "SIGTERM"):
            return 128 + int(getattr(signal, self.stopped_by))
        return 1 if self.failed else 0

    def summary(self) -> str:
        m = self.manifest
        by_topic = ", ".join(f"{t} {v['sent']}" for t, v in m["per_topic"].items())
        kinds = m["kinds"]
        notable = ", ".join(f"{k} {kinds[k]}" for k in (
            "orders", "order_cancels", "payments", "duplicates", "late", "early_payments", "split_payments",
            "retried_payments", "failed_payments", "refunds", "malformed_json", "missing_field", "wrong_type",
            "invalid_value", "extra_fields") if kinds.get(k))
        head = {None: "", "stop": "stopped on request: "}.get(self.stopped_by, f"interrupted by {self.stopped_by}: ")
        failed = f"; {self.failed} FAILED deliveries" if self.failed else ""
        return (f"{head}sent {m['sent']} events ({by_topic}) in {self.elapsed_s:.1f}s, "
                f"{m['events_per_s']:.0f} events/s{failed}; scenario {m['scenario']} seed {m['seed']} start {m['start']}: "
                f"{notable}")


class _Progress:
    """A rich progress bar on a terminal; a plain line every few seconds otherwise (logs, CI)."""

    PLAIN_EVERY_S = 5.0
    WINDOW_S = 2.0  # events/s shown over the last two seconds, so bursts are visible

    def __init__(self, enabled: bool, total_events: int | None, duration_s: float | None):
        self.enabled, self.total, self.duration = enabled, total_events, duration_s
        self.started = time.monotonic()
        self.last_plain = self.started
        self.window: deque[tuple[float, int]] = deque()
        self.bar = None
        if enabled and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("[bold]generate"), BarColumn(), TextColumn("{task.completed:>9,.0f} sent"),
                                TextColumn("{task.fields[rate]:>8,.0f} events/s"), TextColumn("{task.fields[failed]}"),
                                TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True),
                                refresh_per_second=8)
            self.task = self.bar.add_task("generate", total=total_events, rate=0.0, failed="")
            self.bar.start()

    def update(self, delivered: int, failed: int, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        self.window.append((now, delivered))
        while len(self.window) > 2 and now - self.window[0][0] > self.WINDOW_S:
            self.window.popleft()
        then, before = self.window[0]
        rate = (delivered - before) / (now - then) if now - then > 0.2 else delivered / max(now - self.started, 1e-9)
        if self.bar is not None:
            done = delivered if self.total else min(now - self.started, self.duration or 0)
            if not self.total and self.duration:
                self.bar.update(self.task, total=self.duration)
            self.bar.update(self.task, completed=done if self.total else delivered, rate=rate,
                            failed=f"[red]{failed} failed" if failed else "")
        elif force or now - self.last_plain >= self.PLAIN_EVERY_S:
            self.last_plain = now
            goal = f"/{self.total}" if self.total else ""
            print(f"generate: {delivered}{goal} events sent, {rate:,.0f} events/s, {failed} failed, "
                  f"{now - self.started:.0f}s", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


class _StopSignals:
    """First SIGINT/SIGTERM sets `stop` (the loop ends, then flush, manifest, summary); a second one aborts."""

    def __init__(self, stop: threading.Event):
        self.stop = stop
        self.received: str | None = None
        self.previous: dict = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.received:
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name
        self.stop.set()

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def _keep_error(errors: list[str], err) -> None:
    text = err if isinstance(err, str) else err.str()
    if len(errors) < 20 and text not in errors:
        errors.append(text)


def publish(settings: Settings, records: Iterable[Record], manifest: Manifest, *, rate: float = 0.0,
            events: int | None = None, duration_s: float | None = None, progress: bool = False,
            stop: threading.Event | None = None, live: RunResult | None = None) -> RunResult:
    """Produce `records` until `events` are sent, `duration_s` has passed, a stop signal arrives (main thread) or
    `stop` is set (any thread). `live`, when given, is the RunResult updated as deliveries are confirmed."""
    from confluent_kafka import Producer

    result = live if live is not None else RunResult(manifest={})
    stop = stop or threading.Event()
    producer = Producer({**producer_config(settings), "error_cb": partial(_keep_error, result.errors)})

    def delivered(record: Record, err, msg) -> None:
        if err is None:
            result.delivered += 1
            manifest.add(record)
        else:
            result.failed += 1
            _keep_error(result.errors, f"{record.topic}: {err.str()}")

    bar = _Progress(progress, events, duration_s)
    if progress and not sys.stderr.isatty():
        print(f"generate: publishing to {', '.join(settings.topics)} at {settings.kafka_bootstrap}"
              f"{f', {rate:g} events/s' if rate else ', as fast as possible'}", file=sys.stderr, flush=True)
    started = time.monotonic()
    base = started
    with _StopSignals(stop) as signals:
        try:
            for record in records:
                if stop.is_set() or result.failed or (events is not None and result.produced >= events):
                    break  # a failed delivery means the broker is gone or refusing: stop, flush, report
                now = time.monotonic()
                if duration_s is not None and now - started >= duration_s:
                    break
                if rate:
                    due = base + record.at
                    if now - due > MAX_BACKLOG_S:
                        base += now - due - MAX_BACKLOG_S
                    while (wait := base + record.at - time.monotonic()) > 0 and not (stop.is_set() or result.failed):
                        if wait < 0.002:  # poll() rounds to whole milliseconds: below that it would spin
                            time.sleep(wait)
                        else:
                            producer.poll(min(wait, 0.05))
                    if stop.is_set() or result.failed:
                        break
                while True:
                    try:
                        producer.produce(record.topic, key=record.key, value=record.value,
                                         on_delivery=partial(delivered, record))
                        break
                    except BufferError:
                        producer.poll(0.05)
                result.produced += 1
                producer.poll(0)
                bar.update(result.delivered, result.failed)
        finally:
            remaining = producer.flush(FLUSH_TIMEOUT_S)
            if remaining:
                result.failed += remaining
                result.errors.append(f"{remaining} records still unconfirmed after {FLUSH_TIMEOUT_S:.0f}s")
            bar.update(result.delivered, result.failed, force=True)
            bar.close()
    result.stopped_by = signals.received or ("stop" if stop.is_set() else None)
    result.elapsed_s = time.monotonic() - started
    result.manifest = manifest.to_dict(
        interrupted=result.stopped_by is not None, delivery_failures=result.failed, elapsed_s=round(result.elapsed_s, 3),
        events_per_s=round(result.delivered / result.elapsed_s, 1) if result.elapsed_s > 0 else 0.0,
    )
    return result


def generate(settings: Settings, *, events: int | None = None, duration_s: float | None = None, rate: float = 0.0,
             scenario: str = "steady", seed: int = 0, start=None, manifest_path=None, progress: bool = False,
             stop: threading.Event | None = None, live: RunResult | None = None) -> RunResult:
    """Check the broker, create the topics, publish one scenario run and (optionally) write its manifest.
    For a background thread: set `stop` to end the run early; read `live` (a RunResult) for running counts."""
    if events is None and duration_s is None:
        raise ValueError("give events or duration_s")
    start_at = parse_start(start)
    if manifest_path:
        _check_writable(Path(manifest_path))
    ensure_topics(settings)
    manifest = Manifest(scenario=scenario, seed=seed, start_ms=int(start_at.timestamp() * 1000), rate=rate,
                        topics=settings.topics, bootstrap=settings.kafka_bootstrap, requested_events=events,
                        requested_duration_s=duration_s)
    records = generate_records(scenario, seed, start_at, rate, settings.topics)
    result = publish(settings, records, manifest, rate=rate, events=events, duration_s=duration_s, progress=progress,
                     stop=stop, live=live)
    if manifest_path:
        write(result.manifest, manifest_path)
    return result


def _check_writable(path: Path) -> None:
    """Refuse before publishing rather than lose the manifest of a finished run."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise EcomlakeError(f"cannot create the manifest's directory {path.parent}: {err.strerror}") from None
    if path.is_dir() or not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise EcomlakeError(f"cannot write the manifest to {path}")
