"""Trino, the cluster stack's SQL engine, as one local server on 127.0.0.1 (tests, benchmarks, local runs).

The server is the fetched `trino-server` part (lib/ plus the delta-lake and hive plugins, see `parts`), started
straight with `java` (no launcher) as a single node that is coordinator and worker at once, with a small heap. All
it writes goes under `run_dir`: etc/ (config, catalogs), data/ (the process's working directory, what the launcher
calls node.data-dir: Trino 476 has no such server property), metastore/ and trino.log.

Catalogs are the project's own files, trino/catalog/delta.properties and hive.properties, with only these changes
(`catalog_properties`):
  - `hive.metastore.uri=thrift://hive-metastore:9083` becomes `metastore_uri` when one is given (a local Hive
    Metastore), else Trino's file metastore in run_dir/metastore: `hive.metastore=file`,
    `hive.metastore.catalog.dir`, and `hive.metastore.disable-location-checks=true` (the file metastore otherwise
    insists that managed tables live under its own directory, not under the gold schema's location).
  - `fs.native-local.enabled=true` and `local.location=/` are added: tables at `file://` locations (a local
    LAKEHOUSE_URI) become readable. Trino 476 cannot *write* Delta tables there beyond their first commit (no
    transaction log synchronizer for `file:`, trinodb/trino#30526), so what dbt writes (gold) must be on S3.
  - the S3 lines stay as they are; their `${ENV:S3_*}` values come from `s3` (S3_ENDPOINT, S3_ACCESS_KEY,
    S3_SECRET_KEY, as in docker-compose.yml). Without `s3` they are dropped: the lake is then read-only to Trino.

    python -m ecomlake.jvm.trino_server --port 8080 --run-dir .ecomlake/trino   # runs until Ctrl-C
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from ecomlake.errors import EcomlakeError
from ecomlake.java import _major_version
from ecomlake.jvm import parts
from ecomlake.settings import trino_java_home

MIN_JAVA = 24
DEFAULT_JAVA_HOME = "/usr/lib/jvm/temurin-25-jdk-amd64"
CATALOG_DIR = Path(__file__).resolve().parents[2] / "trino" / "catalog"
CATALOGS = ("delta", "hive")
MAIN_CLASS = "io.trino.server.TrinoServer"
START_TIMEOUT_S = 180.0  # a cold JVM loading two plugins on a busy 2-core machine
STOP_TIMEOUT_S = 30.0
JVM_OPTIONS = (
    "-XX:+UseG1GC", "-XX:+ExitOnOutOfMemoryError", "-XX:-OmitStackTraceInFastThrow",
    "-XX:ReservedCodeCacheSize=256M", "-XX:PerMethodRecompilationCutoff=10000",
    "-XX:PerBytecodeRecompilationCutoff=10000", "-Djdk.attach.allowAttachSelf=true",
    "-Djdk.nio.maxCachedBufferSize=2000000", "-Dfile.encoding=UTF-8", "-XX:+EnableDynamicAgentLoading",
    "--enable-native-access=ALL-UNNAMED",
)
S3_LINE_PREFIXES = ("fs.native-s3.enabled", "s3.")


def find_java(env: Mapping[str, str] | None = None) -> Path:
    """The Java home that runs Trino: TRINO_JAVA_HOME (which must be >= 24), else the first JDK >= 24 among
    Temurin 25's usual home, JAVA_HOME and /usr/lib/jvm/*."""
    explicit = trino_java_home(env)
    if explicit:
        version = _major_version(Path(explicit) / "bin" / "java")
        if version is None or version < MIN_JAVA:
            found = f"Java {version}" if version else "no java"
            raise EcomlakeError(f"TRINO_JAVA_HOME={explicit} has {found}; Trino {parts.TRINO_VERSION} needs Java >= {MIN_JAVA}")
        return Path(explicit)
    env = os.environ if env is None else env
    jvm_dir = Path("/usr/lib/jvm")
    candidates = [Path(DEFAULT_JAVA_HOME)]
    if env.get("JAVA_HOME"):
        candidates.append(Path(env["JAVA_HOME"]))
    if jvm_dir.is_dir():
        candidates += sorted(jvm_dir.iterdir(), reverse=True)
    for home in candidates:
        version = _major_version(home / "bin" / "java")
        if version is not None and version >= MIN_JAVA:
            return home
    raise EcomlakeError(f"Trino {parts.TRINO_VERSION} needs Java >= {MIN_JAVA}: none found ({DEFAULT_JAVA_HOME}, "
                        "JAVA_HOME, /usr/lib/jvm); install one (e.g. Temurin 25) and set TRINO_JAVA_HOME")


def catalog_properties(name: str, metastore_dir: Path, metastore_uri: str | None = None, s3: bool = True) -> str:
    """trino/catalog/<name>.properties for a local run (the overrides are listed in the module docstring)."""
    out = []
    for line in (CATALOG_DIR / f"{name}.properties").read_text().splitlines():
        key = line.split("=", 1)[0].strip()
        if key == "hive.metastore.uri":
            if metastore_uri:
                out.append(f"hive.metastore.uri={metastore_uri}")
            else:
                out += ["hive.metastore=file", f"hive.metastore.catalog.dir=local://{metastore_dir}",
                        "hive.metastore.disable-location-checks=true"]
            out += ["fs.native-local.enabled=true", "local.location=/"]
        elif s3 or not key.startswith(S3_LINE_PREFIXES):
            out.append(line)
    return "\n".join(out) + "\n"


def http_json(url: str, timeout: float = 5.0) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.load(response)


@dataclass
class TrinoServer:
    """One Trino node. `s3`: {"S3_ENDPOINT", "S3_ACCESS_KEY", "S3_SECRET_KEY"} for the catalogs' S3 lines."""

    run_dir: Path
    port: int = 8080
    metastore_uri: str | None = None
    s3: Mapping[str, str] | None = None
    heap: str = "1500m"
    query_memory: str = "512MB"
    process: subprocess.Popen | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir).resolve()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.run_dir / "trino.log"

    def write_config(self, server_dir: Path) -> Path:
        """etc/config.properties and etc/catalog/*.properties under run_dir; returns config.properties."""
        etc = self.run_dir / "etc"
        (etc / "catalog").mkdir(parents=True, exist_ok=True)
        (self.run_dir / "data").mkdir(exist_ok=True)
        metastore_dir = self.run_dir / "metastore"
        metastore_dir.mkdir(exist_ok=True)
        config = etc / "config.properties"
        config.write_text("\n".join([
            "coordinator=true",
            "node-scheduler.include-coordinator=true",
            f"http-server.http.port={self.port}",
            f"discovery.uri={self.url}",
            "http-server.log.enabled=false",
            "node.environment=ecomlake",
            f"node.id=ecomlake-trino-{self.port}",
            "node.internal-address=127.0.0.1",
            "node.bind-ip=127.0.0.1",
            f"plugin.dir={server_dir / 'plugin'}",
            f"catalog.config-dir={etc / 'catalog'}",
            f"log.path={self.log_path}",
            f"query.max-memory={self.query_memory}",
            f"query.max-memory-per-node={self.query_memory}",
            "",
        ]))
        for name in CATALOGS:
            (etc / "catalog" / f"{name}.properties").write_text(
                catalog_properties(name, metastore_dir, self.metastore_uri, s3=bool(self.s3)))
        return config

    def command(self, java_home: Path, server_dir: Path, config: Path) -> list[str]:
        return [str(java_home / "bin" / "java"), f"-Xmx{self.heap}", *JVM_OPTIONS, f"-Dconfig={config}",
                "-cp", str(server_dir / "lib" / "*"), MAIN_CLASS]

    def start(self, timeout: float = START_TIMEOUT_S) -> "TrinoServer":
        server_dir = parts.require("trino-server")
        java_home = find_java()
        config = self.write_config(server_dir)
        env = {**os.environ, **(self.s3 or {})}
        with open(self.run_dir / "stdout.log", "ab") as out:
            self.process = subprocess.Popen(self.command(java_home, server_dir, config), cwd=self.run_dir / "data",
                                            env=env, stdout=out, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self, timeout: float) -> None:
        """Until /v1/info says starting=false and the node is active (before that, queries fail with
        NO_NODES_AVAILABLE)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise EcomlakeError(f"Trino exited with code {self.process.returncode} while starting: "
                                    f"{self.last_error()} (log: {self.log_path})")
            try:
                if not http_json(f"{self.url}/v1/info")["starting"] and self._active_nodes() > 0:
                    return
            except OSError:
                pass
            if time.monotonic() >= deadline:
                raise EcomlakeError(f"Trino on port {self.port} was not ready within {timeout:.0f}s (log: {self.log_path})")
            time.sleep(0.5)

    def _active_nodes(self) -> int:
        return self.query("SELECT count(*) FROM system.runtime.nodes WHERE state = 'active'")[0][0]

    def connect(self, catalog: str = "delta", user: str = "ecomlake"):
        import trino

        return trino.dbapi.connect(host="127.0.0.1", port=self.port, user=user, catalog=catalog, http_scheme="http")

    def query(self, sql: str, catalog: str = "delta") -> list:
        conn = self.connect(catalog)
        try:
            cursor = conn.cursor()
            cursor.execute(sql)
            return cursor.fetchall()
        finally:
            conn.close()

    def last_error(self) -> str:
        """The first line of the last ERROR in the server log (or of stdout.log), for one-line failures."""
        for path in (self.log_path, self.run_dir / "stdout.log"):
            if not path.is_file():
                continue
            lines = path.read_text(errors="replace").splitlines()
            for i in range(len(lines) - 1, -1, -1):
                if "\tERROR\t" in lines[i] or lines[i].startswith(("Error", "Exception")):
                    detail = next((line.strip() for line in lines[i + 1:i + 8] if line.strip()[:2] == "1)"), "")
                    return (lines[i].split("\t")[-1] + " " + detail).strip()
        return "no error in the log"

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM (Trino's shutdown hooks close the catalogs), SIGKILL after `timeout`."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    def __enter__(self) -> "TrinoServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ecomlake.jvm.trino_server",
                                     description=f"Run Trino {parts.TRINO_VERSION} locally until interrupted.")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--run-dir", type=Path, default=Path(".ecomlake/trino"))
    parser.add_argument("--metastore-uri", help="thrift://host:port of a Hive Metastore (default: file metastore)")
    args = parser.parse_args(argv)
    parts.fetch(["trino"])
    s3 = {k: os.environ[k] for k in ("S3_ENDPOINT", "S3_ACCESS_KEY", "S3_SECRET_KEY") if os.environ.get(k)}
    started = time.perf_counter()
    with TrinoServer(args.run_dir, args.port, args.metastore_uri, s3=s3 if len(s3) == 3 else None) as server:
        print(f"Trino {parts.TRINO_VERSION} ready at {server.url} in {time.perf_counter() - started:.1f}s "
              f"(log: {server.log_path}); Ctrl-C stops it", flush=True)
        try:
            while server.process is not None and server.process.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except EcomlakeError as err:
        print(f"trino_server: error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
