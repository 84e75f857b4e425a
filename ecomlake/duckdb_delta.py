"""DuckDB's delta extension, installed offline from the PyPI package `duckdb-extension-delta`.

DuckDB normally downloads extensions from extensions.duckdb.org at first use; these machines cannot reach it.
The wheel ships the signed extension binary at
`duckdb_extension_delta/extensions/v<duckdb version>/delta.duckdb_extension`. `INSTALL '<that file>'` copies it
once into the connection's `extension_directory`; later connections only `LOAD delta`. Autoinstall and autoload
stay off so a missing extension is a clear error, never a silent download attempt.

A lake on S3 (LAKEHOUSE_URI=s3://… or s3a://…) also needs DuckDB's httpfs extension, installed the same way from
the PyPI package `duckdb-extension-httpfs`, and an S3 secret made from the settings Spark and delta-rs use
(S3_ENDPOINT, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_REGION; path-style URLs, plain HTTP for an http://
endpoint). The delta extension applies that secret to s3:// paths only, so tables are scanned as s3://, never s3a://
(with s3a:// it ignores the secret and asks the cloud's instance metadata service for credentials).

Also a dbt-duckdb plugin (`plugins: [{module: ecomlake.duckdb_delta}]` in dbt/profiles.yml): dbt-duckdb calls
`configure_connection` once on the database handle it opens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ecomlake.errors import EcomlakeError
from ecomlake.lake.fs import DEFAULT_REGION, is_s3
from ecomlake.settings import AwsCredentials, Settings, s3_endpoint

EXTENSION = "delta"
HTTPFS = "httpfs"
PACKAGES = {EXTENSION: "duckdb_extension_delta", HTTPFS: "duckdb_extension_httpfs"}

# duckdb.connect(config=...) options for every connection that reads Delta tables.
OFFLINE_CONFIG = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}


def packaged_extension_file(extension: str = EXTENSION) -> Path:
    """The extension binary shipped by duckdb-extension-<name> for the installed duckdb version."""
    import importlib

    import duckdb

    package = PACKAGES[extension]
    pip_name = package.replace("_", "-")
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise EcomlakeError(f"the PyPI package {pip_name} is not installed (pip install -e .)") from None
    if module.__file__ is None:  # a namespace package of that name, not the installed one
        raise EcomlakeError(f"the PyPI package {pip_name} is not installed (pip install -e .)")
    version = duckdb.__version__
    path = Path(module.__file__).parent / "extensions" / f"v{version}" / f"{extension}.duckdb_extension"
    if not path.is_file():
        shipped = sorted(p.name for p in path.parent.parent.glob("v*"))
        raise EcomlakeError(
            f"{pip_name} ships no extension for duckdb {version} (it has: {', '.join(shipped) or 'none'}); "
            "install the matching pair from pyproject.toml"
        )
    return path


def ensure_loaded(conn, extension: str = EXTENSION) -> None:
    """Install the extension into the connection's extension_directory if missing, then LOAD it."""
    installed = conn.execute(
        "select installed, loaded from duckdb_extensions() where extension_name = ?", [extension]
    ).fetchone()
    if installed and installed[1]:
        return
    if not (installed and installed[0]):
        conn.execute(f"INSTALL '{packaged_extension_file(extension)}'")
    conn.execute(f"LOAD {extension}")


def scan_uri(uri: str) -> str:
    """The location to give delta_scan: s3a:// spelled s3:// (see the module docstring)."""
    return "s3://" + uri.split("://", 1)[1] if uri.startswith("s3a://") else uri


def configure_s3(conn, endpoint: str | None = None, credentials: AwsCredentials | None = None) -> None:
    """httpfs loaded and the S3 secret `ecomlake_lake` (for every s3:// path) made from the settings."""
    ensure_loaded(conn, HTTPFS)
    endpoint = endpoint if endpoint is not None else s3_endpoint()
    creds = credentials or AwsCredentials.from_env()
    if not (creds.access_key_id and creds.secret_access_key):
        raise EcomlakeError("DuckDB reads an S3 lake with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY: set both")
    options = {"KEY_ID": creds.access_key_id, "SECRET": creds.secret_access_key,
               "REGION": creds.region or DEFAULT_REGION}
    if creds.session_token:
        options["SESSION_TOKEN"] = creds.session_token
    fields = [f"{k} '{_quote(v)}'" for k, v in options.items()]
    if endpoint:
        host = endpoint.split("://", 1)[-1].rstrip("/")
        fields += [f"ENDPOINT '{_quote(host)}'", "URL_STYLE 'path'", f"USE_SSL {str(not endpoint.startswith('http://')).lower()}"]
    conn.execute(f"CREATE OR REPLACE SECRET ecomlake_lake (TYPE s3, {', '.join(fields)})")


def _quote(value: str) -> str:
    return value.replace("'", "''")


def connect(database: str = ":memory:", extension_dir: str | None = None, read_only: bool = False, s3: bool = False):
    """A DuckDB connection that can `delta_scan` (extensions from `extension_dir`, never downloaded); with `s3`,
    also tables on S3 (see configure_s3)."""
    import duckdb

    config: dict[str, Any] = dict(OFFLINE_CONFIG)
    if extension_dir:
        Path(extension_dir).mkdir(parents=True, exist_ok=True)
        config["extension_directory"] = extension_dir
    conn = duckdb.connect(database, read_only=read_only, config=config)
    ensure_loaded(conn)
    if s3:
        configure_s3(conn)
    return conn


try:
    from dbt.adapters.duckdb.plugins import BasePlugin
except ImportError:  # dbt-duckdb absent: the helpers above still work
    BasePlugin = object  # type: ignore[misc,assignment]


class Plugin(BasePlugin):
    """dbt-duckdb plugin: offline config on connect, then the delta extension loaded explicitly."""

    def update_connection_config(self, creds, config) -> None:
        config.update(OFFLINE_CONFIG)
        ext_dir = config.get("extension_directory")
        if ext_dir:
            Path(ext_dir).mkdir(parents=True, exist_ok=True)

    def configure_connection(self, conn) -> None:
        ensure_loaded(conn)
        if is_s3(Settings.from_env().lakehouse_uri):
            configure_s3(conn)
