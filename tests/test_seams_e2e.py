"""Generator -> gold for every seam combination, python | spark-kafka x delta-rs | delta-spark, on Apache Kafka.

One generator run publishes one topic pair to the session's Apache Kafka (its producer settings for real Kafka:
acks=all, idempotence, batching). Four lakehouses read those same topics, each through the `ecomlake` CLI as a user
runs it (`bronze --available-now`, `silver`, `gold`, each a subprocess). Gold must be equal to the cent across the four
and equal to the generator manifest's expected figures; bronze and silver must hold what the manifest says was
delivered. The four pipelines run two at a time (one per core); the official engines get the fetched jars."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timezone
from decimal import ROUND_HALF_UP, Decimal

import duckdb
import pytest
from deltalake import DeltaTable

from conftest import REPO, cli_env
from ecomlake import contract
from ecomlake.settings import Settings

pytestmark = pytest.mark.slow

COMBOS = [(source, engine) for source in ("python", "spark-kafka") for engine in ("delta-rs", "delta-spark")]
CENT = Decimal("0.01")


def ecomlake(args: list[str], env: dict[str, str], timeout_s: float = 900) -> subprocess.CompletedProcess:
    run = subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=timeout_s)
    assert run.returncode == 0, f"ecomlake {' '.join(args)} ({env['KAFKA_SOURCE']}, {env['LAKE_ENGINE']}):\n" + \
        (run.stdout + run.stderr)[-3000:]
    return run


def pipeline(settings: Settings, jars: str) -> dict[str, float]:
    """bronze, silver and gold for one lakehouse; seconds per stage."""
    official = settings.kafka_source == "spark-kafka" or settings.lake_engine == "delta-spark"
    env = cli_env(settings, SPARK_SHUFFLE_PARTITIONS="2", **({"SPARK_EXTRA_JARS": jars} if official else {}))
    seconds = {}
    for stage in (["bronze", "--available-now"], ["silver"], ["gold"]):
        started = time.monotonic()
        ecomlake(stage, env)
        seconds[stage[0]] = round(time.monotonic() - started, 1)
    return seconds


def gold_minutes(settings: Settings) -> dict:
    """Every minute of gold.fct_sales_minute: (gmv to the cent, half up, paid_orders)."""
    with duckdb.connect(settings.warehouse_path, read_only=True) as con:
        rows = con.execute("select minute_bucket, gmv, paid_orders from gold.fct_sales_minute").fetchall()
    return {m.astimezone(timezone.utc): (Decimal(g).quantize(CENT, rounding=ROUND_HALF_UP), n) for m, g, n in rows}


def gold_totals(settings: Settings) -> tuple[Decimal, int]:
    with duckdb.connect(settings.warehouse_path, read_only=True) as con:
        gmv, paid = con.execute("select sum(gmv), sum(paid_orders) from gold.fct_sales_minute").fetchone()
    return Decimal(gmv), int(paid)


def count(settings: Settings, schema: str, table: str) -> int:
    return DeltaTable(settings.table_uri(schema, table)).to_pyarrow_table().num_rows


def test_every_seam_combination_builds_the_same_gold_as_the_manifest(kafka_settings, spark_jars, tmp_path):
    manifest_path = tmp_path / "manifest.json"
    ecomlake(["generate", "--events", "400", "--scenario", "late_and_duplicates", "--seed", "11",
              "--manifest", str(manifest_path), "--quiet"], cli_env(kafka_settings))
    manifest = json.loads(manifest_path.read_text())
    expected = manifest["expected"]
    assert manifest["sent"] == 400 and expected["fully_paid_orders"] > 0

    lakes = {
        (source, engine): dataclasses.replace(
            kafka_settings, kafka_source=source, lake_engine=engine,
            lakehouse_uri=str(tmp_path / f"{source}-{engine}" / "lakehouse"),
            run_dir=str(tmp_path / f"{source}-{engine}" / "run"),
        )
        for source, engine in COMBOS
    }
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {combo: pool.submit(pipeline, settings, spark_jars) for combo, settings in lakes.items()}
        seconds = {combo: future.result() for combo, future in futures.items()}
    print("seconds per stage:", {f"{s}+{e}": t for (s, e), t in seconds.items()})

    golds = {combo: gold_minutes(settings) for combo, settings in lakes.items()}
    reference = golds[("python", "delta-rs")]
    assert reference, "gold is empty"
    for combo, gold in golds.items():
        assert gold == reference, f"{combo} differs from python+delta-rs"

    for combo, settings in lakes.items():
        bronze = count(settings, contract.BRONZE_SCHEMA, contract.BRONZE_ORDERS) + \
            count(settings, contract.BRONZE_SCHEMA, contract.BRONZE_PAYMENTS)
        assert bronze == manifest["sent"], combo
        assert count(settings, contract.SILVER_SCHEMA, contract.SILVER_ORDERS) == expected["orders_clean_rows"], combo
        assert count(settings, contract.SILVER_SCHEMA, contract.SILVER_QUARANTINE) == expected["quarantine_rows"], combo
    for combo, settings in lakes.items():
        gmv, paid = gold_totals(settings)
        assert paid == expected["fully_paid_orders"], combo
        assert gmv.quantize(CENT) == Decimal(expected["gmv_usd_exact"]).quantize(CENT), combo
