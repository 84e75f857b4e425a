"""`ecomlake demo`: the whole pipeline on the embedded stack, in one Spark process, with a live status view.

The live dashboard starts first (`ecomlake dashboard` in its own process, no Spark in it) and its URL is printed
before anything else; it serves until the demo ends. The broker starts (unless one already runs), the generator
publishes for DEMO_SECONDS at DEMO_RATE events/s from a child process (a producer is not part of the pipeline's
process in any deployment), bronze streams continuously, and silver and gold run as the continuous services of
`ecomlake silver --continuous` and `ecomlake gold --continuous` (silver cycles on every bronze commit, gold builds on
every silver commit), each in its own thread of this process. At the end bronze drains what
is left, silver and gold run once more, and the demo prints a summary, the queries a user would run next, and writes
a dashboard (HTML + PNG) under the lakehouse.

End-to-end latency is measured per fully paid order, with its stages: see pipeline/latency.py. What the demo shows
is in demo_status.py, its child processes and threads in demo_children.py, the summary in demo_summary.py.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import Sequence

from ecomlake import broker
from ecomlake.arguments import positive_float
from ecomlake.lake.delta_log import latest_version
from ecomlake.locks import check_lake
from ecomlake.settings import RunDefaults, Settings, load
from ecomlake.tables import ORDER_PAYMENTS_ENRICHED
from pipeline.demo_children import _Dashboard, _Generator, _Loop
from pipeline.demo_status import DemoState, refresh_counts, sample_lag, status_table, write_latency
from pipeline.demo_summary import print_summary
from streaming.bronze import DEFAULT_TRIGGER_S


def _services(spark, settings: Settings, state: DemoState, poll_s: float):
    """Silver on every bronze commit, gold on every silver commit, both feeding the demo's figures."""
    from batch.silver.service import SilverService
    from gold.build_process import BuildProcess
    from gold.service import GoldService

    silver_done = threading.Event()  # gold builds once per silver cycle

    def on_silver_cycle(cycle, figures) -> None:
        state.silver_s, state.silver_jobs = cycle.seconds, cycle.spark_jobs
        state.silver_cycles.append(cycle.as_dict())
        state.latency.silver_cycle_ended(cycle.finished_at)
        silver_done.set()

    probe = ThreadPoolExecutor(max_workers=1, thread_name_prefix="latency-probe")
    enriched_uri = ORDER_PAYMENTS_ENRICHED.uri(settings)

    def before_gold_build() -> Future:
        """The build reads silver at this version or later: what is fully paid there is visible when it ends."""
        return probe.submit(state.latency.snapshot, settings, latest_version(enriched_uri))

    def on_gold_build(cycle, result, pending: Future) -> None:
        state.gold_s, state.gold_status = cycle.seconds, result["status"]
        state.gold_builds.append(cycle.as_dict())
        snapshot = pending.result()
        if result["status"] == "ok" and cycle.sales_visible_at is not None:
            state.latency.visible(snapshot, cycle.sales_visible_at, settings)
            write_latency(settings, state.latency.figures())
            state.cycles += 1

    gold = GoldService(settings, poll_s=poll_s, before_build=before_gold_build,
                       after_build=on_gold_build, build_process=BuildProcess(settings))
    gold.silver_done = silver_done
    silver = SilverService(spark, settings, poll_s=poll_s, on_cycle=on_silver_cycle)
    return silver, gold


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
    the live dashboard serves the lake while the demo runs. Whatever was started is stopped, in reverse order."""
    state = DemoState()
    check_lake(settings.lakehouse_uri)
    interrupted = False
    live_dashboard = _Dashboard(settings) if dashboard else None
    with ExitStack() as running:
        if live_dashboard:
            running.callback(live_dashboard.stop)
            live_dashboard.start()
        _, started_broker = broker.start(settings)
        if started_broker:
            running.callback(broker.stop, settings)
            _set_aside_earlier_lake(settings)
        Path(settings.demo_dir, "latency.json").unlink(missing_ok=True)
        try:
            _stream(running, settings, state, seconds=seconds, rate=rate, scenario=scenario, seed=seed,
                    interval=interval, trigger=trigger, live=live)
        except KeyboardInterrupt:
            interrupted = True
            state.phase = "interrupted"
    return _finish(settings, state, interrupted=interrupted, rate=rate, scenario=scenario,
                   live_url=live_dashboard.url if live_dashboard else None)


def _stream(running: ExitStack, settings: Settings, state: DemoState, *, seconds: float, rate: float, scenario: str,
            seed: int, interval: float, trigger: float, live: bool) -> None:
    """Bronze, the generator and the silver and gold services, each stopped by `running` once started; returns when
    the generator has finished and what it published has reached gold."""
    from ecomlake.spark import get_spark
    from generator.publish import ensure_topics
    from pipeline.warmup import WARM_UP_EVENTS, WARM_UP_RUNS, can_warm, warm_silver
    from streaming.bronze import run_available_now, start_bronze

    spark = get_spark(settings, app_name="ecomlake-demo")
    ensure_topics(settings)
    if can_warm(settings):
        print(f"demo: warming silver's Spark session on a scratch lake ({WARM_UP_RUNS} runs of "
              f"{WARM_UP_EVENTS:,} events, under a minute) ...", flush=True)
        state.warm_up_s = round(warm_silver(spark, settings)[0], 1)
        print(f"demo: silver warm in {state.warm_up_s:.1f} s; publishing", flush=True)
    bronze = start_bronze(spark, settings, trigger_seconds=trigger)
    running.callback(_stop_quietly, bronze)
    silver, gold = _services(spark, settings, state, interval)
    running.callback(gold.close)
    silver_loop, gold_loop = _Loop(silver, "ecomlake-silver"), _Loop(gold, "ecomlake-gold")
    running.callback(gold_loop.halt)
    running.callback(silver_loop.halt)
    gen = _Generator(settings, seconds, rate, scenario, seed)
    running.callback(_stop_generator, gen, state)
    state.started, state.phase = time.monotonic(), "streaming"
    gen.start()
    silver_loop.start()
    gold_loop.start()
    view = None
    if live:
        from rich.live import Live

        view = running.enter_context(Live(status_table(state, seconds, rate), refresh_per_second=2, transient=False))

    def show() -> None:
        if view:
            view.update(status_table(state, seconds, rate))

    next_count = next_lag = 0.0
    while gen.is_alive() and silver_loop.is_alive() and gold_loop.is_alive():
        state.produced = gen.delivered
        if view and time.monotonic() >= next_count:  # only the live view shows them before the end
            refresh_counts(settings, state)
            next_count = time.monotonic() + 2
        if time.monotonic() >= next_lag:
            sample_lag(settings, state, silver)
            next_lag = time.monotonic() + 5
        show()
        time.sleep(0.25)
    state.phase = "draining"
    show()
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
    show()


def _stop_quietly(bronze) -> None:
    try:
        bronze.stop()
    except Exception:
        pass


def _stop_generator(gen: _Generator, state: DemoState) -> None:
    gen.halt()
    state.produced = gen.delivered
    if gen.result is not None:
        state.manifest = gen.result.manifest


def _finish(settings: Settings, state: DemoState, *, interrupted: bool, rate: float, scenario: str,
            live_url: str | None) -> dict:
    """The summary, with the static dashboard and the generator's manifest, written under <lakehouse>/demo/."""
    from serving.dashboard import read_last_minutes, render

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
        "live_dashboard": live_url,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    if state.manifest is not None:
        (out_dir / "manifest.json").write_text(json.dumps(state.manifest, indent=2, default=str) + "\n")
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


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
