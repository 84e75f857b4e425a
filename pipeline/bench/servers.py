"""What the benchmarks start beside the embedded stack: the JVM parts for Spark's official engines, a private Apache
Kafka, and the cluster stack's SQL side (an S3 server, the Hive Metastore, Trino), all on 127.0.0.1 under the bench's
scratch directory, stopped when the benchmark ends.

A part that cannot be had (no `mvn` to fetch it, no Java >= 24 for Trino, no moto for S3) is not an error here: the
helpers return or raise `Unavailable` with one line, and the stage reports the figures it concerns as skipped.

The S3 server is moto's (PyPI `moto[server]`, a dev extra of this project): MinIO, the compose stack's store, cannot be
installed on these machines. What the Trino tests start (tests/fixtures_trino.py, tests/fixtures_s3.py) is started the
same way here, from product code only: the benchmarks never import the tests.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from ecomlake import broker
from ecomlake.errors import EcomlakeError
from ecomlake.settings import Settings

if TYPE_CHECKING:
    from ecomlake.jvm.trino_server import TrinoServer

S3_BUCKET = "lakehouse"
S3_REGION = "us-east-1"
# docker-compose.yml's defaults (MINIO_ROOT_USER / MINIO_ROOT_PASSWORD), as the compose services use them.
S3_ACCESS_KEY, S3_SECRET_KEY = "ecomlake", "ecomlake-minio-local"
S3_START_TIMEOUT_S = 60.0


class Unavailable(EcomlakeError):
    """A part a benchmark needs cannot be had on this machine (the message says which and why)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def needs_jars(settings: Settings) -> bool:
    return settings.kafka_source != "python" or settings.lake_engine != "delta-rs"


def with_spark_jars(settings: Settings) -> Settings:
    """`settings` with SPARK_EXTRA_JARS = the `spark-jars` part of the JVM parts cache (fetched with mvn if needed),
    unless SPARK_EXTRA_JARS or SPARK_PACKAGES already name jars. Raises Unavailable when mvn cannot fetch them."""
    from ecomlake.jvm import parts

    if settings.spark_extra_jars or settings.spark_packages:
        return settings
    try:
        parts.fetch(["spark"])
    except EcomlakeError as err:
        raise Unavailable(str(err)) from None
    return dataclasses.replace(settings, spark_extra_jars=str(parts.spark_jars_dir()))


def jar_problem(settings: Settings) -> str | None:
    """Why a Spark session for these settings cannot start for lack of jars, or None."""
    from ecomlake.spark import check_jars

    try:
        check_jars(settings)
    except EcomlakeError as err:
        return str(err)
    return None


def subprocess_env(settings: Settings) -> dict[str, str]:
    """The environment of a child process acting on `settings`: the caller's, minus whatever pipeline settings and
    jars its shell had, plus `settings`."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("KAFKA_", "TOPIC_", "LAKE", "SPARK_EXTRA", "SPARK_PACKAGES", "DBT_TARGET"))}
    env.update(settings.to_env())
    return env


@contextmanager
def private_kafka(settings: Settings) -> Iterator[Settings]:
    """A single-node Apache Kafka (ecomlake.broker with KAFKA_BROKER=kafka) on a free port, its data and state under
    `<run_dir>/bench-kafka`; yields `settings` pointed at it. Raises Unavailable when its libs cannot be fetched."""
    from ecomlake.jvm import parts

    try:
        parts.fetch(["kafka"])
    except EcomlakeError as err:
        raise Unavailable(str(err)) from None
    kafka = dataclasses.replace(settings, broker="kafka", kafka_bootstrap=f"127.0.0.1:{free_port()}",
                                run_dir=str(Path(settings.run_dir) / "bench-kafka"))
    broker.start(kafka)
    try:
        yield kafka
    finally:
        broker.stop(kafka)


@dataclass
class S3Server:
    """moto's S3 server on 127.0.0.1 with the empty bucket `lakehouse` (objects in memory)."""

    work_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """The S3 settings docker-compose.yml gives its services: S3_ENDPOINT and AWS_* for ecomlake, S3_ACCESS_KEY /
        S3_SECRET_KEY for Trino's catalogs and the metastore."""
        return {"S3_ENDPOINT": self.endpoint, "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY,
                "AWS_REGION": S3_REGION, "S3_ACCESS_KEY": S3_ACCESS_KEY, "S3_SECRET_KEY": S3_SECRET_KEY}

    def start(self) -> "S3Server":
        try:
            import boto3  # noqa: F401
            import flask  # noqa: F401  (moto's server needs the [server] extra)
            import moto.server  # noqa: F401
        except ImportError as err:
            raise Unavailable(f"an S3-compatible server: pip install 'moto[server]' ({err})") from None
        self.work_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.work_dir / "moto.log"
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + S3_START_TIMEOUT_S
        while True:
            try:
                urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=2).close()
                break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise EcomlakeError(f"moto's S3 server did not start on {self.endpoint} (log: {log_path})") from None
                time.sleep(0.2)
        import boto3

        boto3.client("s3", endpoint_url=self.endpoint, region_name=S3_REGION, aws_access_key_id=S3_ACCESS_KEY,
                     aws_secret_access_key=S3_SECRET_KEY).create_bucket(Bucket=S3_BUCKET)
        return self

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@contextmanager
def trino_stack(work_dir: Path) -> Iterator["TrinoServer"]:
    """Trino 476 with the project's catalogs, its Hive Metastore 4.0.1 (the compose configuration, on Derby) and an S3
    server for what Trino writes (Trino 476 writes Delta on object storage only), as tests/fixtures_trino.py starts
    them. Raises Unavailable when a part is missing (mvn to fetch the servers, a Java >= 24, moto)."""
    from ecomlake.jvm import parts
    from ecomlake.jvm.hive_metastore import HiveMetastore
    from ecomlake.jvm.trino_server import TrinoServer, find_java

    try:
        parts.fetch(["trino"])
        find_java()
    except EcomlakeError as err:
        raise Unavailable(str(err)) from None
    s3 = S3Server(work_dir / "s3").start()
    metastore = server = None
    try:
        metastore = HiveMetastore(work_dir / "metastore", free_port(), s3=s3.env)
        metastore.run_dir.mkdir(parents=True, exist_ok=True)
        metastore.start()
        server = TrinoServer(work_dir / "trino", free_port(), metastore_uri=metastore.uri, s3=s3.env)
        server.run_dir.mkdir(parents=True, exist_ok=True)
        server.start()
        yield server
    finally:
        if server is not None:
            server.stop()
        if metastore is not None:
            metastore.stop()
        s3.stop()
