"""Session fixtures for a real Trino (ecomlake/jvm/trino_server.py): one Trino, one Hive Metastore and one S3
server (fixtures_s3.s3_lake_server, shared with the S3 lake tests) per test session, all on 127.0.0.1.

`trino_server` is a running Trino 476 with the project's catalogs, its metastore `hive_metastore` (the compose
stack's Hive Metastore 4.0.1 with the compose config files, on Derby: ecomlake/jvm/hive_metastore.py), silver
readable at file:// locations, and S3 pointed at `s3_lake_server`, a moto server with the bucket `lakehouse`: Trino 476
writes Delta only on object storage (not at file:// locations), so what dbt writes through Trino (gold) goes there.

Without a part (Trino's server and the metastore from Maven, a Java >= 24, moto) the fixtures skip with one line;
under CI=true they fail, naming the part.
"""

from __future__ import annotations

import os
import socket

import pytest

from ecomlake.errors import EcomlakeError


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


def _trino_parts() -> None:
    """Trino's server and its metastore, fetched with mvn into the JVM cache (a no-op once cached)."""
    from ecomlake.jvm import parts

    try:
        parts.fetch(["trino"])
    except EcomlakeError as err:
        missing(f"Trino {parts.TRINO_VERSION} and Hive Metastore {parts.HIVE_METASTORE_VERSION} from Maven ({err})")


@pytest.fixture(scope="session")
def hive_metastore(s3_lake_server, tmp_path_factory):
    """The session's Hive Metastore (thrift URI: `.uri`)."""
    from ecomlake.jvm.hive_metastore import HiveMetastore

    _trino_parts()
    metastore = HiveMetastore(tmp_path_factory.mktemp("metastore"), _free_port(), s3=s3_lake_server.env)
    try:
        metastore.start()
    except EcomlakeError as err:
        pytest.fail(str(err), pytrace=False)
    yield metastore
    metastore.stop()


@pytest.fixture(scope="session")
def trino_server(hive_metastore, s3_lake_server, tmp_path_factory):
    """The session's Trino: a running ecomlake.jvm.trino_server.TrinoServer (`.port`, `.query(sql)`)."""
    from ecomlake.jvm.trino_server import TrinoServer, find_java

    _trino_parts()
    try:
        find_java()
    except EcomlakeError as err:
        missing(str(err))
    server = TrinoServer(tmp_path_factory.mktemp("trino"), _free_port(), metastore_uri=hive_metastore.uri,
                         s3=s3_lake_server.env)
    try:
        server.start()
    except EcomlakeError as err:
        pytest.fail(str(err), pytrace=False)
    yield server
    server.stop()
