"""One way to get a Spark session, configured for the chosen stack (embedded local[*] or a cluster)."""

from __future__ import annotations

import glob
import os
import sys
from pathlib import Path

from ecomlake.errors import EcomlakeError
from ecomlake.java import ensure_java
from ecomlake.jvm.parts import (  # pinned there, once
    AWS_SDK_V2_VERSION,
    DELTA_VERSION,
    HADOOP_AWS_VERSION,
    SCALA,
    SPARK_VERSION,
    spark_jars_dir,
    spark_s3_jars_dir,
)
from ecomlake.lake.fs import is_s3
from ecomlake.pyfiles import project_zip
from ecomlake.settings import Settings, SparkTuning, aws_region, debug_enabled, s3_endpoint, under_spark_submit

# (setting, value) -> jar name prefixes that must be on the classpath, and the Maven coordinates that provide them.
REQUIRED_JARS = {
    ("LAKE_ENGINE", "delta-spark"): (
        ("delta-spark_", "delta-storage-"),
        f"io.delta:delta-spark_{SCALA}:{DELTA_VERSION}",
    ),
    ("KAFKA_SOURCE", "spark-kafka"): (
        ("spark-sql-kafka-0-10_", "kafka-clients-", "spark-token-provider-kafka-0-10_", "commons-pool2-"),
        f"org.apache.spark:spark-sql-kafka-0-10_{SCALA}:{SPARK_VERSION}",
    ),
}


def extra_jars(settings: Settings) -> list[str]:
    """SPARK_EXTRA_JARS: a directory of jars or a comma-separated list of jar paths."""
    if not settings.spark_extra_jars:
        return []
    jars: list[str] = []
    for item in settings.spark_extra_jars.split(","):
        item = item.strip()
        if not item:
            continue
        if os.path.isdir(item):
            jars.extend(sorted(glob.glob(os.path.join(item, "*.jar"))))
        elif os.path.isfile(item):
            jars.append(item)
        else:
            raise EcomlakeError(f"SPARK_EXTRA_JARS names {item!r}, which is neither a jar file nor a directory")
    return jars


# s3a: hadoop-aws (the version of pyspark's own Hadoop) and the AWS SDK v2 bundle it is built against.
S3_JAR_PREFIXES = ("hadoop-aws-", "bundle-")
S3_JARS = (f"org.apache.hadoop:hadoop-aws:{HADOOP_AWS_VERSION}", f"software.amazon.awssdk:bundle:{AWS_SDK_V2_VERSION}")


def spark_home_jars() -> Path:
    """The jars directory of the Spark this process launches (SPARK_HOME, else pyspark's own)."""
    from pyspark.find_spark_home import _find_spark_home

    return Path(_find_spark_home()) / "jars"


def s3_jars(settings: Settings) -> list[str]:
    """The jars a lake on S3 needs on the JVM class path, for the driver and the executors alike.

    Nothing when Spark's own jars directory already has them (the cluster image puts them there) or SPARK_PACKAGES
    names hadoop-aws; else those named in SPARK_EXTRA_JARS, else the fetched `spark-s3-jars` part (`make jvm-parts`).
    They go on spark.driver/executor.extraClassPath, not spark.jars: Hadoop loads the s3a file system from the JVM's
    class path, and the 500 MB SDK bundle is not copied to every executor (a cluster on this machine reads the same
    path; the image has them)."""
    if not is_s3(settings.lakehouse_uri):
        return []
    home = spark_home_jars()
    if all(any(home.glob(f"{p}*.jar")) for p in S3_JAR_PREFIXES) or "hadoop-aws" in (settings.spark_packages or ""):
        return []
    named = [j for j in extra_jars(settings) if Path(j).name.startswith(S3_JAR_PREFIXES)]
    if all(any(Path(j).name.startswith(p) for j in named) for p in S3_JAR_PREFIXES):
        return named
    cached = spark_s3_jars_dir()
    fetched = [str(j) for p in S3_JAR_PREFIXES for j in sorted(cached.glob(f"{p}*.jar"))]
    if all(any(Path(j).name.startswith(p) for j in fetched) for p in S3_JAR_PREFIXES):
        return fetched
    raise EcomlakeError(
        f"LAKEHOUSE_URI={settings.lakehouse_uri} needs the s3a jars {' and '.join(S3_JARS)}: run `make jvm-parts` "
        f"(fetches them into {cached}) or name them in SPARK_EXTRA_JARS"
    )


def _needed(settings: Settings) -> list[tuple[str, str, tuple[str, ...], str]]:
    chosen = {("LAKE_ENGINE", settings.lake_engine), ("KAFKA_SOURCE", settings.kafka_source)}
    return [(k, v, prefixes, coords) for (k, v), (prefixes, coords) in REQUIRED_JARS.items() if (k, v) in chosen]


def missing_jars(settings: Settings, setting: str, value: str) -> list[str]:
    """Jar prefixes the given setting needs that neither SPARK_EXTRA_JARS nor SPARK_PACKAGES provides."""
    if settings.spark_packages:
        return []
    prefixes, _ = REQUIRED_JARS[(setting, value)]
    names = [Path(j).name for j in extra_jars(settings)]
    return [p for p in prefixes if not any(n.startswith(p) for n in names)]


def check_jars(settings: Settings) -> None:
    for setting, value, _, coords in _needed(settings):
        missing = missing_jars(settings, setting, value)
        if missing:
            raise EcomlakeError(
                f"{setting}={value} needs jars {', '.join(p + '*.jar' for p in missing)}: put them in "
                f"SPARK_EXTRA_JARS (a directory or comma list; `make jvm-parts` fetches them into {spark_jars_dir()}) "
                f"or set SPARK_PACKAGES={coords}"
            )


def builder_config(settings: Settings) -> dict[str, str]:
    tuning = SparkTuning.from_env()
    conf = {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": str(tuning.shuffle_partitions),
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.streaming.stopGracefullyOnShutdown": "true",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.driver.memory": tuning.driver_memory,
        # Adaptive execution re-plans at every shuffle, each step a Spark job of its own: worth it on a cluster's
        # large data, a fixed cost per cycle on a local master's small increments (off, a silver cycle takes about
        # half as long under the same load: docs/benchmarks.md#design-measurements).
        "spark.sql.adaptive.enabled": "false" if settings.is_local_master else "true",
        # Silver caches each cycle's increment for the few actions of that cycle: building the cached batches was a
        # large share of the JVM's CPU under load (JFR; docs/benchmarks.md#design-measurements); uncompressed they
        # are cheaper to build, and they are freed seconds later.
        "spark.sql.inMemoryColumnarStorage.compressed": "false",
        # Every cycle plans the same ~30 queries again, which generate more classes than Spark's default cache of
        # 100 holds; a larger one lets a cycle reuse the last cycle's (Janino and class loading were a visible share
        # of the JVM's CPU in that profile).
        "spark.sql.codegen.cache.maxEntries": "2000",
    }
    if settings.is_local_master:
        # The delta-rs engine reads a table version by naming its data files, and Spark lists more than 32 named
        # files with a Spark job of one task per file; on a local master those tasks run in this JVM anyway, so the
        # driver lists them itself, and the job costs more than the listing (docs/benchmarks.md#design-measurements).
        conf["spark.sql.sources.parallelPartitionDiscovery.threshold"] = "100000"
        # The workers run this interpreter, so they can leave Spark's archives off their path (ecomlake.spark_daemon).
        conf["spark.python.daemon.module"] = "ecomlake.spark_daemon"
    if settings.is_local_master or master_on_loopback(settings.spark_master):
        # Executors of a cluster on this machine (ecomlake.jvm.spark_cluster) call the driver back on loopback.
        conf["spark.driver.host"] = "127.0.0.1"
        conf["spark.driver.bindAddress"] = "127.0.0.1"
    java_options = []
    if not tuning.log4j_conf:  # with SPARK_LOG4J_CONF the driver's JVM options are the user's
        log4j = Path(__file__).with_name("log4j2.properties")
        if log4j.exists() and not debug_enabled():
            java_options.append(f"-Dlog4j.configurationFile=file:{log4j}")
        if settings.is_local_master:
            # G1's collector threads (concurrent marking included) take a noticeable share of the JVM's CPU where
            # everything shares two cores; the throughput collector takes far less, and its pauses did not show in
            # the latency (docs/benchmarks.md#design-measurements).
            java_options.append("-XX:+UseParallelGC")
    if java_options:
        conf["spark.driver.extraJavaOptions"] = " ".join(java_options)
    s3 = s3_jars(settings)
    jars = [j for j in extra_jars(settings) if j not in s3]
    if jars:
        conf["spark.jars"] = ",".join(jars)
    if s3:
        conf["spark.driver.extraClassPath"] = conf["spark.executor.extraClassPath"] = os.pathsep.join(s3)
    if settings.spark_packages:
        conf["spark.jars.packages"] = settings.spark_packages
    if settings.lake_engine == "delta-spark":
        conf["spark.sql.extensions"] = "io.delta.sql.DeltaSparkSessionExtension"
        conf["spark.sql.catalog.spark_catalog"] = "org.apache.spark.sql.delta.catalog.DeltaCatalog"
        if settings.is_local_master:
            # Delta rebuilds a table's state with 50 tasks by default: on a laptop's few cores, for tables of this
            # size, those fixed costs dominated every delta-spark run (docs/benchmarks.md#design-measurements).
            conf["spark.databricks.delta.snapshotPartitions"] = str(tuning.shuffle_partitions)
    if is_s3(settings.lakehouse_uri):
        # Credentials: the AWS_* variables through s3a's default provider chain (as the compose services have them).
        conf["spark.hadoop.fs.s3a.path.style.access"] = "true"
        conf["spark.hadoop.fs.s3.impl"] = "org.apache.hadoop.fs.s3a.S3AFileSystem"  # s3:// lakes are s3a to Hadoop
        region = aws_region()
        if region:
            conf["spark.hadoop.fs.s3a.endpoint.region"] = region
        endpoint = s3_endpoint()
        if endpoint:
            conf["spark.hadoop.fs.s3a.endpoint"] = endpoint
            if endpoint.startswith("http://"):
                conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] = "false"
    return conf


def master_on_loopback(master: str) -> bool:
    """spark://127.0.0.1:7077 and the like: a cluster on this machine."""
    hosts = master.split("://", 1)[-1].split(",")
    return master.startswith("spark://") and all(h.rsplit(":", 1)[0] in ("127.0.0.1", "localhost") for h in hosts)


def ships_project(settings: Settings) -> bool:
    """A cluster master and no spark-submit (which takes --py-files itself): executors get the project's zip."""
    return not settings.is_local_master and not under_spark_submit()


def get_spark(settings: Settings, app_name: str = "ecomlake"):
    """The process's Spark session (created once; later calls return the same session).

    On a cluster (client mode: this process is the driver) executors receive what the session names: the jars of
    SPARK_EXTRA_JARS (spark.jars, served by the driver) and the project's Python packages as one zip
    (spark.submit.pyFiles, see ecomlake.pyfiles). Their Python is PYSPARK_PYTHON, by default this interpreter."""
    check_jars(settings)
    ensure_java()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    if settings.is_local_master:
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name)
    if not under_spark_submit():
        builder = builder.master(settings.spark_master)
    for key, value in builder_config(settings).items():
        builder = builder.config(key, value)
    shipped = None
    if ships_project(settings):
        shipped = project_zip(Path(settings.run_dir) / "pyfiles")
        builder = builder.config("spark.submit.pyFiles", str(shipped))
    spark = builder.getOrCreate()
    if shipped is not None:
        # pyspark also puts the zip on this process's sys.path (at position 1, ahead of the installed project); the
        # driver keeps importing the installed project, whose package data (dbt/, log4j2.properties) is beside it.
        sys.path[:] = [p for p in sys.path if Path(p).name != shipped.name]
    spark.sparkContext.setLogLevel(SparkTuning.from_env().log_level)
    return spark
