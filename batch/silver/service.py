"""`ecomlake silver --continuous`: silver as a long-running service with one warm Spark session.

A batch run pays for a JVM, a Spark session and Python imports before it reads a row; the service pays once and then
runs a cycle as soon as bronze has a new commit (it polls the two bronze Delta logs, which costs milliseconds), so
silver follows bronze by one cycle instead of by a schedule. Each cycle is the same incremental, idempotent run as
`ecomlake silver` (the jobs in batch/silver/jobs.py), so stopping the service at any moment, or killing it, leaves
silver exactly as a crashed batch run would: the next cycle completes it.

Every cycle reports its seconds, the Spark jobs it ran (a job group per cycle) and the rows it read. Every
SILVER_COMPACT_EVERY-th cycle (default 5) also compacts the silver tables, under silver's lock, so that the files
each cycle adds do not make every later cycle slower (see jobs.compact_silver).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Callable, Sequence

from batch.silver.jobs import run_silver
from ecomlake.lake.delta_log import latest_version
from ecomlake.service_loop import log_to_stderr, run_until_stopped
from ecomlake.tables import ORDERS_RAW, PAYMENTS_RAW

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from ecomlake.lake import LakeEngine
    from ecomlake.settings import Settings

log = logging.getLogger("ecomlake.silver")
ORDER_INDEX_SAVE_S = 300.0  # a new process loads the order index saved at most this long ago, then follows the logs


@dataclass
class SilverCycle:
    number: int
    finished_at: float
    seconds: float
    spark_jobs: int
    rows_read: int
    rows_written: int
    bronze_versions: tuple
    compacted: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


class SilverService:
    """Runs silver whenever bronze has committed since the last cycle, until `stop` is set."""

    def __init__(self, spark: "SparkSession", settings: "Settings", lake: "LakeEngine | None" = None,
                 poll_s: float = 0.2, on_cycle: Callable[[SilverCycle, dict], None] | None = None):
        from ecomlake.lake import get_engine

        self.spark, self.settings = spark, settings
        self.lake = lake or get_engine(spark, settings)
        self.poll_s, self.on_cycle = poll_s, on_cycle
        self.stop = threading.Event()
        self.cycles: list[SilverCycle] = []
        self.rows_read = 0
        self._seen: tuple | None = None
        self._index_saved_at = time.monotonic()
        self._index_saving: threading.Thread | None = None

    def bronze_versions(self) -> tuple:
        """From a listing of the Delta logs: no Spark job and no log replay, whatever the engine."""
        return tuple(latest_version(t.uri(self.settings)) for t in (ORDERS_RAW, PAYMENTS_RAW))

    def cycle(self, force: bool = False) -> SilverCycle | None:
        """One silver run if bronze moved since the last one (or `force`); None when there was nothing to do."""
        versions = self.bronze_versions()
        if not force and (versions == self._seen or versions == (None, None)):
            return None
        number = len(self.cycles) + 1
        group = f"silver-cycle-{id(self)}-{number}"
        context = self.spark.sparkContext
        context.setJobGroup(group, f"silver cycle {number}")
        every = self.settings.silver_compact_every
        compact = bool(every) and number % every == 0
        started = time.perf_counter()
        try:
            figures = run_silver(self.spark, self.settings, lake=self.lake, compact=compact,
                                 in_one_pass=self.settings.silver_one_pass)
        finally:
            context.setLocalProperty("spark.jobGroup.id", None)
        seconds = time.perf_counter() - started
        jobs = len(context.statusTracker().getJobIdsForGroup(group))
        read = sum(figures[j]["read"] for j in ("orders", "payments"))
        written = sum(f["written"] for f in figures.values())
        # A cycle may take a slice of a backlog (one_pass): the next runs at once until silver has caught up.
        caught_up = all(figures[job].get("source_to") is None or figures[job]["source_to"] >= version
                        for job, version in zip(("orders", "payments"), versions) if version is not None)
        self._seen = versions if caught_up else None
        if not read and not written:  # the commits seen were taken by the previous cycle already
            return None
        self.rows_read += read
        done = SilverCycle(number, time.time(), round(seconds, 3), jobs, read, written, versions, compact)
        self.cycles.append(done)
        if self.on_cycle:
            self.on_cycle(done, figures)
        if time.monotonic() - self._index_saved_at >= ORDER_INDEX_SAVE_S:
            self.save_order_index()
        return done

    def save_order_index(self, wait: bool = False) -> None:
        """Saves silver's order index (batch/silver/order_minutes.py) in a thread of its own, so a restart reads the
        commits since instead of a day of files; `wait` for it (at the end of the service)."""
        from batch.silver import order_minutes

        if self._index_saving is not None and self._index_saving.is_alive():
            if not wait:
                return
            self._index_saving.join()
        index = order_minutes.for_lake(self.settings)

        def save() -> None:
            started = time.perf_counter()
            try:
                saved = index.save()
            except Exception as err:  # derived data: a failed save costs the next process a rebuild, nothing else
                log.warning("silver: could not save the order index to %s: %s", index.saved_uri,
                            str(err).splitlines()[0] if str(err) else type(err).__name__)
                return
            if saved is not None:
                log.info("silver: order index of %s orders saved in %.1f s", f"{saved:,}", time.perf_counter() - started)

        self._index_saved_at = time.monotonic()
        self._index_saving = threading.Thread(target=save, name="ecomlake-silver-index-save", daemon=True)
        self._index_saving.start()
        if wait:
            self._index_saving.join()

    def run(self) -> None:
        with self.lake.kept_open():
            while not self.stop.is_set():
                if self.cycle() is None:
                    self.stop.wait(self.poll_s)
        self.save_order_index(wait=True)


def serve(spark: "SparkSession", settings: "Settings") -> int:
    """The command: cycles until Ctrl-C or SIGTERM, one log line each."""
    def report(cycle: SilverCycle, figures: dict) -> None:
        log.info("cycle %d: %.2fs, %d Spark jobs, read %d bronze rows, wrote %d (bronze v%s)%s", cycle.number,
                 cycle.seconds, cycle.spark_jobs, cycle.rows_read, cycle.rows_written,
                 "/v".join(str(v) for v in cycle.bronze_versions), ", then compacted silver" if cycle.compacted else "")

    service = SilverService(spark, settings, on_cycle=report)
    log.info("silver runs on every bronze commit under %s; Ctrl-C to stop", settings.lakehouse_uri)
    run_until_stopped(service.run, on_sigterm=service.stop.set)
    log.info("stopped after %d cycles", len(service.cycles))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`ecomlake silver [--only JOB | --continuous]`."""
    import sys

    from batch.silver import jobs

    parser = jobs.build_parser()
    parser.add_argument("--continuous", action="store_true",
                        help="keep running: a cycle on every new bronze commit, with one warm Spark session")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if not args.continuous:
        return jobs.main(argv)
    if args.only:
        parser.error("--continuous runs every job; leave out --only")
    log_to_stderr(log, "silver")
    from ecomlake.settings import Settings
    from ecomlake.spark import get_spark

    settings = Settings.from_env()
    return serve(get_spark(settings, app_name="ecomlake-silver"), settings)
