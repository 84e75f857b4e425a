"""A local S3-compatible server for the tests of a lake on S3 (LAKEHOUSE_URI=s3a://…), on 127.0.0.1.

MinIO, the compose stack's store, cannot be obtained on these machines; moto's server (PyPI `moto[server]`) can, and
has what the lake's engines use: path-style requests, multipart uploads, ranged reads, ListObjectsV2, copy and
batch delete (Hadoop s3a), and conditional puts with `If-None-Match: *` (412 when the key exists), with which
delta-rs commits a Delta log entry safely without a locking provider. It keeps objects in memory.

`s3_lake_server` (session scope) is one server with the empty bucket `lakehouse`. Its `env` is what docker-compose.yml
gives the services: S3_ENDPOINT and AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_REGION for ecomlake (Spark s3a,
delta-rs, pyarrow, DuckDB), S3_ACCESS_KEY / S3_SECRET_KEY for Trino's catalogs. moto accepts any signature, so the
credentials are checked by what the engines send: `recording()` captures every request (moto's recorder), and
`Request.access_key` is the key id it was signed with.

Import into conftest.py or a test module: `from fixtures_s3 import s3_lake_server`. Without moto the fixture skips
with one line; under CI=true it fails, naming the part.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

BUCKET = "lakehouse"
REGION = "us-east-1"
# docker-compose.yml's defaults (MINIO_ROOT_USER / MINIO_ROOT_PASSWORD), used as the compose services use them.
ACCESS_KEY, SECRET_KEY = "ecomlake", "ecomlake-minio-local"
START_TIMEOUT_S = 60.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def missing(part: str) -> None:
    """A part the S3 tests need is not there: fail under CI, else skip; one line either way."""
    message = f"S3 lake tests need {part}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    user_agent: str
    authorization: str
    if_none_match: str | None = None

    @property
    def access_key(self) -> str | None:
        """The key id of the SigV4 signature (`Credential=<key>/<date>/<region>/s3/aws4_request`)."""
        found = re.search(r"Credential=([^/]+)/", self.authorization)
        return found.group(1) if found else None


@dataclass
class S3LakeServer:
    endpoint: str
    bucket: str
    process: subprocess.Popen = field(repr=False)
    recording_file: Path = field(repr=False)

    @property
    def env(self) -> dict[str, str]:
        """The S3 settings the compose stack gives its services (see the module docstring)."""
        return {
            "S3_ENDPOINT": self.endpoint, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": REGION, "S3_ACCESS_KEY": ACCESS_KEY, "S3_SECRET_KEY": SECRET_KEY,
        }

    def lake_uri(self, name: str | None = None) -> str:
        """A fresh lake root in the bucket, as Spark spells it: s3a://lakehouse/<name>."""
        return f"s3a://{self.bucket}/{name or 'lake-' + uuid.uuid4().hex[:8]}"

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY)

    def _recorder(self, action: str) -> None:
        request = urllib.request.Request(f"{self.endpoint}/moto-api/recorder/{action}", data=b"", method="POST")
        urllib.request.urlopen(request, timeout=10).close()

    @contextmanager
    def recording(self) -> Iterator[list[Request]]:
        """Every request the server receives inside the block (bodies left out), filled in when the block ends."""
        requests: list[Request] = []
        self._recorder("reset-recording")
        self._recorder("start-recording")
        try:
            yield requests
        finally:
            self._recorder("stop-recording")
            for entry in _recorded(self.recording_file):
                headers = {k.lower(): v for k, v in entry.get("headers", {}).items()}
                requests.append(Request(entry["method"], entry["url"].split("?", 1)[0],
                                        headers.get("user-agent", ""), headers.get("authorization", ""),
                                        headers.get("if-none-match")))
            self._recorder("reset-recording")


def _recorded(path: Path) -> Iterator[dict]:
    """The entries of moto's recording file. moto writes each entry and its newline in two writes, from the server's
    request threads, so two entries can share a line ("{...}{...}" and then two newlines): read them as a stream."""
    text = path.read_text() if path.exists() else ""
    decoder, at = json.JSONDecoder(), 0
    while True:
        while at < len(text) and text[at].isspace():
            at += 1
        if at == len(text):
            return
        entry, at = decoder.raw_decode(text, at)
        yield entry


@pytest.fixture(scope="session")
def s3_lake_server(tmp_path_factory) -> Iterator[S3LakeServer]:
    """moto's S3 server on a free port of 127.0.0.1 with the empty bucket `lakehouse`, stopped after the session."""
    try:
        import boto3  # noqa: F401
        import flask  # noqa: F401  (moto's server needs the [server] extra)
        import moto.server  # noqa: F401
    except ImportError as err:
        missing(f"an S3-compatible server: pip install 'moto[server]' ({err})")
    work = tmp_path_factory.mktemp("s3")
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    recording = work / "recording.jsonl"
    env = {**os.environ, "MOTO_RECORDER_FILEPATH": str(recording)}
    with open(work / "moto.log", "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                   stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    server = S3LakeServer(endpoint, BUCKET, process, recording)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"moto's S3 server did not start on {endpoint} (log: {work / 'moto.log'})",
                                pytrace=False)
                time.sleep(0.2)
        server.client().create_bucket(Bucket=BUCKET)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
