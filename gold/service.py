"""`ecomlake gold --continuous`: gold as a long-running service, building on every silver commit.

The batch command parses the dbt project, loads the seeds and runs the tests on every invocation. The service parses
once (dbt then runs from that manifest), loads the seeds and creates the views on its first build only, leaves the data
and unit tests to `ecomlake gold --test-only` (Airflow's schedule, CI) and builds as soon as a table gold reads has a
new commit, which it learns from a listing of their Delta logs. fct_sales_minute is incremental: a build recomputes only
the minutes whose orders changed. After its first build the service builds in two parts, each published for readers when
done: fct_sales_minute and what it reads on every silver commit (silver → gold then waits for that fact alone), then the
other facts (payments, cancellations, quarantine, sales per currency) at most every GOLD_OTHER_FACTS_EVERY_SECONDS (5;
0: on every commit too), and also once silver has stopped moving. On two cores the builds compete with silver's cycle
for the CPU: building the other facts on every commit made both silver's cycle and publish → gold slower
(docs/benchmarks.md#design-measurements). The models are the ones `ecomlake gold` builds, so stopping or killing the
service between or during builds loses nothing: the next build picks up from gold's watermarks.

On the trino target dbt reads silver through Trino's Delta catalog, which lists only the tables registered in its
metastore, and silver's tables appear on the lake after the stack has started (a table new to silver later). So
before a build the service runs `on_new_tables` whenever the set of lake tables changed: the runner passes Trino's
table registration there (serving/, which a stage may not import), and a new table is queryable before the first
build that reads it.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

from ecomlake.errors import EcomlakeError
from ecomlake.lake.delta_log import latest_version
from ecomlake.service_loop import log_to_stderr, run_until_stopped
from ecomlake.settings import Settings
from ecomlake.tables import GOLD_SOURCES, LAKE_TABLES, ORDER_PAYMENTS_ENRICHED, QUARANTINE
from gold.build import invoke, run_gold, warehouse_kept_open

if TYPE_CHECKING:
    from gold.build_process import BuildProcess

log = logging.getLogger("ecomlake.gold")


@dataclass
class GoldCycle:
    number: int
    finished_at: float
    seconds: float
    status: str
    silver_versions: tuple
    sales_visible_at: float | None = None  # when fct_sales_minute was published (None: not built this time)
    built: str = "all"  # "all", "sales" (fct_sales_minute and what it reads) or "others" (the other facts)

    def as_dict(self) -> dict:
        return asdict(self)


class GoldService:
    """Builds gold whenever a silver table it reads has committed since the last build, until `stop` is set.

    A silver cycle commits several tables one after the other; alone, the service waits for the table silver commits
    last (order_payments_enriched) or for quarantine, so that it builds about once per cycle. In the same process as
    silver, `silver_done` (set by the silver service at the end of each cycle) wakes it instead: one build per cycle,
    none in the middle of one, which matters on two cores where a build competes with silver for the CPU.
    `before_build` runs just before each build and its return value is handed to `after_build` with the build's
    result (the demo snapshots silver there, to time what each build made visible). `on_new_tables` runs before a
    build when the lake's tables are not the ones it last saw (see the module doc). With a `build_process`
    (gold.build_process) the builds run there instead of in this process; `close` ends it."""

    def __init__(self, settings: Settings, poll_s: float = 0.2,
                 before_build: Callable[[], Any] | None = None,
                 after_build: Callable[[GoldCycle, dict, Any], None] | None = None,
                 on_new_tables: Callable[[], None] | None = None,
                 build_process: "BuildProcess | None" = None):
        self.settings, self.poll_s = settings, poll_s
        self.build_process = build_process
        self.before_build, self.after_build = before_build, after_build
        self.on_new_tables = on_new_tables
        self.silver_done: threading.Event | None = None
        self.stop = threading.Event()
        self.cycles: list[GoldCycle] = []
        self.manifest = None
        self._seen: tuple | None = None
        self._seen_trigger: tuple | None = None
        self._set_up = False
        self._tables_seen: frozenset[str] | None = None
        self._others_at = 0.0  # time.monotonic() of the last build of the other facts
        self._others_behind = False

    def silver_versions(self) -> tuple:
        return tuple(latest_version(t.uri(self.settings)) for t in GOLD_SOURCES)

    def _trigger(self) -> tuple:
        return tuple(latest_version(t.uri(self.settings)) for t in (ORDER_PAYMENTS_ENRICHED, QUARANTINE))

    def lake_tables(self) -> frozenset[str]:
        """The bronze and silver tables written so far, from a listing of their Delta logs."""
        return frozenset(t.qualified for t in LAKE_TABLES if latest_version(t.uri(self.settings)) is not None)

    def _announce_new_tables(self) -> None:
        tables = self.lake_tables()
        if tables != self._tables_seen:
            self.on_new_tables()
            self._tables_seen = tables

    def _parse(self) -> None:
        result = invoke(self.settings, ["parse"], quiet=True)
        if result.success and result.result is not None:
            self.manifest = result.result

    def others_due(self) -> bool:
        """The other facts were left behind by a build of the sales fact, and their interval has passed."""
        return self._others_behind and (
            time.monotonic() - self._others_at >= self.settings.gold_other_facts_every_s)

    def cycle(self, force: bool = False) -> GoldCycle | None:
        """One build if silver moved since the last one (or `force`), or of the other facts alone when they are due
        (see the module doc); None when there was nothing to do."""
        versions = self.silver_versions()
        moved = force or (versions != self._seen and None not in versions)
        if moved and not force and self.silver_done is None and self._seen is not None:
            moved = self._trigger() != self._seen_trigger
        if not moved and not self.others_due():
            return None
        if self.on_new_tables:
            self._announce_new_tables()
        if moved:
            self._seen_trigger = self._trigger()
        if self.manifest is None and self.build_process is None:
            self._parse()
        others = force or not self._set_up or not moved or (
            time.monotonic() - self._others_at >= self.settings.gold_other_facts_every_s)
        parts = {"setup": not self._set_up, "sales": moved, "others": others}
        context = self.before_build() if self.before_build else None
        started = time.perf_counter()
        if self.build_process is not None:
            result = self.build_process.build(**parts)
        else:
            result = run_gold(self.settings, tests=False, manifest=self.manifest, **parts)
        seconds = time.perf_counter() - started
        if result["status"] == "ok":
            if moved:
                self._seen = versions
            if others:
                self._others_at, self._others_behind = time.monotonic(), False
            else:
                self._others_behind = True
            self._set_up = True
        built = "all" if moved and others else "sales" if moved else "others"
        done = GoldCycle(len(self.cycles) + 1, time.time(), round(seconds, 3), result["status"], versions,
                         result.get("sales_visible_at"), built)
        self.cycles.append(done)
        if self.after_build:
            self.after_build(done, result, context)
        if result["status"] == "failed":
            raise EcomlakeError(f"gold build failed: {'; '.join(result['errors'][:3])}")
        return done

    def close(self) -> None:
        if self.build_process is not None:
            self.build_process.close()

    def run(self) -> None:
        while not self.stop.is_set():
            if self.silver_done is not None:
                if not self.silver_done.wait(self.poll_s):
                    if self.others_due():
                        self.cycle()
                    continue
                self.silver_done.clear()
            if self.cycle() is None and self.silver_done is None:
                self.stop.wait(self.poll_s)


def continuous_service(settings: Settings, register_tables: Callable[[Settings], None] | None = None,
                       after_build: Callable[[GoldCycle, dict, Any], None] | None = None) -> GoldService:
    """The service `ecomlake gold --continuous` runs: on the trino target it calls `register_tables` whenever the
    lake's tables changed; DuckDB reads silver by path and needs nothing registered."""
    registers = register_tables is not None and settings.dbt_target == "trino"
    return GoldService(settings, after_build=after_build,
                       on_new_tables=(lambda: register_tables(settings)) if registers else None)


def main(argv: Sequence[str] | None = None, register_tables: Callable[[Settings], None] | None = None) -> int:
    """`ecomlake gold [--test-only | --docs | --continuous] [--full-refresh]`; --continuous builds until Ctrl-C or
    SIGTERM, one log line each. `register_tables` is the runner's Trino registration (see continuous_service)."""
    import sys

    from gold import build

    parser, mode = build.build_parser()
    mode.add_argument("--continuous", action="store_true",
                      help="keep running: a build (no tests) on every silver commit, parsing the project once")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if not args.continuous:
        return build.main(argv)
    if args.full_refresh:
        parser.error("--continuous builds incrementally; run `ecomlake gold --full-refresh` once instead")

    log_to_stderr(log, "gold")

    def report(cycle: GoldCycle, result: dict, _context) -> None:
        log.info("build %d: %s in %.2fs (silver v%s)%s", cycle.number, cycle.status, cycle.seconds,
                 "/v".join(str(v) for v in cycle.silver_versions),
                 {"all": "", "sales": ", fct_sales_minute only", "others": ", the other facts"}[cycle.built])

    service = continuous_service(Settings.from_env(), register_tables, after_build=report)
    log.info("gold builds on every silver commit under %s; Ctrl-C to stop", service.settings.lakehouse_uri)
    with warehouse_kept_open():
        run_until_stopped(service.run, on_sigterm=service.stop.set)
    log.info("stopped after %d builds", len(service.cycles))
    return 0
