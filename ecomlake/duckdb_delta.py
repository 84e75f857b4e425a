"""DuckDB's delta extension, installed offline from the PyPI package `duckdb-extension-delta`.

DuckDB normally downloads extensions from extensions.duckdb.org at first use; these machines cannot reach it.
The wheel ships the signed extension binary at
`duckdb_extension_delta/extensions/v<duckdb version>/delta.duckdb_extension`. `INSTALL '<that file>'` copies it
once into the connection's `extension_directory`; later connections only `LOAD delta`. Autoinstall and autoload
stay off so a missing extension is a clear error, never a silent download attempt.

Also a dbt-duckdb plugin (`plugins: [{module: ecomlake.duckdb_delta}]` in dbt/profiles.yml): dbt-duckdb calls
`configure_connection` once on the database handle it opens.
"""

from __future__ import annotations

from pathlib import Path

from ecomlake.errors import EcomlakeError

EXTENSION = "delta"

# duckdb.connect(config=...) options for every connection that reads Delta tables.
OFFLINE_CONFIG = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}


def packaged_extension_file() -> Path:
    """The extension binary shipped by duckdb-extension-delta for the installed duckdb version."""
    import duckdb

    try:
        import duckdb_extension_delta
    except ImportError:
        raise EcomlakeError("the PyPI package duckdb-extension-delta is not installed (pip install -e .)") from None
    version = duckdb.__version__
    path = Path(duckdb_extension_delta.__file__).parent / "extensions" / f"v{version}" / f"{EXTENSION}.duckdb_extension"
    if not path.is_file():
        shipped = sorted(p.name for p in path.parent.parent.glob("v*"))
        raise EcomlakeError(
            f"duckdb-extension-delta ships no extension for duckdb {version} (it has: {', '.join(shipped) or 'none'}); "
            "install the matching pair from pyproject.toml"
        )
    return path


def ensure_loaded(conn) -> None:
    """Install the delta extension into the connection's extension_directory if missing, then LOAD it."""
    installed = conn.execute(
        "select installed, loaded from duckdb_extensions() where extension_name = ?", [EXTENSION]
    ).fetchone()
    if installed and installed[1]:
        return
    if not (installed and installed[0]):
        conn.execute(f"INSTALL '{packaged_extension_file()}'")
    conn.execute(f"LOAD {EXTENSION}")


def connect(database: str = ":memory:", extension_dir: str | None = None, read_only: bool = False):
    """A DuckDB connection that can `delta_scan` (extensions from `extension_dir`, never downloaded)."""
    import duckdb

    config = dict(OFFLINE_CONFIG)
    if extension_dir:
        Path(extension_dir).mkdir(parents=True, exist_ok=True)
        config["extension_directory"] = extension_dir
    conn = duckdb.connect(database, read_only=read_only, config=config)
    ensure_loaded(conn)
    return conn


try:
    from dbt.adapters.duckdb.plugins import BasePlugin
except ImportError:  # dbt-duckdb absent: the helpers above still work
    BasePlugin = object  # type: ignore[misc,assignment]


class Plugin(BasePlugin):  # type: ignore[misc,valid-type]
    """dbt-duckdb plugin: offline config on connect, then the delta extension loaded explicitly."""

    def update_connection_config(self, creds, config) -> None:
        config.update(OFFLINE_CONFIG)
        ext_dir = config.get("extension_directory")
        if ext_dir:
            Path(ext_dir).mkdir(parents=True, exist_ok=True)

    def configure_connection(self, conn) -> None:
        ensure_loaded(conn)
