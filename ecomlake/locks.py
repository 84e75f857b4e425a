"""One writer per job and lake: a second concurrent run is refused at once, naming the one that runs.

On a local lake (or any POSIX file system the lake is on) each job holds an exclusive `flock` on
`${LAKEHOUSE_URI}/_locks/<job>.lock` for as long as it writes; the kernel releases it when the process ends, so
a run killed with -9 never leaves a stale lock behind. The file keeps the holder's pid, host and start time for
the refusal message.

On s3a:// there is no file lock. There the jobs rely on Delta's optimistic concurrency: every write is one Delta
commit carrying an application transaction (bronze: query id and batch id; silver: the source version consumed),
and a commit that races another is retried or fails on the commit conflict instead of being applied twice
(delta-rs commits with S3 conditional writes; Delta Lake for Spark needs a single-driver S3 log store). Run one
scheduler per lake there (Airflow's DAGs use max_active_runs=1).
"""

from __future__ import annotations

import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ecomlake.errors import EcomlakeError


class AlreadyRunning(EcomlakeError):
    """Another process holds the job's lock on this lake."""


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return "another process"
    since = time.strftime("%H:%M:%S", time.localtime(info.get("started", 0)))
    return f"pid {info.get('pid', '?')} on {info.get('host', '?')} since {since}"


def check_lake(lakehouse_uri: str) -> Path:
    """One line, before any work starts, when a local lake cannot be written: a file, or a directory that cannot be
    created or written. Returns its lock directory."""
    root = Path(lakehouse_uri.removeprefix("file://"))
    if root.exists() and not root.is_dir():
        raise EcomlakeError(f"LAKEHOUSE_URI={lakehouse_uri} is a file, not a directory")
    lock_dir = root / "_locks"
    try:
        lock_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise EcomlakeError(f"LAKEHOUSE_URI={lakehouse_uri} cannot be created or written: {err.strerror}") from None
    if not os.access(lock_dir, os.W_OK):
        raise EcomlakeError(f"LAKEHOUSE_URI={lakehouse_uri} is not writable")
    return lock_dir


@contextmanager
def single_writer(lakehouse_uri: str, job: str) -> Iterator[None]:
    """Hold the lock of `job` on the lake at `lakehouse_uri` (a no-op on object stores, see the module doc)."""
    if "://" in lakehouse_uri and not lakehouse_uri.startswith("file://"):
        yield
        return
    import fcntl

    lock_dir = check_lake(lakehouse_uri)
    try:
        handle = open(lock_dir / f"{job}.lock", "a+")
    except OSError as err:
        raise EcomlakeError(f"LAKEHOUSE_URI={lakehouse_uri} is not writable: {err.strerror}") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AlreadyRunning(
                f"another `ecomlake {job.split(':')[0]}` is already writing this lake ({_holder(Path(handle.name))}); "
                "wait for it or stop it"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}))
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)
