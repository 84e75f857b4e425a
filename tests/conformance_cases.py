"""The conformance cases of both seams, written once and run through every implementation present.

In the test process they run on the shared Spark session (delta-rs engine, python source). The official JVM
implementations need a session built with their jars, so the tests run them in a subprocess with its own
session:  python tests/conformance_cases.py lake delta-spark <workdir>
          python tests/conformance_cases.py source spark-kafka <workdir>     (KAFKA_BOOTSTRAP from the environment)
which prints one JSON object {case name: "ok" | failure text}.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import sys
import time
import traceback
import uuid
from decimal import Decimal
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ecomlake.settings import Settings

UTC = dt.timezone.utc


def _rows(df, *order):
    return sorted(tuple(r) for r in df.orderBy(*order).collect()) if order else sorted(tuple(r) for r in df.collect())


# --- lake engine cases -----------------------------------------------------------------------------------
def lake_idempotent_append(engine, spark, root: str) -> None:
    """The same (app_id, txn_version) twice is written once; versions and txn versions are reported."""
    uri = f"{root}/idempotent"
    assert not engine.exists(uri) and engine.version(uri) is None and engine.txn_version(uri, "app") is None
    first = spark.createDataFrame([(1, "a"), (2, "b")], "id bigint, v string")
    second = spark.createDataFrame([(3, "c")], "id bigint, v string")
    assert engine.append_batch(first, uri, "app", 0) is True
    assert engine.exists(uri) and engine.version(uri) == 0
    assert engine.append_batch(first, uri, "app", 0) is False, "a replayed batch was written again"
    assert engine.version(uri) == 0
    assert engine.txn_version(uri, "app") == 0 and engine.txn_version(uri, "other") is None
    assert engine.append_batch(second, uri, "app", 1) is True
    assert engine.append_batch(first, uri, "app", 0) is False, "an older batch was written after a newer one"
    assert engine.append_batch(second, uri, "other", 0) is True, "another app id must not be blocked"
    assert engine.txn_version(uri, "app") == 1 and engine.txn_version(uri, "other") == 0
    assert _rows(engine.read(uri)) == [(1, "a"), (2, "b"), (3, "c"), (3, "c")]


TYPES_DDL = (
    "id bigint, n int, amount decimal(18,2), price double, flag boolean, name string, payload binary, "
    "ts timestamp, items array<struct<sku:string,qty:int>>, attrs map<string,string>, event_date date"
)


def _typed_rows(ids):
    return [
        (i, i * 10, Decimal(f"{i}.25"), i / 3, i % 2 == 0, f"n-{i} é", bytes([i, 255, 0]),
         dt.datetime(2026, 11, 21, 10, 0, i, 123000, tzinfo=UTC), [(f"sku-{i}", i)], {"k": str(i)},
         dt.date(2026, 11, 20 + i % 2))
        for i in ids
    ]


def lake_read_round_trip_types(engine, spark, root: str) -> None:
    """Every column type survives a write and a read (also of an older version), partition column included."""
    uri = f"{root}/types"
    schema = spark.createDataFrame([], TYPES_DDL).schema
    engine.append_batch(spark.createDataFrame(_typed_rows([1, 2]), schema), uri, "t", 0, partition_by=["event_date"])
    engine.append_batch(spark.createDataFrame(_typed_rows([3]), schema), uri, "t", 1, partition_by=["event_date"])
    back = engine.read(uri)
    assert [(f.name, f.dataType) for f in back.schema] == [(f.name, f.dataType) for f in schema], back.schema
    got = sorted(back.collect(), key=lambda r: r.id)
    want = _typed_rows([1, 2, 3])
    assert len(got) == 3
    for row, expected in zip(got, want):
        as_tuple = tuple(row)
        assert as_tuple[:7] == expected[:7], (as_tuple, expected)
        assert row.ts.timestamp() == expected[7].timestamp(), (row.ts, expected[7])
        assert [tuple(x) for x in row.items] == expected[8] and row.attrs == expected[9]
        assert row.event_date == expected[10]
    assert sorted(r.id for r in engine.read(uri, version=0).collect()) == [1, 2]


def lake_changes_since(engine, spark, root: str) -> None:
    """Rows added after a version (up to `until`), none when nothing was added, all for None."""
    uri = f"{root}/changes"
    for version, ids in enumerate(([1, 2], [3], [4, 5])):
        engine.append_batch(spark.createDataFrame([(i,) for i in ids], "id bigint"), uri, "c", version)
    ids = lambda df: sorted(r.id for r in df.collect())  # noqa: E731
    assert ids(engine.changes_since(uri, 0)) == [3, 4, 5]
    assert ids(engine.changes_since(uri, 0, until=1)) == [3]
    assert ids(engine.changes_since(uri, None)) == [1, 2, 3, 4, 5]
    empty = engine.changes_since(uri, 2)
    assert ids(empty) == [] and empty.schema.fieldNames() == ["id"]


def lake_changes_since_across_optimize(engine, spark, root: str) -> None:
    """OPTIMIZE rewrites (dataChange=false) neither repeat nor lose rows in changes_since."""
    uri = f"{root}/compacted"
    for version in range(4):
        engine.append_batch(spark.createDataFrame([(version,)], "id bigint"), uri, "c", version)
    before = engine.version(uri)
    try:
        engine.optimize(uri)
    except NotImplementedError:
        return
    assert engine.version(uri) > before
    ids = lambda df: sorted(r.id for r in df.collect())  # noqa: E731
    assert ids(engine.changes_since(uri, before)) == []
    assert ids(engine.changes_since(uri, 1)) == [2, 3]
    assert ids(engine.read(uri)) == [0, 1, 2, 3]


def lake_merge_upsert(engine, spark, root: str) -> None:
    """Merge creates a missing (partitioned) table, then updates matched keys (only where the predicate holds)
    and inserts new ones."""
    uri = f"{root}/merged"
    ddl = "id bigint, seq int, v string, event_date date"
    day = dt.date(2026, 11, 21)
    first = spark.createDataFrame([(1, 1, "a", day), (2, 5, "b", day)], ddl)
    assert engine.merge(first, uri, ["id"], partition_by=["event_date"]) is True
    later = spark.createDataFrame([(1, 2, "a2", day + dt.timedelta(1)), (2, 4, "stale", day), (3, 1, "c", day)], ddl)
    assert engine.merge(later, uri, ["id"], partition_by=["event_date"],
                        when_matched_update="source.seq > target.seq") is True
    assert _rows(engine.read(uri)) == [(1, 2, "a2", day + dt.timedelta(1)), (2, 5, "b", day), (3, 1, "c", day)]
    assert engine.version(uri) == 1


def lake_merge_app_transaction(engine, spark, root: str) -> None:
    """A merge records (app_id, txn_version) in its commit, is skipped when replayed, and still records the
    version when it changes no row (so a consumed source batch is remembered)."""
    uri = f"{root}/merged-txn"
    rows = spark.createDataFrame([(1, "a")], "id bigint, v string")
    assert engine.merge(rows, uri, ["id"], app_id="silver:src", txn_version=3) is True
    assert engine.txn_version(uri, "silver:src") == 3 and engine.version(uri) == 0
    changed = spark.createDataFrame([(1, "b")], "id bigint, v string")
    assert engine.merge(changed, uri, ["id"], app_id="silver:src", txn_version=3) is False
    assert engine.merge(changed, uri, ["id"], app_id="silver:src", txn_version=2) is False
    assert engine.version(uri) == 0 and _rows(engine.read(uri)) == [(1, "a")]
    assert engine.merge(rows.limit(0), uri, ["id"], app_id="silver:src", txn_version=4) is True
    assert engine.txn_version(uri, "silver:src") == 4 and engine.version(uri) == 1
    assert engine.merge(rows, uri, ["id"], when_matched_update="false", app_id="silver:src", txn_version=5) is True
    assert engine.txn_version(uri, "silver:src") == 5 and _rows(engine.read(uri)) == [(1, "a")]
    assert engine.merge(changed, uri, ["id"], app_id="silver:other", txn_version=0) is True
    assert engine.txn_version(uri, "silver:src") == 5 and engine.txn_version(uri, "silver:other") == 0
    assert _rows(engine.read(uri)) == [(1, "b")]


def lake_merge_counted(engine, spark, root: str) -> None:
    """merge_counted merges like merge and returns how many rows it merged, counted on the evaluation it wrote: a
    source that leaves out the keys the table holds, evaluated again after the commit, would count none."""
    uri = f"{root}/merged-counted"
    engine.merge(spark.createDataFrame([(1, "a")], "id bigint, v string"), uri, ["id"])
    fresh = spark.createDataFrame([(1, "x"), (2, "b"), (3, "c")], "id bigint, v string")
    new = fresh.join(engine.read(uri).select("id"), "id", "left_anti")
    assert engine.merge_counted(new, uri, ["id"], app_id="silver:src", txn_version=1) == 2
    assert _rows(engine.read(uri)) == [(1, "a"), (2, "b"), (3, "c")]
    assert engine.txn_version(uri, "silver:src") == 1 and engine.version(uri) == 1


def lake_history(engine, spark, root: str) -> None:
    """Commits newest first, with aware UTC timestamps."""
    uri = f"{root}/history"
    start = dt.datetime.now(UTC) - dt.timedelta(minutes=5)
    for version in range(3):
        engine.append_batch(spark.createDataFrame([(version,)], "id bigint"), uri, "h", version)
    history = engine.history(uri)
    assert [h["version"] for h in history] == [2, 1, 0]
    assert all(h["timestamp"].tzinfo is not None and h["timestamp"] >= start for h in history)
    assert [h["version"] for h in engine.history(uri, limit=1)] == [2]


def _log_files(uri: str) -> tuple[dict[str, dict], set[str]]:
    """From the Delta log's commits (engine-neutral): (the current snapshot's files -> partition values, every file
    any version referenced). Paths are relative to the table."""
    from urllib.parse import unquote

    from ecomlake.lake import delta_log

    live: dict[str, dict] = {}
    ever: set[str] = set()
    for version in range(delta_log.latest_version(uri) + 1):
        for action in delta_log.commit_actions(uri, version):
            if "add" in action:
                path = unquote(action["add"]["path"])
                live[path] = action["add"].get("partitionValues") or {}
                ever.add(path)
            elif "remove" in action:
                live.pop(unquote(action["remove"]["path"]), None)
    return live, ever


def lake_optimize_and_vacuum(engine, spark, root: str) -> None:
    """What a user relies on, read from the Delta log: OPTIMIZE leaves the current snapshot with one file per
    partition and the same rows, and older versions still read the replaced files; VACUUM deletes a file no version
    references once it is older than the retention, and nothing the log references (the files the compaction just
    replaced are protected by the retention); a retention under 1 h is refused.

    Files on disk are not counted: they are no engine-neutral fact. delta-spark on local[2] writes one file per task
    of a 1-row append, and leaves the empty one out of the log on purpose (a fresh unreferenced file is then kept by
    VACUUM until it is older than the retention, like any in-flight write)."""
    uri = f"{root}/maintained"
    rows = [(0, 0), (1, 1), (2, 0), (3, 1)]
    for version, row in enumerate(rows):
        engine.append_batch(spark.createDataFrame([row], "id bigint, part int"), uri, "m", version,
                            partition_by=["part"])
    before, _ = _log_files(uri)
    assert len(before) == 4, before  # one data file per 1-row append in the snapshot
    last_append = engine.version(uri)

    metrics = engine.optimize(uri)

    live, ever = _log_files(uri)
    assert sorted(p["part"] for p in live.values()) == ["0", "1"], live  # one file per partition
    assert metrics == {"files_removed": 4, "files_added": 2}, metrics
    assert engine.version(uri) == last_append + 1
    assert _rows(engine.read(uri)) == rows
    assert _rows(engine.read(uri, version=last_append)) == rows

    table_dir = Path(uri)
    orphan = table_dir / "part=0" / "part-00000-orphan-of-a-crashed-writer.c000.snappy.parquet"
    orphan.write_bytes((table_dir / next(iter(live))).read_bytes())
    hours_ago = time.time() - 3 * 3600
    os.utime(orphan, (hours_ago, hours_ago))
    deleted = engine.vacuum(uri, retention_hours=1)
    assert [Path(p).name for p in deleted] == [orphan.name], deleted
    assert not orphan.exists()
    assert [p for p in sorted(ever) if not (table_dir / p).is_file()] == [], "VACUUM deleted a file the log references"
    assert _rows(engine.read(uri, version=last_append)) == rows and _rows(engine.read(uri)) == rows
    try:
        engine.vacuum(uri, retention_hours=0)
    except ValueError:
        pass
    else:
        raise AssertionError("a vacuum retention under 1 hour was accepted")


def lake_optimize_recent_partitions(engine, spark, root: str) -> None:
    """Compaction of the `recent` minutes: the published_minute partitions within it of the newest are compacted,
    older ones are left as they are (the silver service compacts only the recent part of a table with a day of
    history)."""
    from datetime import datetime, timedelta, timezone

    uri = f"{root}/recent"
    old, recent = datetime(2026, 11, 1, 9, 0, tzinfo=timezone.utc), datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)
    minutes = [old, old, recent, recent + timedelta(minutes=1), recent + timedelta(minutes=1)]
    for version, minute in enumerate(minutes):
        engine.append_batch(spark.createDataFrame([(version, minute)], "id bigint, published_minute timestamp"),
                            uri, "m", version, partition_by=["published_minute"])

    metrics = engine.optimize(uri, recent=timedelta(minutes=5))

    live, _ = _log_files(uri)
    per_minute = sorted(p["published_minute"].replace("T", " ")[:16] for p in live.values())  # engines differ
    assert per_minute == ["2026-11-01 09:00", "2026-11-01 09:00", "2026-11-02 09:00", "2026-11-02 09:01"], per_minute
    assert metrics == {"files_removed": 2, "files_added": 1}, metrics
    assert sorted(r["id"] for r in engine.read(uri).collect()) == list(range(len(minutes)))


LAKE_CASES = {f.__name__: f for f in (
    lake_idempotent_append, lake_read_round_trip_types, lake_changes_since, lake_changes_since_across_optimize,
    lake_merge_upsert, lake_merge_app_transaction, lake_merge_counted, lake_history, lake_optimize_and_vacuum,
    lake_optimize_recent_partitions,
)}


# --- source cases ----------------------------------------------------------------------------------------
KAFKA_SCHEMA = [
    ("key", "binary"), ("value", "binary"), ("topic", "string"), ("partition", "int"), ("offset", "bigint"),
    ("timestamp", "timestamp"), ("timestampType", "int"),
]


def produce(bootstrap: str, topic: str, records, partitions: int = 3, batching: bool = False) -> dict:
    """Create `topic` if needed and send (key, value, partition) records. Returns {(partition, offset): (key,
    value)} from the delivery reports. batching=False sends one record per batch (the embedded stack's way)."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    if topic not in admin.list_topics(timeout=10).topics:
        for future in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
            future.result()
    conf = {"bootstrap.servers": bootstrap, "linger.ms": 50} if batching else {
        "bootstrap.servers": bootstrap, "batch.num.messages": 1, "linger.ms": 0}
    producer = Producer(conf)
    sent: dict = {}

    def delivered(err, msg):
        assert err is None, err
        sent[(msg.partition(), msg.offset())] = (msg.key(), msg.value())

    for key, value, partition in records:
        kwargs = {"partition": partition} if partition is not None else {}
        producer.produce(topic, key=key, value=value, on_delivery=delivered, **kwargs)
        producer.poll(0)
    assert producer.flush(30) == 0
    return sent


def collect_stream(spark, settings: Settings, topic: str, expected: int, max_offsets: int | None = None,
                   timeout_s: float = 90.0):
    """Run the configured source on `topic` until `expected` rows arrived. Returns (schema, rows, batch sizes)."""
    from streaming.sources import source_for

    checkpoint = f"{settings.lakehouse_uri}/_checkpoints/conformance-{uuid.uuid4().hex[:8]}"
    stream = source_for(settings).stream(spark, settings, topic, checkpoint, max_offsets)
    rows, sizes = [], []

    def sink(df, batch_id):
        batch = df.collect()
        sizes.append(len(batch))
        rows.extend(batch)

    query = (stream.writeStream.foreachBatch(sink).option("checkpointLocation", checkpoint)
             .trigger(processingTime="200 milliseconds").start())
    try:
        deadline = time.monotonic() + timeout_s
        while len(rows) < expected and time.monotonic() < deadline and query.isActive:
            time.sleep(0.1)
        if query.exception():
            raise query.exception()
    finally:
        query.stop()
    return stream.schema, rows, sizes


def source_reads_every_record_exactly(spark, settings: Settings) -> None:
    """Spark's Kafka columns; every record once with exact bytes, also those of a batching producer (on Tansu they
    lie past its misreported end offset: held to this there only by the python source, see test_lake_conformance)."""
    topic = settings.topic_order_events
    records = [(f"k{i}".encode(), f'{{"i": {i}}}'.encode(), None) for i in range(30)]
    records += [(None, b"\xff\xfe not utf-8", 0), (b"k-empty", b"", 1)]
    sent = produce(settings.kafka_bootstrap, topic, records)
    sent.update(produce(settings.kafka_bootstrap, topic, [(b"b", f"batched-{i}".encode(), 2) for i in range(40)],
                        batching=True))
    schema, rows, _ = collect_stream(spark, settings, topic, len(sent))
    assert [(f.name, f.dataType.simpleString()) for f in schema] == KAFKA_SCHEMA, schema.simpleString()
    got = {(r.partition, r.offset): (r.key, r.value) for r in rows}
    assert len(rows) == len(sent) == len(got), (len(rows), len(sent))
    assert {k: (None if a is None else bytes(a), bytes(b)) for k, (a, b) in got.items()} == sent
    assert all(r.topic == topic and r.timestampType == 0 and r.timestamp is not None for r in rows)


def source_honours_max_offsets_per_trigger(spark, settings: Settings) -> None:
    """No micro-batch holds more than maxOffsetsPerTrigger records, and all records arrive."""
    topic = settings.topic_payment_events
    sent = produce(settings.kafka_bootstrap, topic, [(b"k", f"v{i}".encode(), None) for i in range(45)])
    _, rows, sizes = collect_stream(spark, settings, topic, len(sent), max_offsets=10)
    assert len(rows) == 45 and sum(sizes) == 45, sizes
    assert max(sizes) <= 10 and len([s for s in sizes if s]) >= 5, sizes


SOURCE_CASES = {f.__name__: f for f in (source_reads_every_record_exactly, source_honours_max_offsets_per_trigger)}


# --- subprocess runner for the JVM implementations -------------------------------------------------------
def run_in_subprocess(kind: str, name: str, workdir: str, env: dict, timeout_s: float = 600) -> dict:
    import subprocess

    proc = subprocess.run([sys.executable, __file__, kind, name, workdir], env=env, capture_output=True, text=True,
                          timeout=timeout_s)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"conformance subprocess failed ({proc.returncode}): {proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def _main(kind: str, name: str, workdir: str) -> int:
    from ecomlake.lake import get_engine
    from ecomlake.spark import get_spark

    env = dict(os.environ, LAKEHOUSE_URI=workdir)
    env["LAKE_ENGINE" if kind == "lake" else "KAFKA_SOURCE"] = name
    settings = Settings.from_env(env)
    spark = get_spark(settings, app_name=f"conformance-{name}")
    results = {}
    cases = LAKE_CASES if kind == "lake" else SOURCE_CASES
    for case_name, case in cases.items():
        try:
            if kind == "lake":
                case(get_engine(spark, settings), spark, f"{workdir}/{case_name}")
            else:
                tag = uuid.uuid4().hex[:8]
                case(spark, dataclasses.replace(settings, topic_order_events=f"conf-o-{tag}",
                                                topic_payment_events=f"conf-p-{tag}"))
            results[case_name] = "ok"
        except Exception:
            results[case_name] = traceback.format_exc(limit=5)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(_main(*sys.argv[1:4]))
