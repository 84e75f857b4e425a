"""Bronze and silver on a Spark standalone cluster (master + one worker, tests/fixtures_spark_cluster.py), the way
the compose services run them: `ecomlake bronze` / `ecomlake silver` as client-mode drivers against spark://…,
their tasks on the worker's executor. Generator -> embedded broker -> bronze (available-now) -> silver, checked
against the generator's manifest, and checked to have run on the cluster: the master lists each application as
finished, and the executor's own log under the worker's work directory shows it running tasks.

- KAFKA_SOURCE=python + LAKE_ENGINE=delta-rs: the Python Kafka source's read tasks run in executor Pythons that
  have the dependencies but not the project (no site module, so no editable install); they import
  `streaming.kafka_source` from the zip the driver ships (spark.submit.pyFiles, ecomlake/pyfiles.py).
- KAFKA_SOURCE=spark-kafka + LAKE_ENGINE=delta-spark: the official jars (ecomlake.jvm.parts' spark-jars, what
  the image has in /opt/ecomlake-jars) reach the executor through spark.jars."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

from conftest import cli_env

pytestmark = pytest.mark.slow

SILVER_TABLES = ("orders_clean", "order_events", "payments_clean", "order_payments_enriched", "quarantine")


def _cli(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 600) -> tuple[str, float]:
    began = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "pipeline.cli", *args], env=env, cwd=cwd, capture_output=True,
                         text=True, timeout=timeout)
    assert run.returncode == 0, f"ecomlake {' '.join(args)} failed:\n{run.stdout[-2000:]}\n{run.stderr[-4000:]}"
    return run.stdout, time.monotonic() - began


def _rows(uri: str) -> int:
    from deltalake import DeltaTable

    return DeltaTable(uri).to_pyarrow_table().num_rows


def _new_app(cluster, before: set[str], name: str) -> dict:
    apps = [a for a in cluster.applications() if a["id"] not in before and a["name"] == name]
    assert len(apps) == 1, f"expected one new application {name!r} on {cluster.master_url}, master lists {apps}"
    return apps[0]


def _executor_log(cluster, app: dict) -> tuple[Path, str]:
    """The app's executor directory on the worker and its stderr (Spark's executor log)."""
    dirs = sorted((cluster.work_dir / app["id"]).iterdir())
    assert dirs, f"no executor ran application {app['id']} under {cluster.work_dir}"
    return dirs[0], (dirs[0] / "stderr").read_text(errors="replace")


def _pipeline_on_cluster(cluster, settings, tmp_path: Path, **seams: str) -> dict:
    """generate -> bronze --available-now -> silver on the cluster; checks the lake against the manifest and that
    each stage ran as an application on the cluster's executor. Returns what the caller may check further."""
    env = cli_env(settings, **cluster.driver_env(), SPARK_LOCAL_DIRS=str(tmp_path), **seams)
    manifest_path = tmp_path / "m.json"
    _cli(["generate", "--events", "200", "--seed", "5", "--scenario", "dirty", "--manifest", str(manifest_path),
          "--quiet"], env, tmp_path)
    manifest = json.loads(manifest_path.read_text())
    expected = manifest["expected"]
    orders_topic, payments_topic = settings.topics
    assert manifest["sent"] == 200 and expected["quarantine_rows"] > 0

    apps_before = {a["id"] for a in cluster.applications()}
    _, bronze_s = _cli(["bronze", "--available-now"], env, tmp_path)
    bronze = {topic: _rows(settings.table_uri("bronze_raw", table))
              for topic, table in ((orders_topic, "orders_raw"), (payments_topic, "payments_raw"))}
    assert bronze == {t: manifest["per_topic"][t]["sent"] for t in settings.topics}
    assert sum(bronze.values()) == manifest["sent"]

    _, silver_s = _cli(["silver"], env, tmp_path)
    silver = {t: _rows(settings.table_uri("silver", t)) for t in SILVER_TABLES}
    assert silver == {
        "orders_clean": expected["orders_clean_rows"],
        "order_events": expected["valid_unique"][orders_topic],
        "payments_clean": expected["payments_clean_rows"],
        "order_payments_enriched": expected["order_payments_enriched_rows"],
        "quarantine": expected["quarantine_rows"],
    }

    executors = {}
    for name in ("ecomlake-bronze", "ecomlake-silver"):
        app = _new_app(cluster, apps_before, name)
        assert app["state"] == "FINISHED", app
        executor_dir, log = _executor_log(cluster, app)
        assert "Running task" in log and "Finished task" in log, f"{executor_dir}/stderr shows no task"
        executors[name] = (executor_dir, log)
    print(f"\ncluster start {cluster.started_in_s:.1f}s, bronze {bronze_s:.1f}s, silver {silver_s:.1f}s "
          f"({', '.join(f'{k}={v}' for k, v in seams.items())})")
    return executors


def _python_without_the_project_on_the_worker(tmp_path: Path, work_dir: Path) -> tuple[Path, Path]:
    """PYSPARK_PYTHON for the test: on the worker (cwd in its work directory, where executors start their Python
    workers) this interpreter and its third-party packages but not the project: no site module, so no .pth file and
    no editable install; site-packages appended to PYTHONPATH. Each such start is logged. Elsewhere (the driver's
    planner processes, on the driver's machine, where the project is installed) the interpreter as it is."""
    wrapper, log = tmp_path / "python-without-ecomlake-on-worker", tmp_path / "executor-pythons.log"
    purelib, platlib = sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]
    wrapper.write_text(
        "#!/bin/sh\n"
        'here="$(pwd -P)"\n'
        f'case "$here" in "{work_dir}"/*)\n'
        f'  echo "$here" >> "{log}"\n'
        f'  PYTHONPATH="${{PYTHONPATH:+$PYTHONPATH:}}{purelib}:{platlib}" exec "{sys.executable}" -S "$@" ;;\n'
        "esac\n"
        f'exec "{sys.executable}" "$@"\n'
    )
    wrapper.chmod(0o755)
    fake_executor_dir = work_dir / "app-probe" / "0"
    fake_executor_dir.mkdir(parents=True)
    try:
        probe = subprocess.run([str(wrapper), "-c", "import pyarrow, confluent_kafka, pyspark; import streaming"],
                               cwd=fake_executor_dir, capture_output=True, text=True, timeout=60)
    finally:
        fake_executor_dir.rmdir()
        fake_executor_dir.parent.rmdir()
        log.unlink(missing_ok=True)
    assert "No module named 'streaming'" in probe.stderr, probe.stderr[-2000:]
    return wrapper, log


def test_python_source_and_delta_rs_on_the_cluster(spark_cluster, settings, tmp_path):  # noqa: F811
    python, started = _python_without_the_project_on_the_worker(tmp_path, spark_cluster.work_dir)
    executors = _pipeline_on_cluster(spark_cluster, settings, tmp_path, KAFKA_SOURCE="python",
                                     LAKE_ENGINE="delta-rs", PYSPARK_PYTHON=str(python))
    bronze_dir, _ = executors["ecomlake-bronze"]
    assert list(bronze_dir.glob("ecomlake-pyfiles-*.zip")), f"the project's zip never reached {bronze_dir}"
    # The Kafka source's read tasks ran in executor Pythons that cannot import the installed project.
    assert str(bronze_dir) in started.read_text().split(), "no Python worker started on the bronze executor"


def test_spark_kafka_and_delta_spark_on_the_cluster(spark_cluster, settings, tmp_path):  # noqa: F811
    from ecomlake.jvm import parts

    if not parts.is_fetched("spark-jars"):
        pytest.skip(f"spark-jars (Delta Lake for Spark, Spark's Kafka source) not in {parts.spark_jars_dir()}: "
                    "run `make jvm-parts`")
    executors = _pipeline_on_cluster(
        spark_cluster, settings, tmp_path, KAFKA_SOURCE="spark-kafka", LAKE_ENGINE="delta-spark",
        SPARK_EXTRA_JARS=str(parts.spark_jars_dir()),
    )
    for name, (executor_dir, log) in executors.items():
        for jar in ("delta-spark_", "spark-sql-kafka-0-10_", "kafka-clients-"):
            assert list(executor_dir.glob(f"{jar}*.jar")), f"{name}: {jar}*.jar never reached {executor_dir}"
