"""Bronze benchmark: events/s of an available-now run over pre-loaded topics, for every source/engine pair
(python|spark-kafka x delta-rs|delta-spark) on both brokers side by side: the embedded Tansu the bench runs and a
private single-node Apache Kafka started here.

The same events (generator, steady scenario, same seed and start) are loaded once into each broker; each pair then
reads them from the earliest offset into its own lakehouse, in its own process (a Spark session's jars are fixed at
start, and the JVM pairs need theirs: SPARK_EXTRA_JARS is the JVM parts cache, fetched with mvn on first use).
events/s = bronze rows / seconds of the available-now run (broker check, query start, all batches; not the Spark
session start-up). The rows are then counted in the Delta tables themselves and must equal the events loaded.
Pairs or brokers whose parts cannot be had (no mvn) are reported as skipped, with the reason.

Keys: bronze_<tansu|kafka>_<source>_<engine>_{events_per_s,seconds,batches,rows}.

Run one pair by hand: python -m pipeline.bench.bronze <python|spark-kafka> <delta-rs|delta-spark>  (settings from env).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from ecomlake.settings import KAFKA_SOURCES, LAKE_ENGINES, Settings
from pipeline.bench.servers import Unavailable, jar_problem, needs_jars, private_kafka, subprocess_env, with_spark_jars

START = "2026-11-21T10:00:00Z"
QUICK_EVENTS, FULL_EVENTS = 400, 100_000
REPO = Path(__file__).resolve().parents[2]
BROKERS = ("tansu", "kafka")


def _load(settings: Settings, events: int) -> float:
    from generator.publish import generate

    loaded = generate(settings, events=events, scenario="steady", seed=1, start=START)
    sent = loaded.manifest["sent"]
    if loaded.failed or sent != events:
        raise RuntimeError(f"bronze bench: pre-loading {settings.broker} sent {sent}/{events} events "
                           f"({loaded.failed} failed)")
    return round(loaded.manifest["events_per_s"], 1)


def _lake_rows(settings: Settings) -> int:
    """Rows in the two bronze tables, read from their Delta logs (either engine wrote them)."""
    from deltalake import DeltaTable

    from ecomlake.contract import BRONZE_ORDERS, BRONZE_PAYMENTS, BRONZE_SCHEMA

    return sum(DeltaTable(settings.table_uri(BRONZE_SCHEMA, t)).to_pyarrow_dataset().count_rows()
               for t in (BRONZE_ORDERS, BRONZE_PAYMENTS))


def run(settings: Settings, quick: bool = False, events: int | None = None) -> dict:
    events = events or (QUICK_EVENTS if quick else FULL_EVENTS)
    out: dict = {"bronze_events": events}
    try:
        jvm_settings = with_spark_jars(settings)
        jars_missing = None
    except Unavailable as err:
        jvm_settings, jars_missing = settings, str(err)
    brokers: dict[str, Settings] = {"tansu": dataclasses.replace(settings, broker="embedded")}
    with ExitStack() as stack:
        try:
            brokers["kafka"] = stack.enter_context(private_kafka(settings))
        except Unavailable as err:
            out["bronze_kafka_skipped"] = f"Apache Kafka: {err}"
        for name, on in brokers.items():
            # Spark's Kafka source reads each load too: on Tansu it needs one record per batch (producer_config).
            out[f"bronze_{name}_load_events_per_s"] = _load(dataclasses.replace(on, kafka_source="spark-kafka"), events)
        for name, on in brokers.items():
            for source in KAFKA_SOURCES:
                for engine in LAKE_ENGINES:
                    key = f"bronze_{name}_{source}_{engine}"
                    pair = dataclasses.replace(on, kafka_source=source, lake_engine=engine,
                                               lakehouse_uri=f"{settings.lakehouse_uri}/{name}_{source}_{engine}")
                    if needs_jars(pair):
                        pair = dataclasses.replace(pair, spark_extra_jars=jvm_settings.spark_extra_jars,
                                                   spark_packages=jvm_settings.spark_packages)
                        reason = jar_problem(pair)
                        if reason:
                            out[f"{key}_skipped"] = jars_missing or reason
                            continue
                    print(f"   bronze {name} {source}/{engine} ...", flush=True)
                    stats = _run_pair(pair)
                    rows = _lake_rows(pair)
                    if stats["rows"] != events or rows != events:
                        raise RuntimeError(f"bronze bench {name} {source}/{engine}: {stats['rows']} rows written, "
                                           f"{rows} in the tables, for {events} events")
                    out[f"{key}_events_per_s"] = round(stats["rows"] / stats["seconds"], 1)
                    out[f"{key}_seconds"] = stats["seconds"]
                    out[f"{key}_batches"] = sum(stats[t]["batches"] for t in ("orders_raw", "payments_raw"))
                    out[f"{key}_rows"] = rows
    return out


def _run_pair(settings: Settings) -> dict:
    proc = subprocess.run([sys.executable, "-m", "pipeline.bench.bronze", settings.kafka_source, settings.lake_engine],
                          env=subprocess_env(settings), capture_output=True, text=True, timeout=1800, cwd=REPO)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"bronze bench {settings.broker} {settings.kafka_source}/{settings.lake_engine} failed "
                           f"(exit {proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(lines[-1])


def _main(source: str, engine: str) -> int:
    from ecomlake.spark import get_spark
    from streaming.bronze import run_available_now

    settings = dataclasses.replace(Settings.from_env(), kafka_source=source, lake_engine=engine)
    spark = get_spark(settings, app_name=f"bench-bronze-{source}-{engine}")
    started = time.monotonic()
    stats = run_available_now(spark, settings)
    stats["wall_s"] = round(time.monotonic() - started, 3)
    print(json.dumps(stats))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in KAFKA_SOURCES or sys.argv[2] not in LAKE_ENGINES:
        print(f"usage: python -m pipeline.bench.bronze <{'|'.join(KAFKA_SOURCES)}> <{'|'.join(LAKE_ENGINES)}>",
              file=sys.stderr)
        sys.exit(2)
    sys.exit(_main(*sys.argv[1:3]))
