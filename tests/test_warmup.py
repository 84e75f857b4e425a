"""What makes the embedded JVM fast from the first event: the silver warm-up the demo runs before publishing
(pipeline.warmup: real silver runs on a scratch lake), and the local driver's collector and file listing
(ecomlake.spark)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from ecomlake.tables import in_layer
from pipeline.warmup import can_warm, warm_silver


def test_warm_up_runs_silver_on_a_scratch_lake_and_leaves_the_real_lake_alone(spark, settings, tmp_path,
                                                                              monkeypatch):
    scratch_parent = tmp_path / "tmp"
    scratch_parent.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch_parent))
    assert can_warm(settings)

    seconds, read = warm_silver(spark, settings, events=150, runs=3)

    assert seconds > 0
    assert read == 3 * 150, "each run reads the bronze rows added for it, orders and payments"
    assert list(scratch_parent.iterdir()) == [], "the scratch lake is deleted"
    assert not any(Path(t.uri(settings)).exists() for t in in_layer("silver")), "the real lake is not touched"


def test_a_local_master_jvm_runs_the_throughput_collector(spark):
    """On a local master the pipeline's JVM uses the parallel collector (ecomlake.spark.builder_config): G1's
    concurrent marking cost a tenth of the JVM's CPU in the 1,000 events/s run."""
    beans = spark.sparkContext._jvm.java.lang.management.ManagementFactory.getGarbageCollectorMXBeans()
    collectors = {beans.get(i).getName() for i in range(beans.size())}
    assert collectors == {"PS Scavenge", "PS MarkSweep"}, collectors


def test_the_collector_option_leaves_a_user_managed_driver_alone(monkeypatch, tmp_path):
    """SPARK_LOG4J_CONF says the driver's JVM options are the user's (their spark-defaults): builder_config then sets
    none, as it did before the collector option; on a cluster master the option is not added."""
    from ecomlake.settings import Settings
    from ecomlake.spark import builder_config

    local = Settings.from_env({"LAKEHOUSE_URI": str(tmp_path)})
    assert "-XX:+UseParallelGC" in builder_config(local)["spark.driver.extraJavaOptions"].split()
    cluster = Settings.from_env({"LAKEHOUSE_URI": str(tmp_path), "SPARK_MASTER": "spark://127.0.0.1:7077"})
    assert "UseParallelGC" not in builder_config(cluster).get("spark.driver.extraJavaOptions", "")
    monkeypatch.setenv("SPARK_LOG4J_CONF", str(tmp_path / "log4j2.properties"))
    assert "spark.driver.extraJavaOptions" not in builder_config(local)


def test_a_local_master_reads_a_table_of_many_files_without_a_listing_job(spark, tmp_path):
    """The delta-rs engine reads a version by naming its data files. Past 32 files Spark's default lists them with a
    Spark job of one task per file, which on a local master runs in this same JVM: silver read order_events of 34
    files in 110 ms with that job and in 32 ms without (ecomlake.spark.builder_config)."""
    from ecomlake.lake import get_engine
    from ecomlake.settings import Settings

    lake = get_engine(spark, Settings.from_env({"LAKEHOUSE_URI": str(tmp_path)}), "delta-rs")
    uri = str(tmp_path / "many-files")
    for version in range(40):
        lake.append_batch(spark.createDataFrame([(version,)], "id bigint"), uri, "test", version)
    context = spark.sparkContext
    context.setJobGroup("read-many-files", "read-many-files")
    try:
        table = lake.read(uri)
    finally:
        context.setLocalProperty("spark.jobGroup.id", None)
    assert list(context.statusTracker().getJobIdsForGroup("read-many-files")) == []
    assert sorted(row.id for row in table.collect()) == list(range(40))


def test_a_local_masters_python_workers_run_without_sparks_archives_on_their_path(spark):
    """Spark puts pyspark.zip, py4j's zip and the spark-core jar on its Python workers' path, and every task makes
    Python 3.11 read those archives' directories again (ecomlake.spark_daemon). A local master's workers, which run
    this interpreter, import pyspark from its installed package instead, and Python code still runs there."""
    import pyspark

    def worker_state(_):
        import sys

        import pyspark as worker_pyspark
        return [p for p in sys.path if p.endswith((".zip", ".jar"))], worker_pyspark.__file__

    archives, imported_from = spark.sparkContext.parallelize([0], 1).map(worker_state).collect()[0]
    assert archives == []
    assert imported_from == pyspark.__file__


def test_archives_stay_on_the_path_when_a_package_needs_them(tmp_path):
    from ecomlake.spark_daemon import without_archives

    site = [p for p in __import__("sys").path if not p.endswith((".zip", ".jar"))]
    assert without_archives([str(tmp_path / "pyspark.zip"), *site]) == site
    only_from_archive = [str(tmp_path / "pyspark.zip"), str(tmp_path)]
    assert without_archives(only_from_archive) == only_from_archive, "pyspark is found nowhere else: keep the zip"
