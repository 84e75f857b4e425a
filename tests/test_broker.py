"""`ecomlake broker start|stop|status` through the CLI, on a private run directory and port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from conftest import free_port

ECOMLAKE = str(Path(sys.executable).parent / "ecomlake")


def broker_cli(action: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([ECOMLAKE, "broker", action], env=env, capture_output=True, text=True, timeout=60)


def private_env(tmp_path: Path, port: int) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "TOPIC_"))}
    return {**env, "KAFKA_BOOTSTRAP": f"127.0.0.1:{port}", "ECOMLAKE_RUN_DIR": str(tmp_path / "run")}


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().split(")")[-1].split()[0] != "Z"


def test_broker_lifecycle_start_is_idempotent_and_stop_ends_that_pid(tmp_path):
    port = free_port()
    env = private_env(tmp_path, port)
    first = broker_cli("start", env)
    try:
        assert first.returncode == 0 and first.stdout.startswith(f"broker started: 127.0.0.1:{port}"), first.stderr
        pid = int(first.stdout.split("pid ")[1].split(",")[0])
        again = broker_cli("start", env)
        assert again.returncode == 0 and again.stdout.startswith(f"broker already running: 127.0.0.1:{port} (pid {pid},")

        status = broker_cli("status", env)
        assert (status.returncode, status.stdout.strip()) == (0, f"broker running: 127.0.0.1:{port} (pid {pid})")
        from confluent_kafka.admin import AdminClient

        AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"}).list_topics(timeout=10)  # it speaks Kafka

        # a second broker on the same port (another run directory) is refused with a clear line
        other = broker_cli("start", {**env, "ECOMLAKE_RUN_DIR": str(tmp_path / "other-run")})
        assert other.returncode == 2 and "Traceback" not in other.stderr
        assert other.stderr.strip() == (f"ecomlake broker: error: port {port} on 127.0.0.1 is in use by another process; "
                                        f"free it or set KAFKA_BOOTSTRAP=127.0.0.1:<free port>")
    finally:
        stopped = broker_cli("stop", env)
    assert stopped.returncode == 0 and stopped.stdout.strip() == f"broker stopped (pid {pid}, port {port})"
    assert not pid_alive(pid)
    after = broker_cli("status", env)
    assert (after.returncode, after.stdout.strip()) == (1, "broker not running")
    assert broker_cli("stop", env).stdout.strip() == "broker was not running"


def test_broker_start_on_a_busy_port_is_a_clear_error(tmp_path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        proc = broker_cli("start", private_env(tmp_path, port))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"port {port} on 127.0.0.1 is in use" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "broker.json").exists()
