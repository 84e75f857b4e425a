"""The cluster stack's Hive Metastore 4.0.1 as one local process on 127.0.0.1, for a local Trino (trino_server.py).

It runs the fetched `hive-metastore` part (the standalone server's lib/ and Derby schema scripts) with the
`hive-metastore-hadoop` part (Hadoop 3.3.6 with s3a, as the compose image has) under Java 17+, configured by the
compose files themselves: docker/hive-metastore/conf/hive-site.xml verbatim (warehouse dir, the blanked metadata
transformer, ...) and core-site.xml with only `fs.s3a.endpoint` replaced by the local S3 server's. What differs from
compose: the metastore database is an embedded Derby under run_dir (compose: PostgreSQL), created by the schema tool
on first start; credentials reach s3a as AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, as in compose.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from ecomlake.errors import EcomlakeError
from ecomlake.java import find_java
from ecomlake.jvm import parts

COMPOSE_CONF = Path(__file__).resolve().parents[2] / "docker" / "hive-metastore" / "conf"
START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 30.0
SCHEMA_TOOL = "org.apache.hadoop.hive.metastore.tools.schematool.MetastoreSchemaTool"
MAIN_CLASS = "org.apache.hadoop.hive.metastore.HiveMetaStore"


def _site(properties: dict[str, str]) -> str:
    body = "".join(f"  <property><name>{k}</name><value>{v}</value></property>\n" for k, v in properties.items())
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<configuration>\n{body}</configuration>\n'


@dataclass
class HiveMetastore:
    """`s3`: {"S3_ENDPOINT", "S3_ACCESS_KEY", "S3_SECRET_KEY"}, the same mapping TrinoServer takes."""

    run_dir: Path
    port: int = 9083
    s3: Mapping[str, str] | None = None
    heap: str = "512m"
    process: subprocess.Popen | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir).resolve()

    @property
    def uri(self) -> str:
        return f"thrift://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.run_dir / "metastore.log"

    def write_config(self) -> Path:
        conf = self.run_dir / "conf"
        conf.mkdir(parents=True, exist_ok=True)
        (conf / "hive-site.xml").write_text((COMPOSE_CONF / "hive-site.xml").read_text())
        core = (COMPOSE_CONF / "core-site.xml").read_text()
        if self.s3:
            core = re.sub(r"(<name>fs\.s3a\.endpoint</name>\s*<value>)[^<]*", rf"\g<1>{self.s3['S3_ENDPOINT']}", core)
        (conf / "core-site.xml").write_text(core)
        # Read after hive-site.xml, so these win: the local database, port and logging.
        (conf / "metastore-site.xml").write_text(_site({
            "javax.jdo.option.ConnectionURL": f"jdbc:derby:;databaseName={self.run_dir / 'derby'};create=true",
            "javax.jdo.option.ConnectionDriverName": "org.apache.derby.jdbc.EmbeddedDriver",
            "metastore.thrift.port": str(self.port),
            "metastore.async.log.enabled": "false",  # async logging needs the LMAX disruptor, not in lib/
        }))
        return conf

    def _java(self, conf: Path) -> list[str]:
        home = parts.require("hive-metastore")
        hadoop = parts.require("hive-metastore-hadoop")
        classpath = os.pathsep.join([str(conf), str(home / "lib" / "*"), str(hadoop / "*")])
        return [str(Path(find_java().home) / "bin" / "java"), f"-Xmx{self.heap}", f"-Dderby.system.home={self.run_dir}",
                "-cp", classpath]

    def _env(self) -> dict[str, str]:
        env = {**os.environ, "METASTORE_HOME": str(parts.require("hive-metastore"))}
        if self.s3:
            env.update(AWS_ACCESS_KEY_ID=self.s3["S3_ACCESS_KEY"], AWS_SECRET_ACCESS_KEY=self.s3["S3_SECRET_KEY"])
        return env

    def start(self, timeout: float = START_TIMEOUT_S) -> "HiveMetastore":
        conf = self.write_config()
        java = self._java(conf)
        with open(self.log_path, "ab") as log:
            if not (self.run_dir / "derby").exists():
                init = subprocess.run([*java, SCHEMA_TOOL, "-initSchema", "-dbType", "derby"], env=self._env(),
                                      cwd=self.run_dir, stdout=log, stderr=subprocess.STDOUT, timeout=timeout)
                if init.returncode != 0:
                    raise EcomlakeError(f"the Hive Metastore schema tool failed (log: {self.log_path})")
            self.process = subprocess.Popen([*java, MAIN_CLASS], env=self._env(), cwd=self.run_dir, stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                self.process = None
                raise EcomlakeError(f"the Hive Metastore exited while starting (log: {self.log_path})")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if time.monotonic() >= deadline:
                    self.stop()
                    raise EcomlakeError(f"the Hive Metastore did not listen on {self.port} within {timeout:.0f}s "
                                        f"(log: {self.log_path})") from None
                time.sleep(0.25)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    def __enter__(self) -> "HiveMetastore":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
