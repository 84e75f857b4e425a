"""Bronze benchmark: events/s of an available-now run over pre-loaded topics, for every source/engine pair.

The topics are loaded once (generator, steady scenario); each pair then reads them from the earliest offset
into its own lakehouse, in its own process (a Spark session's jars are fixed at start, and the JVM pairs need
theirs). events/s = bronze rows / seconds of the available-now run (broker check, query start, all batches;
not the Spark session start-up). Pairs whose jars are missing are reported as skipped, with the reason.

Run one pair by hand: python -m bench.bronze <python|spark-kafka> <delta-rs|delta-spark>  (settings from env).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time

from ecomlake.errors import EcomlakeError
from ecomlake.settings import KAFKA_SOURCES, LAKE_ENGINES, Settings

START = "2026-11-21T10:00:00Z"


def _skip_reason(settings: Settings) -> str | None:
    from ecomlake.spark import check_jars

    try:
        check_jars(settings)
    except EcomlakeError as err:
        return str(err)
    return None


def run(settings: Settings, quick: bool = False) -> dict:
    from generator.publish import generate

    events = 2_000 if quick else 100_000
    loaded = generate(settings, events=events, scenario="steady", seed=1, start=START)
    sent = loaded.manifest["sent"]
    if loaded.failed or sent != events:
        raise RuntimeError(f"bronze bench: pre-loading sent {sent}/{events} events ({loaded.failed} failed)")
    out: dict = {"bronze_events": events}
    for source in KAFKA_SOURCES:
        for engine in LAKE_ENGINES:
            pair = dataclasses.replace(settings, kafka_source=source, lake_engine=engine,
                                       lakehouse_uri=f"{settings.lakehouse_uri}/{source}_{engine}")
            key = f"bronze_{source}_{engine}"
            reason = _skip_reason(pair)
            if reason:
                out[f"{key}_skipped"] = reason
                continue
            stats = _run_pair(pair)
            if stats["rows"] != events:
                raise RuntimeError(f"bronze bench {source}/{engine}: {stats['rows']} rows for {events} events")
            out[f"{key}_events_per_s"] = round(stats["rows"] / stats["seconds"], 1)
            out[f"{key}_seconds"] = stats["seconds"]
            out[f"{key}_batches"] = sum(stats[t]["batches"] for t in ("orders_raw", "payments_raw"))
    return out


def _run_pair(settings: Settings) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "TOPIC_", "LAKE"))}
    env.update(settings.to_env())
    proc = subprocess.run([sys.executable, "-m", "bench.bronze", settings.kafka_source, settings.lake_engine],
                          env=env, capture_output=True, text=True, timeout=1800,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"bronze bench {settings.kafka_source}/{settings.lake_engine} failed: {proc.stderr[-2000:]}")
    return json.loads(lines[-1])


def _main(source: str, engine: str) -> int:
    from ecomlake.spark import get_spark
    from streaming.bronze import run_available_now

    settings = Settings.from_env({**os.environ, "KAFKA_SOURCE": source, "LAKE_ENGINE": engine})
    spark = get_spark(settings, app_name=f"bench-bronze-{source}-{engine}")
    started = time.monotonic()
    stats = run_available_now(spark, settings)
    stats["wall_s"] = round(time.monotonic() - started, 3)
    print(json.dumps(stats))
    return 0


if __name__ == "__main__":
    sys.exit(_main(*sys.argv[1:3]))
