"""Session fixtures for a real Trino (ecomlake/jvm/trino_server.py): one Trino and one S3-compatible server per test
session, on 127.0.0.1.

`trino_server` is a running Trino 476 with the project's catalogs (file metastore, silver readable at file://
locations) and S3 pointed at `s3_server`, a moto server with the bucket `lakehouse`: Trino 476 writes Delta only on
object storage (not at file:// locations), so what dbt writes through Trino (gold) goes there.

Without a part (Trino's server from Maven, a Java >= 24, moto) the fixtures skip with one line; under CI=true they
fail, naming the part.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from ecomlake.errors import EcomlakeError

BUCKET = "lakehouse"
S3_KEYS = {"S3_ACCESS_KEY": "ecomlake", "S3_SECRET_KEY": "ecomlake-s3-local"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def missing(part: str) -> None:
    """A part the real-Trino tests need is not there: fail under CI, else skip; one line either way."""
    message = f"real Trino tests need {part}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    bucket: str

    @property
    def env(self) -> dict[str, str]:
        """What Trino's catalog files read (${ENV:S3_ENDPOINT} ...), as in docker-compose.yml."""
        return {"S3_ENDPOINT": self.endpoint, **S3_KEYS}


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A moto S3 server (in memory) with an empty bucket `lakehouse`."""
    try:
        import boto3
        import moto.server  # noqa: F401
    except ImportError:
        missing("an S3-compatible server: pip install 'moto[server]'")
    port = _free_port()
    log = tmp_path_factory.mktemp("s3") / "moto.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                   stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"moto S3 server did not start (log: {log})", pytrace=False)
                time.sleep(0.2)
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=S3_KEYS["S3_ACCESS_KEY"],
                     aws_secret_access_key=S3_KEYS["S3_SECRET_KEY"]).create_bucket(Bucket=BUCKET)
        yield S3Server(endpoint, BUCKET)
    finally:
        process.terminate()
        process.wait(30)


@pytest.fixture(scope="session")
def trino_server(s3_server, tmp_path_factory):
    """The session's Trino: a running ecomlake.jvm.trino_server.TrinoServer (`.port`, `.query(sql)`)."""
    from ecomlake.jvm import parts
    from ecomlake.jvm.trino_server import TrinoServer, find_java

    try:
        parts.fetch(["trino"])
    except EcomlakeError as err:
        missing(f"the Trino {parts.TRINO_VERSION} server from Maven ({err})")
    try:
        find_java()
    except EcomlakeError as err:
        missing(str(err))
    server = TrinoServer(tmp_path_factory.mktemp("trino"), _free_port(), s3=s3_server.env)
    started = time.perf_counter()
    server.start()
    server.start_seconds = time.perf_counter() - started
    yield server
    server.stop()
