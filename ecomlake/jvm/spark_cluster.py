"""A Spark standalone cluster on this machine, the way docker-compose.yml runs one: one master, one worker.

Both come from pyspark's own distribution: the pip package ships `bin/spark-class` and `jars/` (not the
`sbin/start-master.sh` / `start-worker.sh` scripts), and `spark-class <main class> <args>` is exactly what the
compose services `spark-master` and `spark-worker` run. Everything binds to 127.0.0.1 on free ports; logs, the
worker's work directory (one folder per application, each executor's stdout/stderr inside) and the scratch
directories live under the run directory given to `start`. A state file there (pids, ports) lets `stop` end
exactly the two processes `start` made, also from another process.

    master_url = spark_cluster.start(run_dir)   # waits until the worker has registered with the master
    ... SPARK_MASTER=<master_url> ecomlake bronze --available-now ...
    spark_cluster.stop(run_dir)

Applications connect in client mode (the driver is the `ecomlake` process); `ecomlake.spark` gives their
executors the jars (spark.jars) and the project's Python packages (spark.submit.pyFiles).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from ecomlake.errors import EcomlakeError
from ecomlake.java import ensure_java

HOST = "127.0.0.1"
MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
STATE_FILE = "spark-cluster.json"
DAEMON_MEMORY = "256m"  # heap of the master and worker JVMs themselves (executors get spark.executor.memory)
START_TIMEOUT_S = 90.0

_last_run_dir: Path | None = None


@dataclass(frozen=True)
class ClusterState:
    master_url: str  # spark://127.0.0.1:<port>
    webui_url: str  # http://127.0.0.1:<port>: the master's UI; /json lists workers and applications
    master_pid: int
    worker_pid: int
    worker_webui_url: str
    work_dir: str  # the worker's work directory: <work_dir>/<app id>/<executor id>/{stdout,stderr}
    master_log: str
    worker_log: str
    started_at: float


def spark_home() -> Path:
    """pyspark's distribution (bin/spark-class, jars/)."""
    import pyspark

    home = Path(pyspark.__file__).resolve().parent
    if not (home / "bin" / "spark-class").is_file() or not (home / "jars").is_dir():
        raise EcomlakeError(f"pyspark at {home} has no bin/spark-class or jars/: reinstall pyspark")
    return home


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _state_path(run_dir: Path) -> Path:
    return run_dir / STATE_FILE


def _is_ours(pid: int) -> bool:
    """The pid runs a Spark deploy daemon (not a reused pid of something else) and is not a zombie."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return b"org.apache.spark.deploy." in cmdline and state != "Z"


def read_state(run_dir: str | os.PathLike) -> ClusterState | None:
    path = _state_path(Path(run_dir))
    try:
        return ClusterState(**json.loads(path.read_text()))
    except (FileNotFoundError, ValueError, TypeError):
        return None


def status(run_dir: str | os.PathLike) -> ClusterState | None:
    """The cluster recorded under `run_dir` if its master and worker still run."""
    state = read_state(run_dir)
    if state and _is_ours(state.master_pid) and _is_ours(state.worker_pid):
        return state
    return None


def master_json(state: ClusterState, timeout_s: float = 5.0) -> dict:
    """The master's JSON status: workers, activeapps, completedapps (each with name, id, state, cores...)."""
    with urllib.request.urlopen(f"{state.webui_url}/json/", timeout=timeout_s) as response:
        return json.loads(response.read())


def _daemon_env(home: Path, conf_dir: Path, local_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SPARK_", "PYSPARK_")) and k not in ("PYTHONPATH", "_JAVA_OPTIONS")}
    env.update({
        "SPARK_HOME": str(home),
        "SPARK_CONF_DIR": str(conf_dir),
        "SPARK_LOCAL_IP": HOST,
        "SPARK_LOCAL_DIRS": str(local_dir),  # the worker hands these to its executors as scratch space
        "SPARK_DAEMON_MEMORY": DAEMON_MEMORY,
    })
    return env


def _spawn(cmd: list[str], env: dict[str, str], log_path: Path, cwd: Path) -> subprocess.Popen:
    with open(log_path, "ab") as log:
        return subprocess.Popen(cmd, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def start(run_dir: str | os.PathLike, *, cores: int = 1, memory: str = "1g", conf_dir: str | os.PathLike | None = None,
          timeout_s: float = START_TIMEOUT_S) -> str:
    """Start a master and one worker (`cores`, `memory` for executors) unless they already run under `run_dir`;
    return the master URL once the worker has registered. `conf_dir` becomes the daemons' SPARK_CONF_DIR
    (spark-defaults.conf, log4j2.properties); default: an empty one under `run_dir`."""
    global _last_run_dir
    run_dir = Path(run_dir).resolve()
    running = status(run_dir)
    if running:
        _last_run_dir = run_dir
        return running.master_url
    home = spark_home()
    java = ensure_java()  # JAVA_HOME for spark-class
    for sub in ("logs", "work", "local", "conf"):
        (run_dir / sub).mkdir(parents=True, exist_ok=True)
    conf = Path(conf_dir).resolve() if conf_dir else run_dir / "conf"
    env = _daemon_env(home, conf, run_dir / "local")
    env["JAVA_HOME"] = java.home
    spark_class = str(home / "bin" / "spark-class")
    port, webui, worker_webui = _free_port(), _free_port(), _free_port()
    master_log, worker_log = run_dir / "logs" / "master.log", run_dir / "logs" / "worker.log"
    master_url = f"spark://{HOST}:{port}"

    master = _spawn([spark_class, MASTER_CLASS, "--host", HOST, "--port", str(port), "--webui-port", str(webui)],
                    env, master_log, run_dir)
    worker = None
    state = None
    try:
        worker = _spawn([spark_class, WORKER_CLASS, master_url, "--host", HOST, "--cores", str(cores),
                         "--memory", memory, "--webui-port", str(worker_webui),
                         "--work-dir", str(run_dir / "work")], env, worker_log, run_dir)
        state = ClusterState(master_url, f"http://{HOST}:{webui}", master.pid, worker.pid,
                             f"http://{HOST}:{worker_webui}", str(run_dir / "work"), str(master_log), str(worker_log),
                             time.time())
        _wait_for_worker(state, master, worker, timeout_s)
    except BaseException:
        for proc in (worker, master):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        raise
    _state_path(run_dir).write_text(json.dumps(asdict(state)))
    _last_run_dir = run_dir
    return master_url


def _wait_for_worker(state: ClusterState, master: subprocess.Popen, worker: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for name, proc, log in (("master", master, state.master_log), ("worker", worker, state.worker_log)):
            if proc.poll() is not None:
                raise EcomlakeError(f"the Spark {name} exited at start (code {proc.returncode}); {log}:\n"
                                    f"{_tail(Path(log))}")
        try:
            info = master_json(state, timeout_s=2.0)
        except (OSError, ValueError, urllib.error.URLError):
            info = {}
        if any(w.get("state") == "ALIVE" for w in info.get("workers", [])):
            return
        time.sleep(0.25)
    raise EcomlakeError(f"the Spark worker did not register with {state.master_url} within {timeout_s:.0f}s; see "
                        f"{state.master_log} and {state.worker_log}:\n{_tail(Path(state.worker_log))}")


def stop(run_dir: str | os.PathLike | None = None, timeout_s: float = 20.0) -> ClusterState | None:
    """Stop the worker (its executors end with it), then the master, of the cluster recorded under `run_dir`
    (default: the one this process started last). Returns what was stopped, or None if nothing ran."""
    where = Path(run_dir).resolve() if run_dir is not None else _last_run_dir
    if where is None:
        return None
    state = read_state(where)
    if state is None:
        return None
    for pid in (state.worker_pid, state.master_pid):
        _end(pid, timeout_s)
    _state_path(where).unlink(missing_ok=True)
    return state


def _end(pid: int, timeout_s: float) -> None:
    if not _is_ours(pid):
        _reap(pid)
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _is_ours(pid):
        _reap(pid)
        time.sleep(0.1)
    if _is_ours(pid):
        os.kill(pid, signal.SIGKILL)
    _reap(pid)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def main(argv: list[str] | None = None) -> int:
    """python -m ecomlake.jvm.spark_cluster start|stop|status [--run-dir DIR] [--cores N] [--memory M]"""
    import argparse

    from ecomlake.settings import load

    parser = argparse.ArgumentParser(prog="python -m ecomlake.jvm.spark_cluster", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("start", "stop", "status"))
    parser.add_argument("--run-dir", default=str(Path(load().run_dir) / "spark-cluster"),
                        help="logs, work directory and state file (default: $ECOMLAKE_RUN_DIR/spark-cluster)")
    parser.add_argument("--cores", type=int, default=1, help="executor cores the worker offers (default 1)")
    parser.add_argument("--memory", default="1g", help="executor memory the worker offers (default 1g)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.action == "start":
        url = start(args.run_dir, cores=args.cores, memory=args.memory)
        state = read_state(args.run_dir)
        print(f"spark cluster: {url} (master UI {state.webui_url if state else '?'}, work dir {args.run_dir}/work); "
              f"use SPARK_MASTER={url}")
    elif args.action == "stop":
        stopped = stop(args.run_dir)
        print(f"spark cluster stopped: {stopped.master_url}" if stopped else "spark cluster was not running")
    else:
        state = status(args.run_dir)
        print(f"spark cluster running: {state.master_url} (master UI {state.webui_url})" if state
              else "spark cluster not running")
        return 0 if state else 1
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except EcomlakeError as err:
        print(f"spark cluster: error: {err}", file=sys.stderr)
        raise SystemExit(err.exit_code)
