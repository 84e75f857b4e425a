"""Apache Kafka as one KRaft node (broker and controller in one JVM) from the fetched libs, laid out like
docker-compose.yml's `kafka` service but on 127.0.0.1: the broker at KAFKA_BOOTSTRAP's port, the controller on a free
port of its own, data under the run directory (kept across restarts, unlike Tansu's).

`ecomlake.broker` owns the process (start, wait for metadata, state file, stop); this module only prepares it.
"""

from __future__ import annotations

import base64
import socket
import subprocess
import uuid
from pathlib import Path

from ecomlake.errors import EcomlakeError
from ecomlake.java import find_java
from ecomlake.jvm.parts import KAFKA_VERSION, require
from ecomlake.settings import Settings

MAIN_CLASS = "kafka.Kafka"
LABEL = f"Apache Kafka {KAFKA_VERSION}"
START_TIMEOUT_S = 90.0  # a cold JVM on a busy 2-core machine
STOP_TIMEOUT_S = 30.0  # a controlled shutdown flushes and closes every log
JVM_OPTIONS = ("-Xmx512m", "-Xms128m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
               "-XX:+ExplicitGCInvokesConcurrent", "-Djava.awt.headless=true")

LOG4J = """\
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
"""


def home(settings: Settings) -> Path:
    return Path(settings.run_dir) / "kafka"


def server_properties(settings: Settings, host: str, port: int, controller_port: int) -> str:
    """The compose service's KAFKA_* settings, as a server.properties file."""
    return "\n".join([
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.voters=1@{host}:{controller_port}",
        f"listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}",
        f"advertised.listeners=PLAINTEXT://{host}:{port}",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        f"log.dirs={home(settings) / 'data'}",
        f"num.partitions={settings.topic_partitions}",
        "offsets.topic.replication.factor=1",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "group.initial.rebalance.delay.ms=0",
        "auto.create.topics.enable=false",
        "",
    ])


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _cluster_id() -> str:
    """A Kafka Uuid in its base64 form (never starting with '-', which the storage tool would read as an option)."""
    while True:
        value = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not value.startswith("-"):
            return value


def prepare(settings: Settings, host: str, port: int, log: Path) -> list[str]:
    """Write the node's config, format its storage on first use, and return the command that runs it."""
    libs = require("kafka-libs")
    java = str(Path(find_java().home) / "bin" / "java")
    node = home(settings)
    node.mkdir(parents=True, exist_ok=True)
    config = node / "server.properties"
    config.write_text(server_properties(settings, host, port, _free_port(host)))
    log4j = node / "log4j.properties"
    log4j.write_text(LOG4J)
    base = [java, *JVM_OPTIONS, f"-Dlog4j.configuration=file:{log4j}", "-cp", f"{libs}/*"]
    if not (node / "data" / "meta.properties").exists():
        with open(log, "ab") as out:
            formatted = subprocess.run(
                [*base, "kafka.tools.StorageTool", "format", "-t", _cluster_id(), "-c", str(config)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=120,
            )
        if formatted.returncode != 0:
            raise EcomlakeError(f"formatting {LABEL}'s storage in {node / 'data'} failed; see {log}")
    return [*base, MAIN_CLASS, str(config)]
