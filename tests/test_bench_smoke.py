"""`ecomlake bench --quick --only bronze` for real, as `make bench` runs it: the four seam combinations
(python|spark-kafka x delta-rs|delta-spark) on the bench's embedded Tansu and on the private Apache Kafka it starts,
with the JVM pairs' jars taken from the JVM parts cache. Every pair must report events/s and hold exactly the events
loaded. Without a part (mvn for the jars or Kafka) the bench reports the pair as skipped; the test then skips, and
fails under CI=true, naming it.

(The silver and gold stages are left out here: --quick of each costs minutes on 2 shared cores; their engines are
covered by test_silver_e2e, test_lake_conformance and test_trino_real.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ecomlake.settings import KAFKA_SOURCES, LAKE_ENGINES
from fixtures_kafka import skip_or_fail

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

REPO = Path(__file__).resolve().parent.parent
BROKERS = ("tansu", "kafka")


@pytest.fixture(scope="module")
def bronze_results(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("bench") / "results.json"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("KAFKA_", "TOPIC_", "LAKE", "SPARK_EXTRA", "SPARK_PACKAGES", "DBT_TARGET"))}
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "bench", "--quick", "--only", "bronze",
                           "--out", str(out)], cwd=REPO, env=env, capture_output=True, text=True, timeout=1400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(out.read_text())
    assert "bronze events/s" in proc.stdout  # the side-by-side table
    return results


def test_bench_quick_reports_every_pair_on_both_brokers(bronze_results):
    assert bronze_results["quick"] is True
    figures = bronze_results["stages"]["bronze"]
    skipped = {k: v for k, v in figures.items() if k.endswith("_skipped")}
    if skipped:
        skip_or_fail(f"bench bronze skipped {', '.join(f'{k}: {v}' for k, v in skipped.items())}")
    events = figures["bronze_events"]
    assert events > 0
    for broker in BROKERS:
        assert figures[f"bronze_{broker}_load_events_per_s"] > 0
        for source in KAFKA_SOURCES:
            for engine in LAKE_ENGINES:
                key = f"bronze_{broker}_{source}_{engine}"
                assert figures[f"{key}_events_per_s"] > 0, key
                assert figures[f"{key}_seconds"] > 0, key
                assert figures[f"{key}_batches"] >= 1, key
                assert figures[f"{key}_rows"] == events, key  # the Delta tables hold every event, once
    assert len([k for k in figures if k.endswith("_events_per_s") and "load" not in k]) == 8


def test_bench_results_name_the_machine_and_the_run(bronze_results):
    assert bronze_results["machine"]["cores"] >= 1
    assert bronze_results["command"].startswith("ecomlake bench --quick")
    assert bronze_results["stage_seconds"]["bronze"] > 0
