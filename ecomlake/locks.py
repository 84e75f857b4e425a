"""One writer per job and lake: a second concurrent run is refused at once, naming the one that runs.

On a local lake (or any POSIX file system the lake is on) each job holds an exclusive `flock` on
`${LAKEHOUSE_URI}/_locks/<job>.lock` for as long as it writes; the kernel releases it when the process ends, so
a run killed with -9 never leaves a stale lock behind. The file keeps the holder's pid, host and start time for
the refusal message.

On s3:// and s3a:// there is no file lock. There each job holds a lease: the object `_locks/<job>.lock` in the lake,
created with a conditional put (`If-None-Match: *`, so of two runs starting together exactly one gets it), renewed
by its holder every third of LOCK_LEASE_SECONDS with `If-Match` on the object's ETag, and deleted on release. A
holder killed with -9 leaves its lease behind: the next run is refused until it expires, then replaces it, again
conditionally. What this relies on: the store's conditional writes (AWS S3, current MinIO and moto have them) and
clocks that agree to well within the lease. Beneath it, every write is still one Delta commit carrying an
application transaction, and delta-rs writes each log entry with a conditional put, so even two writers that both
believed they held the lease could not both commit the same table version.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ecomlake.errors import EcomlakeError
from ecomlake.lake.fs import is_s3

log = logging.getLogger("ecomlake.locks")


class AlreadyRunning(EcomlakeError):
    """Another process holds the job's lock on this lake."""


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return "another process"
    return _describe(info)


def _describe(info: dict) -> str:
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
    """Hold the lock of `job` on the lake at `lakehouse_uri` (a lease on S3; see the module doc)."""
    if is_s3(lakehouse_uri):
        with s3_lease(lakehouse_uri, job):
            yield
        return
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
            raise _refusal(job, _holder(Path(handle.name))) from None
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


def _refusal(job: str, holder: str) -> AlreadyRunning:
    return AlreadyRunning(
        f"another `ecomlake {job.split(':')[0]}` is already writing this lake ({holder}); wait for it or stop it"
    )


class S3Lease:
    """The lease of one job on an S3 lake (see the module doc)."""

    def __init__(self, lakehouse_uri: str, job: str, lease_s: float):
        import boto3

        from ecomlake.settings import aws_region, s3_endpoint

        bucket, _, prefix = lakehouse_uri.split("://", 1)[1].partition("/")
        self.bucket, self.key = bucket, "/".join(p for p in (prefix.strip("/"), "_locks", f"{job}.lock") if p)
        self.job, self.lease_s = job, lease_s
        self.client = boto3.client("s3", endpoint_url=s3_endpoint(), region_name=aws_region() or "us-east-1")
        self.etag: str | None = None
        self.lost = False
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def _body(self) -> bytes:
        now = time.time()
        return json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": getattr(self, "started", now),
                           "expires": now + self.lease_s}).encode()

    def _put(self, **condition) -> str | None:
        """Write the lease under `condition`; its new ETag, or None when the condition failed."""
        from botocore.exceptions import ClientError

        try:
            return self.client.put_object(Bucket=self.bucket, Key=self.key, Body=self._body(), **condition)["ETag"]
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
                return None
            raise

    def acquire(self) -> None:
        from botocore.exceptions import ClientError

        self.started = time.time()
        self.etag = self._put(IfNoneMatch="*")
        if self.etag is None:
            try:
                held = self.client.get_object(Bucket=self.bucket, Key=self.key)
                info, etag = json.loads(held["Body"].read() or b"{}"), held["ETag"]
            except ClientError:
                info, etag = {}, None
            if etag is None:
                self.etag = self._put(IfNoneMatch="*")
            elif info.get("expires", 0) < time.time():
                log.warning("taking over the expired %s lease of %s", self.job, _describe(info))
                self.etag = self._put(IfMatch=etag)
            if self.etag is None:
                raise _refusal(self.job, _describe(info) + f", lease until "
                               f"{time.strftime('%H:%M:%S', time.localtime(info.get('expires', 0)))}")
        self._renewer = threading.Thread(target=self._renew, name=f"lease-{self.job}", daemon=True)
        self._renewer.start()

    def _renew(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            try:
                etag = self._put(IfMatch=self.etag)
            except Exception as err:  # a transient store error: the next renewal may still be in time
                log.warning("could not renew the %s lease on s3://%s/%s: %s", self.job, self.bucket, self.key, err)
                continue
            if etag is None:
                self.lost = True
                log.error("the %s lease on s3://%s/%s was taken over by another run; this run's commits are still "
                          "guarded by Delta's conditional log writes", self.job, self.bucket, self.key)
                return
            self.etag = etag

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        if self.etag is None or self.lost:
            return
        from botocore.exceptions import ClientError

        try:
            try:
                self.client.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=self.etag)
            except ClientError as err:
                if err.response.get("Error", {}).get("Code") in ("PreconditionFailed", "NoSuchKey"):
                    return  # no longer ours (or gone)
                # A store without conditional deletes: delete it if it is still the object this run wrote.
                if self.client.head_object(Bucket=self.bucket, Key=self.key)["ETag"] == self.etag:
                    self.client.delete_object(Bucket=self.bucket, Key=self.key)
        except Exception as err:  # it expires on its own
            log.warning("could not release the %s lease: %s", self.job, err)


@contextmanager
def s3_lease(lakehouse_uri: str, job: str, lease_s: float | None = None) -> Iterator[S3Lease]:
    from ecomlake.settings import lock_lease_s

    lease = S3Lease(lakehouse_uri, job, lease_s or lock_lease_s())
    lease.acquire()
    try:
        yield lease
    finally:
        lease.release()
