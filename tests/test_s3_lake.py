"""The pipeline on a lake on S3 (LAKEHOUSE_URI=s3a://…), against a local S3 server (tests/fixtures_s3.py) with the
settings the compose stack gives its services (S3_ENDPOINT, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_REGION).

- `ecomlake generate | bronze --available-now | silver | gold` on the embedded broker with LAKE_ENGINE=delta-rs and
  the Python Kafka source (Spark s3a for checkpoints and reads, delta-rs commits, the checkpoint reader through
  ecomlake/lake/fs.py, DuckDB's delta_scan over httpfs for gold): every table equals the generator manifest's
  `expected`, a second bronze run finds nothing new, and every request is signed with the compose credentials.
- Delta Lake for Spark (the official jars) reads those tables over s3a and writes its own; ecomlake/lake/fs.py, the
  engine-neutral log reader and DuckDB read what Spark wrote.

Each part runs as `ecomlake` does, in a subprocess whose JVM starts with the s3a jars (`make jvm-parts`).
"""

from __future__ import annotations

import dataclasses
import json
import posixpath
import subprocess
import sys
import textwrap
import time
import uuid
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import cli_env
from fixtures_s3 import ACCESS_KEY, missing

REPO = Path(__file__).resolve().parent.parent
EVENTS = 300
SEED = 5

# One process, one JVM: the CLI's commands in turn, as a user types them. Prints one JSON line of timings.
PIPELINE = textwrap.dedent("""
    import json, sys, time
    from pipeline.cli import main
    timings = {}
    steps = [("generate", ["generate", "--events", sys.argv[1], "--scenario", "late_and_duplicates", "--seed",
                           sys.argv[2], "--manifest", sys.argv[3], "--quiet"]),
             ("bronze", ["bronze", "--available-now"]), ("silver", ["silver"]), ("gold", ["gold"]),
             ("bronze_again", ["bronze", "--available-now"])]
    for name, argv in steps:
        started = time.perf_counter()
        code = main(argv)
        timings[name] = round(time.perf_counter() - started, 1)
        if code:
            sys.exit(f"ecomlake {argv[0]} exited {code}")
    print("TIMINGS " + json.dumps(timings))
""")

# Delta Lake for Spark over s3a: read what delta-rs wrote, write a table of its own (idempotent append, merge).
DELTA_SPARK = textwrap.dedent("""
    import json, sys, time
    started = time.perf_counter()
    from ecomlake.lake import get_engine
    from ecomlake.settings import Settings
    from ecomlake.spark import get_spark
    settings = Settings.from_env()
    spark = get_spark(settings, "ecomlake-s3-test")
    engine = get_engine(spark, settings)
    source, copy = sys.argv[1], sys.argv[2]
    orders = engine.read(source)
    out = {"session_s": round(time.perf_counter() - started, 1),
           "read_by_engine": orders.count(),
           "read_by_format": spark.read.format("delta").load(source).count()}
    out["first_append"] = engine.append_batch(orders, copy, "s3-test", 0)
    out["replayed_append"] = engine.append_batch(orders, copy, "s3-test", 0)
    out["merge"] = engine.merge(orders, copy, ["order_id"], app_id="s3-test", txn_version=1)
    out["copy_rows"] = engine.read(copy).count()
    out["copy_version"] = engine.version(copy)
    out["total_s"] = round(time.perf_counter() - started, 1)
    print("RESULT " + json.dumps(out))
""")


def _tagged(stdout: str, tag: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.startswith(tag + " ")]
    assert lines, f"no {tag} line in:\n{stdout[-3000:]}"
    return json.loads(lines[-1][len(tag) + 1:])


def _require_s3_jars() -> None:
    """The JVM part spark-s3-jars (hadoop-aws + the AWS SDK bundle), fetched with mvn on first use."""
    from ecomlake.errors import EcomlakeError
    from ecomlake.jvm import parts

    spec = parts.part("spark-s3-jars")
    try:
        parts.fetch([spec.group])
    except EcomlakeError as err:
        missing(f"the JVM part spark-s3-jars ({', '.join(spec.artifacts)}): {err}")


@pytest.fixture
def s3_env(s3_lake_server, monkeypatch):  # noqa: F811
    """This process reads the lake (delta-rs, pyarrow, DuckDB) with the same settings as the pipeline."""
    for key, value in s3_lake_server.env.items():
        monkeypatch.setenv(key, value)
    return s3_lake_server.env


@pytest.fixture(scope="module")
def s3_pipeline(broker_settings, s3_lake_server, tmp_path_factory):  # noqa: F811
    """generate -> bronze -> silver -> gold -> bronze again, on s3a://lakehouse/<fresh>, delta-rs + python source."""
    _require_s3_jars()
    work = tmp_path_factory.mktemp("s3-pipeline")
    tag = uuid.uuid4().hex[:6]
    settings = dataclasses.replace(
        broker_settings, lakehouse_uri=s3_lake_server.lake_uri(f"pipeline-{tag}"), run_dir=str(work / "run"),
        topic_order_events=f"orders.s3-{tag}", topic_payment_events=f"payments.s3-{tag}",
        lake_engine="delta-rs", kafka_source="python", dbt_target="duckdb",
    )
    manifest_path = work / "manifest.json"
    env = cli_env(settings, **s3_lake_server.env, SPARK_SHUFFLE_PARTITIONS="2")
    started = time.perf_counter()
    with s3_lake_server.recording() as requests:
        run = subprocess.run([sys.executable, "-c", PIPELINE, str(EVENTS), str(SEED), str(manifest_path)], env=env,
                             cwd=REPO, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-4000:] + run.stdout[-2000:]
    manifest = json.loads(manifest_path.read_text())
    return SimpleNamespace(settings=settings, manifest=manifest, expected=manifest["expected"], requests=requests,
                           stdout=run.stdout, timings=_tagged(run.stdout, "TIMINGS"),
                           wall_s=round(time.perf_counter() - started, 1))


def test_engine_settings_for_an_s3_lake_follow_the_compose_variables(monkeypatch, tmp_path):
    """No server needed: what Spark, delta-rs and DuckDB are told for LAKEHOUSE_URI=s3a://… (fast)."""
    from ecomlake import duckdb_delta, spark
    from ecomlake.errors import EcomlakeError
    from ecomlake.lake.fs import delta_rs_location
    from ecomlake.settings import Settings

    monkeypatch.setenv("S3_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    assert delta_rs_location("s3a://lakehouse/silver/orders_clean") == ("s3://lakehouse/silver/orders_clean", {
        "AWS_REGION": "eu-west-3", "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": "false",
        "AWS_ALLOW_HTTP": "true"})
    assert delta_rs_location("/tmp/lake/t") == ("/tmp/lake/t", None)
    assert duckdb_delta.scan_uri("s3a://lakehouse/silver/x") == "s3://lakehouse/silver/x"

    jars = tmp_path / "jars"
    jars.mkdir()
    for name in ("hadoop-aws-3.4.1.jar", "bundle-2.24.6.jar", "delta-spark_2.13-4.0.1.jar"):
        (jars / name).touch()
    monkeypatch.setattr(spark, "spark_home_jars", lambda: tmp_path / "no-spark-home")
    settings = Settings.from_env({"LAKEHOUSE_URI": "s3a://lakehouse", "SPARK_EXTRA_JARS": str(jars)})
    conf = spark.builder_config(settings)
    assert conf["spark.hadoop.fs.s3a.endpoint"] == "http://127.0.0.1:9"
    assert conf["spark.hadoop.fs.s3a.endpoint.region"] == "eu-west-3"
    assert conf["spark.hadoop.fs.s3a.path.style.access"] == "true"
    assert conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] == "false"
    assert conf["spark.driver.extraClassPath"] == conf["spark.executor.extraClassPath"]
    assert sorted(Path(j).name for j in conf["spark.driver.extraClassPath"].split(":")) == [
        "bundle-2.24.6.jar", "hadoop-aws-3.4.1.jar"]
    assert conf["spark.jars"] == str(jars / "delta-spark_2.13-4.0.1.jar")  # the 500 MB bundle is not shipped
    assert "spark.driver.extraClassPath" not in spark.builder_config(Settings.from_env({"LAKEHOUSE_URI": str(tmp_path)}))

    monkeypatch.setattr(spark, "spark_s3_jars_dir", lambda: tmp_path / "empty-cache")
    with pytest.raises(EcomlakeError, match="hadoop-aws:3.4.1 and software.amazon.awssdk:bundle:2.24.6: run `make jvm-parts`"):
        spark.builder_config(Settings.from_env({"LAKEHOUSE_URI": "s3a://lakehouse"}))


def _delta_rs_rows(uri: str) -> int:
    from deltalake import DeltaTable

    from ecomlake.lake.fs import delta_rs_location

    location, options = delta_rs_location(uri)
    return DeltaTable(location, storage_options=options).to_pyarrow_dataset().count_rows()


@pytest.mark.slow
def test_delta_rs_pipeline_on_s3_matches_the_manifest(s3_pipeline, s3_env):
    from ecomlake import contract

    run, expected, settings = s3_pipeline, s3_pipeline.expected, s3_pipeline.settings
    print(f"\nS3 pipeline timings (s): {run.timings}, wall {run.wall_s}")
    sent = {topic: v["sent"] for topic, v in run.manifest["per_topic"].items()}
    assert sum(sent.values()) == EVENTS
    orders_topic, payments_topic = settings.topics
    bronze = {orders_topic: contract.BRONZE_ORDERS, payments_topic: contract.BRONZE_PAYMENTS}
    for topic, table in bronze.items():
        assert _delta_rs_rows(settings.table_uri(contract.BRONZE_SCHEMA, table)) == sent[topic], table
    silver = {"orders_clean": "orders_clean_rows", "payments_clean": "payments_clean_rows",
              "order_payments_enriched": "order_payments_enriched_rows", "quarantine": "quarantine_rows"}
    for table, key in silver.items():
        assert _delta_rs_rows(settings.table_uri(contract.SILVER_SCHEMA, table)) == expected[key], table

    # gold: DuckDB read silver from S3; its warehouse is local (run dir), since DuckDB cannot write one on S3
    import duckdb

    assert settings.warehouse_path == str(Path(settings.run_dir) / "warehouse.duckdb")
    with duckdb.connect(settings.warehouse_path, read_only=True) as con:
        gmv, paid = con.execute("select sum(gmv), sum(paid_orders) from gold.fct_sales_minute").fetchone()
    assert paid == expected["fully_paid_orders"] > 0
    assert Decimal(gmv).quantize(Decimal("0.0001")) == Decimal(expected["gmv_usd_exact"])

    # the second bronze run resumed from the checkpoints on S3 (read by streaming/checkpoint_log.py via lake/fs.py)
    assert run.stdout.count(f"bronze: {EVENTS} new rows") == 1 and "bronze: 0 new rows" in run.stdout
    from streaming import checkpoint_log
    from streaming.bronze import bronze_tables
    from streaming.offsets import flatten

    for table in bronze_tables(settings):
        committed = checkpoint_log.committed_offsets(table.checkpoint)
        assert committed is not None, f"no committed batch in {table.checkpoint}"
        assert sum(flatten(committed[1]).values()) == sent[table.topic], table.checkpoint


@pytest.mark.slow
def test_every_engine_signed_its_s3_requests_with_the_compose_credentials(s3_pipeline):
    agents = {
        "Spark s3a (AWS SDK for Java v2)": "aws-sdk-java",
        "delta-rs (object_store)": "object_store",
        "pyarrow (lake/fs.py, AWS SDK for C++)": "aws-sdk-cpp",
        "DuckDB httpfs": "duckdb",
    }
    requests = s3_pipeline.requests
    assert requests, "the server recorded no request"
    keys = {r.access_key for r in requests}
    assert keys == {ACCESS_KEY}, keys
    seen = {name for name, marker in agents.items() if any(marker in r.user_agent.lower() for r in requests)}
    assert seen == set(agents), f"no request from {set(agents) - seen}; user agents: " \
                                f"{sorted({r.user_agent[:60] for r in requests})}"
    # delta-rs writes each log entry with a conditional put: a concurrent writer of the same version gets 412
    commits = [r for r in requests if r.method == "PUT" and "/_delta_log/" in r.path and r.path.endswith(".json")
               and "object_store" in r.user_agent.lower()]
    assert commits and all(r.if_none_match == "*" for r in commits), commits[:3]


@pytest.fixture(scope="module")
def delta_spark_on_s3(s3_pipeline, s3_lake_server, spark_jars):  # noqa: F811
    """LAKE_ENGINE=delta-spark with the official jars: read orders_clean (written by delta-rs), write a copy."""
    from ecomlake import contract

    settings = dataclasses.replace(s3_pipeline.settings, lake_engine="delta-spark", spark_extra_jars=spark_jars)
    source = settings.table_uri(contract.SILVER_SCHEMA, "orders_clean")
    copy = settings.table_uri("spark_test", "orders_copy")
    run = subprocess.run([sys.executable, "-c", DELTA_SPARK, source, copy],
                         env=cli_env(settings, **s3_lake_server.env, SPARK_SHUFFLE_PARTITIONS="2"),
                         cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    return SimpleNamespace(result=_tagged(run.stdout, "RESULT"), copy=copy, source=source)


@pytest.mark.slow
def test_delta_spark_reads_and_writes_the_s3_lake(delta_spark_on_s3, s3_pipeline):
    result, rows = delta_spark_on_s3.result, s3_pipeline.expected["orders_clean_rows"]
    print(f"\ndelta-spark on S3: {result}")
    assert result["read_by_engine"] == result["read_by_format"] == rows
    assert result["first_append"] is True and result["replayed_append"] is False
    assert result["merge"] is True  # a merge that matches every row still commits its application transaction
    assert result["copy_rows"] == rows
    assert result["copy_version"] == 1


@pytest.mark.slow
def test_lake_fs_and_log_reader_read_what_spark_wrote_on_s3(delta_spark_on_s3, s3_pipeline, s3_env, tmp_path):
    from pyarrow import fs

    from ecomlake import duckdb_delta
    from ecomlake.lake import delta_log
    from ecomlake.lake.fs import resolve

    copy = delta_spark_on_s3.copy
    filesystem, root = resolve(copy)
    assert isinstance(filesystem, fs.S3FileSystem) and root == copy.split("://", 1)[1]
    log_dir = posixpath.join(root, "_delta_log")
    names = sorted(i.base_name for i in filesystem.get_file_info(fs.FileSelector(log_dir)))
    assert "00000000000000000000.json" in names and "00000000000000000001.json" in names, names
    with filesystem.open_input_stream(posixpath.join(log_dir, "00000000000000000000.json")) as stream:
        actions = [json.loads(line) for line in stream.read().decode().splitlines() if line.strip()]
    info = next(a["commitInfo"] for a in actions if "commitInfo" in a)
    assert info["engineInfo"].startswith("Apache-Spark/") and "Delta-Lake/" in info["engineInfo"], info
    assert any(a.get("txn", {}).get("appId") == "s3-test" for a in actions)

    # the engine-neutral log reader and DuckDB (delta_scan over httpfs) agree with Spark
    assert delta_log.latest_version(copy) == 1
    assert delta_log.txn_version(copy, "s3-test") == 1
    rows = s3_pipeline.expected["orders_clean_rows"]
    assert sum(1 for a in delta_log.added_files(copy, -1, 0)) >= 1
    with duckdb_delta.connect(extension_dir=str(tmp_path / "ext"), s3=True) as con:
        scanned = con.execute(f"select count(*) from delta_scan('{duckdb_delta.scan_uri(copy)}')").fetchone()[0]
    assert scanned == rows
