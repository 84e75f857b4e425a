"""`ecomlake demo`: the whole pipeline on the embedded stack, in one Spark process, with a live status view.

The live dashboard starts first (`ecomlake dashboard` in its own process, no Spark in it) and its URL is printed
before anything else; it serves until the demo ends. The broker starts (unless one already runs), the generator
publishes for DEMO_SECONDS at DEMO_RATE events/s from a child process (a producer is not part of the pipeline's
process in any deployment), bronze streams continuously, and silver and gold run as the continuous services of
`ecomlake silver --continuous` and `ecomlake gold --continuous` (silver cycles on every bronze commit, gold builds on
every silver commit), each in its own thread of this process. At the end bronze drains what
is left, silver and gold run once more, and the demo prints a summary, the queries a user would run next, and writes
a dashboard (HTML + PNG) under the lakehouse.

End-to-end latency is measured per fully paid order, with its stages: see pipeline/latency.py.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from ecomlake import broker
from ecomlake.arguments import positive_float
from ecomlake.errors import EcomlakeError
from ecomlake.lake.delta_log import latest_version
from ecomlake.locks import check_lake
from ecomlake.settings import RunDefaults, Settings, load
from ecomlake.tables import LAKE_TABLES, ORDER_PAYMENTS_ENRICHED, ORDERS_RAW, PAYMENTS_RAW
from pipeline.latency import LatencyProbe
from serving import queries
from streaming.bronze import DEFAULT_TRIGGER_S

# The questions from trino/queries a user would ask next, and how many rows of each the summary shows.
TOP_QUERIES = {"recent_sales": 5, "busiest_minutes": 3, "total_gmv": 1}



def table_rows(uri: str) -> int:
    """Row count of a Delta table from its log's file statistics (no data read); 0 when it doesn't exist."""
    from deltalake import DeltaTable

    if not DeltaTable.is_deltatable(uri):
        return 0
    actions = DeltaTable(uri).get_add_actions(flatten=True)
    return int(sum(v for v in actions.column("num_records").to_pylist() if v))


@dataclass
class DemoState:
    started: float = field(default_factory=time.monotonic)
    phase: str = "starting"
    produced: int = 0
    cycles: int = 0
    silver_s: float = 0.0
    silver_jobs: int = 0
    gold_s: float = 0.0
    gold_status: str = "-"
    silver_cycles: list = field(default_factory=list)
    gold_builds: list = field(default_factory=list)
    lag: list = field(default_factory=list)
    counts: dict = field(default_factory=dict)
    latest_minute: tuple | None = None
    latency: LatencyProbe = field(default_factory=LatencyProbe)
    warm_up_s: float | None = None


def gold_query(settings: Settings, sql: str) -> tuple[list[str], list[tuple]]:
    """A query on gold's read snapshot (read-only), so the live view never holds the file a gold build writes."""
    import duckdb

    if not Path(settings.warehouse_read_path).exists():
        return [], []
    with duckdb.connect(settings.warehouse_read_path, read_only=True) as con:
        cursor = con.execute(sql)
        return [d[0] for d in cursor.description], cursor.fetchall()


def refresh_counts(settings: Settings, state: DemoState) -> None:
    counts = {f"{t.layer} {t.name.removesuffix('_raw')}": table_rows(t.uri(settings)) for t in LAKE_TABLES}
    try:
        _, rows = gold_query(settings, "select count(*) from gold.fct_sales_minute")
        counts["gold minutes"] = rows[0][0] if rows else 0
        _, latest = gold_query(settings, "select minute_bucket, gmv, paid_orders from gold.fct_sales_minute order by minute_bucket desc limit 1")
        state.latest_minute = latest[0] if latest else None
    except Exception:  # the warehouse is busy while gold builds: keep the last figure
        counts["gold minutes"] = state.counts.get("gold minutes", 0)
    state.counts = counts


def status_table(state: DemoState, seconds: float, rate: float):
    from rich.table import Table

    elapsed = time.monotonic() - state.started
    table = Table(title=f"ecomlake demo — {state.phase} ({elapsed:,.0f}s of ~{seconds:,.0f}s, {rate:g} events/s)")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("events produced", f"{state.produced:,}")
    for name, value in state.counts.items():
        table.add_row(name, f"{value:,}")
    lag = state.latency.newest_published
    table.add_row("freshness lag (now − newest event in gold)",
                  f"{time.time() - lag.timestamp():.1f}s" if lag else "-")
    if state.latest_minute:
        minute, gmv, orders = state.latest_minute
        table.add_row("latest minute GMV (USD)", f"{minute:%H:%M}  ${gmv:,.2f}  ({orders} paid orders)")
    table.add_row("silver cycles / gold builds",
                  f"{len(state.silver_cycles)} / {len(state.gold_builds)} (last: silver {state.silver_s:.1f}s with "
                  f"{state.silver_jobs} Spark jobs, gold {state.gold_s:.1f}s {state.gold_status})")
    if state.lag:
        last = state.lag[-1]
        table.add_row("backlog: Kafka → bronze / bronze → silver (rows)",
                      f"{last['bronze_backlog']:,} / {last['silver_backlog']:,}")
    figures = state.latency.figures()
    if figures.get("paid_orders_measured"):
        table.add_row("end-to-end latency p50 / p95", f"{figures['latency_p50_s']:.1f}s / {figures['latency_p95_s']:.1f}s")
    return table


class _Generator(threading.Thread):
    """The generator in a child process of its own, as a producer is in any deployment; this thread waits for its
    result. In the demo's process its publishing loop held the GIL in bursts that each of silver's Py4J calls
    (thousands per cycle) waited for: in 120 s runs at 1,000 events/s the median silver cycle was 4.8 s with it and
    3.7-4.4 s without."""

    def __init__(self, settings: Settings, seconds: float, rate: float, scenario: str, seed: int):
        import multiprocessing

        super().__init__(name="ecomlake-generator", daemon=True)
        context = multiprocessing.get_context("spawn")
        self.stop_event = context.Event()
        self._delivered = context.Value("q", 0, lock=False)
        self._results, self._sender = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_publish, name="ecomlake-generator", daemon=True,
            args=(settings, seconds, rate, scenario, seed, self.stop_event, self._delivered, self._sender),
        )
        self.result = None
        self.error: BaseException | None = None

    @property
    def delivered(self) -> int:
        """Events the broker confirmed so far."""
        return self._delivered.value

    def run(self) -> None:
        self._process.start()
        self._sender.close()  # the child holds the only sending end now: if it dies without a result, recv() ends
        try:
            self.result, self.error = self._results.recv()
        except EOFError:
            pass
        self._process.join()
        if self.result is None and self.error is None:
            self.error = EcomlakeError(f"the generator process ended without a result (exit code "
                                       f"{self._process.exitcode})")


def _publish(settings: Settings, seconds: float, rate: float, scenario: str, seed: int, stop, delivered,
             results) -> None:
    """The generator process: publish, keep `delivered` current, send back (RunResult, None) or (None, error)."""
    import pickle

    from generator import generate
    from generator.publish import RunResult

    live = RunResult(manifest={})
    done = threading.Event()

    def report() -> None:
        while not done.wait(0.2):
            delivered.value = live.delivered

    reporter = threading.Thread(target=report, daemon=True)
    reporter.start()
    try:
        outcome = (generate(settings, duration_s=seconds, rate=rate, scenario=scenario, seed=seed, stop=stop,
                            live=live), None)
    except BaseException as err:  # reported by the demo's main thread
        try:
            pickle.dumps(err)
        except Exception:
            err = EcomlakeError(f"{type(err).__name__}: {err}")
        outcome = (None, err)
    done.set()
    reporter.join()
    delivered.value = live.delivered
    results.send(outcome)


def write_latency(settings: Settings, figures: dict) -> None:
    """The latency figures so far, for the live dashboard (demo_dir/latency.json, replaced atomically)."""
    out = Path(settings.demo_dir)
    out.mkdir(parents=True, exist_ok=True)
    partial = out / f".latency.json.{os.getpid()}"
    partial.write_text(json.dumps({**figures, "updated": datetime.now(timezone.utc).isoformat()}) + "\n")
    os.replace(partial, out / "latency.json")


class _Dashboard:
    """`ecomlake dashboard` as a child process for the demo's lifetime: a failure to start is one line, not fatal."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.url = settings.dashboard_url
        self.proc: subprocess.Popen | None = None

    def start(self, wait_s: float = 30.0) -> None:
        import urllib.request

        print(f"dashboard: {self.url}  (live, refreshes every few seconds; JSON at {self.url}api/summary)", flush=True)
        self.proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "dashboard"],
                                     env={**os.environ, **self.settings.to_env()}, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                with urllib.request.urlopen(self.url + "api/summary", timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        if self.proc.poll() is not None:
            error = (self.proc.stderr.read().strip().splitlines() or ["exited"])[-1]
            print(f"dashboard: not started ({error}); the demo goes on without it", flush=True)
            self.proc = None

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


class _Loop(threading.Thread):
    """A service's run() in the background; what failed in it is re-raised by finish()."""

    def __init__(self, service, name: str):
        super().__init__(name=name, daemon=True)
        self.service = service
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.service.run()
        except BaseException as err:
            if not self.service.stop.is_set():
                self.error = err

    def finish(self, timeout: float = 300) -> None:
        """Stop after the cycle under way (if any) and re-raise what failed in it."""
        self.service.stop.set()
        self.join(timeout)
        if self.error:
            raise self.error


def _services(spark, settings: Settings, state: DemoState, poll_s: float):
    """Silver on every bronze commit, gold on every silver commit, both feeding the demo's figures."""
    from batch.silver.service import SilverService
    from gold.build_process import BuildProcess
    from gold.service import GoldService

    def on_silver_cycle(cycle, figures) -> None:
        state.silver_s, state.silver_jobs = cycle.seconds, cycle.spark_jobs
        state.silver_cycles.append(cycle.as_dict())
        state.latency.silver_cycle_ended(cycle.finished_at)
        gold.silver_done.set()

    probe = ThreadPoolExecutor(max_workers=1, thread_name_prefix="latency-probe")
    enriched_uri = ORDER_PAYMENTS_ENRICHED.uri(settings)

    def before_gold_build() -> Future:
        """The build reads silver at this version or later: what is fully paid there is visible when it ends."""
        return probe.submit(state.latency.snapshot, settings, latest_version(enriched_uri))

    def on_gold_build(cycle, result, pending: Future) -> None:
        state.gold_s, state.gold_status = cycle.seconds, result["status"]
        state.gold_builds.append(cycle.as_dict())
        pending = pending.result()
        if result["status"] == "ok" and cycle.sales_visible_at is not None:
            state.latency.visible(pending, cycle.sales_visible_at, settings)
            write_latency(settings, state.latency.figures())
            state.cycles += 1

    gold = GoldService(settings, poll_s=poll_s, before_build=before_gold_build,
                       after_build=on_gold_build, build_process=BuildProcess(settings))
    gold.silver_done = threading.Event()
    silver = SilverService(spark, settings, poll_s=poll_s, on_cycle=on_silver_cycle)
    return silver, gold


def sample_lag(settings: Settings, state: DemoState, silver) -> None:
    """Rows published but not in bronze, and in bronze but not read by silver: flat when nothing falls behind."""
    bronze = sum(table_rows(t.uri(settings)) for t in (ORDERS_RAW, PAYMENTS_RAW))
    state.lag.append({"t": round(time.monotonic() - state.started, 1), "produced": state.produced,
                      "bronze_backlog": max(0, state.produced - bronze),
                      "silver_backlog": max(0, bronze - silver.rows_read)})


def _set_aside_earlier_lake(settings: Settings) -> None:
    """A lake bronze filled from an earlier broker cannot go on reading a broker that starts empty (the embedded one
    keeps data in memory only): move it aside and start clean, saying so."""
    lake = Path(settings.lakehouse_uri)
    if not settings.is_local_lake or not (lake / "_checkpoints").is_dir():
        return
    aside = lake.with_name(f"{lake.name}-previous-{datetime.now():%Y%m%d-%H%M%S}")
    lake.rename(aside)
    print(f"demo: the lake at {lake} was filled from an earlier broker, which is gone; moved it to {aside} and "
          "starting clean", flush=True)


def run_demo(settings: Settings, *, seconds: float, rate: float, scenario: str = "steady", seed: int = 7,
             interval: float = 0.2, trigger: float = DEFAULT_TRIGGER_S, live: bool = True, dashboard: bool = False) -> dict:
    """Run the pipeline; returns the summary (also written to <lakehouse>/demo/summary.json). With dashboard=True
    the live dashboard serves the lake while the demo runs."""
    from contextlib import nullcontext

    from serving.dashboard import read_last_minutes, render
    from ecomlake.spark import get_spark
    from generator.publish import ensure_topics
    from streaming.bronze import run_available_now, start_bronze
    from pipeline.warmup import WARM_UP_EVENTS, WARM_UP_RUNS, can_warm, warm_silver

    state = DemoState()
    check_lake(settings.lakehouse_uri)
    live_dashboard = _Dashboard(settings) if dashboard else None
    if live_dashboard:
        live_dashboard.start()
    try:
        _, started_broker = broker.start(settings)
    except BaseException:
        if live_dashboard:
            live_dashboard.stop()
        raise
    if started_broker:
        _set_aside_earlier_lake(settings)
    Path(settings.demo_dir, "latency.json").unlink(missing_ok=True)
    gen = bronze = view = gold = silver_loop = gold_loop = None
    interrupted = False
    try:
        spark = get_spark(settings, app_name="ecomlake-demo")
        ensure_topics(settings)
        if can_warm(settings):
            print(f"demo: warming silver's Spark session on a scratch lake ({WARM_UP_RUNS} runs of "
                  f"{WARM_UP_EVENTS:,} events, under a minute) ...", flush=True)
            state.warm_up_s = round(warm_silver(spark, settings)[0], 1)
            print(f"demo: silver warm in {state.warm_up_s:.1f} s; publishing", flush=True)
        bronze = start_bronze(spark, settings, trigger_seconds=trigger)
        gen = _Generator(settings, seconds, rate, scenario, seed)
        silver, gold = _services(spark, settings, state, interval)
        silver_loop, gold_loop = _Loop(silver, "ecomlake-silver"), _Loop(gold, "ecomlake-gold")
        state.started, state.phase = time.monotonic(), "streaming"
        gen.start()
        silver_loop.start()
        gold_loop.start()
        if live:
            from rich.live import Live

            view = Live(status_table(state, seconds, rate), refresh_per_second=2, transient=False)
        with view or nullcontext():
            next_count = next_lag = 0.0
            while gen.is_alive() and silver_loop.is_alive() and gold_loop.is_alive():
                state.produced = gen.delivered
                if view and time.monotonic() >= next_count:  # only the live view shows them before the end
                    refresh_counts(settings, state)
                    next_count = time.monotonic() + 2
                if time.monotonic() >= next_lag:
                    sample_lag(settings, state, silver)
                    next_lag = time.monotonic() + 5
                if view:
                    view.update(status_table(state, seconds, rate))
                time.sleep(0.25)
            state.phase = "draining"
            if view:
                view.update(status_table(state, seconds, rate))
            gen.join()
            silver_loop.finish()
            gold_loop.finish()
            if gen.error:
                raise gen.error
            state.produced = gen.delivered
            bronze.stop()
            run_available_now(spark, settings)
            silver.cycle(force=True)
            gold.cycle(force=True)
            sample_lag(settings, state, silver)
            refresh_counts(settings, state)
            state.phase = "done"
            if view:
                view.update(status_table(state, seconds, rate))
    except KeyboardInterrupt:
        interrupted = True
        state.phase = "interrupted"
    finally:
        if gen is not None:
            gen.stop_event.set()
            if gen.ident is not None:
                gen.join(timeout=30)
            state.produced = gen.delivered
        for loop in (silver_loop, gold_loop):
            if loop is not None:
                loop.service.stop.set()
                if loop.ident is not None:
                    loop.join(timeout=120)
        if gold is not None:
            gold.close()
        if bronze is not None:
            try:
                bronze.stop()
            except Exception:
                pass
        if started_broker:
            broker.stop(settings)
        if live_dashboard:
            live_dashboard.stop()
    refresh_counts(settings, state)
    out_dir = Path(settings.lakehouse_uri) / "demo"
    dashboard_files = None
    if Path(settings.warehouse_path).exists():
        html_path, png_path = render(read_last_minutes(settings.warehouse_path), str(out_dir))
        dashboard_files = {"html": str(html_path), "png": str(png_path)}
    summary = {
        "interrupted": interrupted,
        "seconds": round(time.monotonic() - state.started, 1),
        "rate": rate,
        "scenario": scenario,
        "events_produced": state.produced,
        "counts": state.counts,
        "cycles": state.cycles,
        "silver_warm_up_s": state.warm_up_s,
        "silver_cycles": state.silver_cycles,
        "gold_builds": state.gold_builds,
        "lag": state.lag,
        "latency": state.latency.figures(),
        "dashboard": dashboard_files,
        "live_dashboard": live_dashboard.url if live_dashboard else None,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    if gen is not None and gen.result is not None:
        (out_dir / "manifest.json").write_text(json.dumps(gen.result.manifest, indent=2, default=str) + "\n")
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def print_summary(settings: Settings, summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title="ecomlake demo — summary" + (" (interrupted)" if summary["interrupted"] else ""))
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("run time", f"{summary['seconds']}s, scenario {summary['scenario']}, {summary['rate']:g} events/s")
    table.add_row("events produced", f"{summary['events_produced']:,}")
    for name, value in summary["counts"].items():
        table.add_row(name, f"{value:,}")
    latency = summary["latency"]
    if latency.get("paid_orders_measured"):
        table.add_row("end-to-end latency (publish → gold)",
                      f"p50 {latency['latency_p50_s']}s, p95 {latency['latency_p95_s']}s, max {latency['latency_max_s']}s "
                      f"over {latency['paid_orders_measured']:,} paid orders")
        names = {"publish_to_bronze": "publish → bronze", "bronze_to_silver": "bronze → silver",
                 "silver_to_gold": "silver → gold"}
        for key, name in names.items():
            stage = latency.get("stages", {}).get(key)
            if stage:
                table.add_row(f"  {name}", f"p50 {stage['p50_s']}s, p95 {stage['p95_s']}s")
    cycles = summary.get("silver_cycles") or []
    if cycles:
        seconds = sorted(c["seconds"] for c in cycles)
        jobs = sorted(c["spark_jobs"] for c in cycles)
        table.add_row("silver cycles / gold builds",
                      f"{len(cycles)} (median {seconds[len(seconds) // 2]}s, {jobs[len(jobs) // 2]} Spark jobs) / "
                      f"{len(summary.get('gold_builds') or [])}")
    console.print(table)
    if not Path(settings.warehouse_path).exists():
        return
    console.print(f"\nQuery gold yourself: duckdb {settings.warehouse_path}")
    for name, limit in TOP_QUERIES.items():
        title, sql = queries.load(name).title, queries.load(name).sql
        try:
            columns, rows = gold_query(settings, sql)
            rows = rows[:limit]
        except Exception as err:
            console.print(f"[red]{title}: {err}[/red]")
            continue
        result = Table(title=f"{title}\n[dim]{sql}[/dim]", title_justify="left")
        for column in columns:
            result.add_column(column, justify="right")
        for row in rows:
            result.add_row(*(f"{v:,.2f}" if hasattr(v, "quantize") else str(v) for v in row))
        console.print(result)
    if summary["dashboard"]:
        console.print(f"\nDashboard: {summary['dashboard']['html']}  (PNG: {summary['dashboard']['png']})")
    if summary.get("live_dashboard"):
        console.print(f"The live dashboard stopped with the demo; `ecomlake dashboard` serves it again at "
                      f"{summary['live_dashboard']}")


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="ecomlake demo", description=__doc__.splitlines()[0])
    defaults = RunDefaults.from_env()
    parser.add_argument("--seconds", type=positive_float, default=defaults.demo_seconds,
                        help="how long the generator publishes (env DEMO_SECONDS, default %(default)s)")
    parser.add_argument("--rate", type=positive_float, default=defaults.demo_rate,
                        help="events per second (env DEMO_RATE, default %(default)s)")
    from generator.scenarios import SCENARIOS

    parser.add_argument("--scenario", choices=tuple(SCENARIOS), default=defaults.demo_scenario)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--interval", type=positive_float, default=defaults.demo_interval,
                        help="how often silver and gold look for new commits, in seconds (env DEMO_INTERVAL, "
                        "default %(default)s)")
    parser.add_argument("--trigger", type=positive_float, default=DEFAULT_TRIGGER_S,
                        help=f"bronze micro-batch trigger in seconds (default {DEFAULT_TRIGGER_S:g}: on 2 cores a shorter "
                             "one takes the CPU silver needs, and the end-to-end latency grows)")
    parser.add_argument("--no-live", action="store_true", help="no live status view (for logs and CI)")
    parser.add_argument("--no-dashboard", action="store_true",
                        help="do not serve the live dashboard (default: on 127.0.0.1:DASHBOARD_PORT)")
    args = parser.parse_args(argv)
    if args.scenario not in SCENARIOS:
        parser.error(f"DEMO_SCENARIO={args.scenario!r} is not a scenario; use one of: {', '.join(SCENARIOS)}")
    settings = load()
    summary = run_demo(settings, seconds=args.seconds, rate=args.rate, scenario=args.scenario, seed=args.seed,
                       interval=args.interval, trigger=args.trigger, live=not args.no_live,
                       dashboard=not args.no_dashboard)
    print_summary(settings, summary)
    return 130 if summary["interrupted"] else 0
