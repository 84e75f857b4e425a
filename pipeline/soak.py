"""`ecomlake soak`: minutes of load with `kill -9` of every pipeline process in turn, then a full reconciliation.

On a private broker and scratch lake: the generator publishes `late_and_duplicates` for --seconds; bronze streams
(`ecomlake bronze`), and silver and gold run back to back (`ecomlake silver`, `ecomlake gold`), each as its own
process, restarted when it fails. Every --kill-every seconds (+-50%) the next victim in a seeded round-robin is
killed with SIGKILL and started again. With KAFKA_BROKER=kafka the broker (persistent Apache Kafka) is among the
victims; the embedded broker keeps data in memory only, so it is never killed. At the end bronze drains, silver and
gold run once more, and Kafka (read record by record), bronze, silver and gold are reconciled against the
generator's manifest: nothing lost, nothing doubled. The report tells how every run ended (killed by the soak,
failed on its own with its error line, stopped at the end).
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Sequence

from ecomlake import broker, tables
from ecomlake.errors import EcomlakeError
from ecomlake.settings import Settings, load
from generator.events import DUPLICATE
from gold.build import missing_silver_tables
from pipeline.kafka_tally import kafka_tally
from pipeline.soak_runs import Component, describe, kill_plan, run_summary


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(env: dict[str, str], *args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", *args], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise EcomlakeError(f"`ecomlake {' '.join(args)}` failed: {proc.stderr.strip().splitlines()[-1:]}")


def reconcile(settings: Settings, manifest: dict) -> dict[str, tuple]:
    """(found, expected) per check: Kafka, bronze, silver and gold against the generator's manifest."""
    import duckdb
    from deltalake import DeltaTable

    from generator.manifest import value_digest

    in_kafka = kafka_tally(settings.kafka_bootstrap, settings.topics)
    checks: dict[str, tuple] = {"kafka messages": (sum(t.messages for t in in_kafka.values()), manifest["sent"])}
    for topic, found in in_kafka.items():
        sent = manifest["per_topic"].get(topic, {})
        checks[f"kafka {topic} redelivered copies"] = (found.repeated, sent.get("kinds", {}).get(DUPLICATE, 0))
        checks[f"kafka {topic} payload digest"] = (found.digest, sent.get("value_digest"))
    for table in (tables.ORDERS_RAW, tables.PAYMENTS_RAW):
        rows = DeltaTable(table.uri(settings)).to_pyarrow_table().to_pylist()
        topic = rows[0]["topic"] if rows else "?"
        coordinates = Counter((r["topic"], r.get("incarnation") or 0, r["partition"], r["offset"]) for r in rows)
        payloads = [(r["raw_value"] or "").encode() if r["raw_value_b64"] is None else
                    base64.b64decode(r["raw_value_b64"]) for r in rows]
        checks[f"{table.qualified} rows"] = (len(rows), manifest["per_topic"].get(topic, {}).get("sent"))
        checks[f"{table.qualified} doubled coordinates"] = (sum(1 for n in coordinates.values() if n > 1), 0)
        checks[f"{table.qualified} payload digest"] = (value_digest(payloads),
                                                      manifest["per_topic"].get(topic, {}).get("value_digest"))
    expected = manifest["expected"]
    for table, key in ((tables.ORDERS_CLEAN, "orders_clean_rows"), (tables.PAYMENTS_CLEAN, "payments_clean_rows"),
                       (tables.ORDER_PAYMENTS_ENRICHED, "order_payments_enriched_rows"),
                       (tables.QUARANTINE, "quarantine_rows")):
        checks[f"{table.qualified} rows"] = (len(DeltaTable(table.uri(settings)).to_pyarrow_table()), expected[key])
    with duckdb.connect(settings.warehouse_path, read_only=True) as con:
        row = con.execute("select sum(gmv), sum(paid_orders) from gold.fct_sales_minute").fetchone()
    gmv, paid = row or (None, None)  # a sum answers one row, of NULLs on no rows
    checks["gold paid orders"] = (int(paid or 0), expected["fully_paid_orders"])
    checks["gold GMV (USD, to the cent)"] = (Decimal(gmv or 0).quantize(Decimal("0.01")),
                                            Decimal(expected["gmv_usd_exact"]).quantize(Decimal("0.01")))
    return checks


def _kill_broker(settings: Settings) -> None:
    """kill -9 Apache Kafka and start it again on its data (only a persistent broker is a victim)."""
    state = broker.read_state(settings)
    if state is not None:
        os.kill(state.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while broker.status(settings) is not None and time.monotonic() < deadline:
            time.sleep(0.1)
    broker.start(settings)


def soak(base: Settings, seconds: float, rate: float, seed: int, kill_every: float, workdir: Path) -> dict:
    settings = dataclasses.replace(base, kafka_bootstrap=f"127.0.0.1:{_free_port()}",
                                   lakehouse_uri=str(workdir / "lakehouse"), run_dir=str(workdir / "run"))
    env = {**os.environ, **settings.to_env()}
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    manifest_path = workdir / "manifest.json"
    rng = random.Random(seed)
    broker.start(settings)
    try:
        generator = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "generate", "--duration", str(seconds), "--rate", str(rate),
             "--scenario", "late_and_duplicates", "--seed", str(seed), "--manifest", str(manifest_path)],
            env=env, stdout=open(logs / "generator.log", "w"), stderr=subprocess.STDOUT)
        time.sleep(2)
        parts = [Component("bronze", ["bronze", "--trigger", "1"], env, logs, once=False),
                 Component("silver", ["silver"], env, logs, once=True),
                 Component("gold", ["gold"], env, logs, once=True,
                           wait_for=lambda: not missing_silver_tables(settings))]
        for part in parts:
            part.begin()
        victims = [p.name for p in parts] + (["broker"] if settings.broker == "kafka" else [])
        plan = kill_plan(victims, seconds, kill_every, rng)
        kills = dict.fromkeys(victims, 0)
        started = time.monotonic()
        while generator.poll() is None:
            for part in parts:
                part.tick()
            if plan and time.monotonic() - started >= plan[0][0]:
                victim = plan[0][1]
                if victim == "broker":
                    _kill_broker(settings)
                    done = True
                else:
                    done = next(p for p in parts if p.name == victim).kill()  # not running: try again shortly
                if done:
                    print(f"soak: {time.monotonic() - started:5.1f}s kill -9 {victim}", flush=True)
                    kills[victim] += 1
                    plan.pop(0)
            time.sleep(0.2)
        if generator.returncode != 0:
            raise EcomlakeError(f"the generator failed (see {logs / 'generator.log'})")
        for part in parts:
            part.stop()
        print("soak: load over; draining bronze, then silver and gold once more", flush=True)
        _run(env, "bronze", "--available-now")
        _run(env, "silver")
        _run(env, "gold")
        manifest = json.loads(manifest_path.read_text())
        checks = reconcile(settings, manifest)
    finally:
        broker.stop(settings)
    return {
        "seconds": seconds, "rate": rate, "seed": seed, "events": manifest["sent"],
        "kills": kills,
        "runs": {p.name: run_summary(p.runs) for p in parts},
        "run_log": {p.name: [dataclasses.asdict(r) for r in p.runs] for p in parts},
        "checks": {name: {"found": str(found), "expected": str(want), "ok": found == want}
                   for name, (found, want) in checks.items()},
        "logs": str(logs),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ecomlake soak", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=180.0, help="how long the generator publishes")
    parser.add_argument("--rate", type=float, default=100.0, help="events per second")
    parser.add_argument("--seed", type=int, default=13, help="seeds the events, the kills' order and their times")
    parser.add_argument("--kill-every", type=float, default=10.0, help="mean seconds between two kills (0: none)")
    parser.add_argument("--workdir", help="where the scratch lake and logs go (default: a new temporary folder)")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.rate <= 0 or args.kill_every < 0:
        parser.error("--seconds and --rate must be above 0 and --kill-every at least 0 (0: no kills)")
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="ecomlake-soak-"))
    report = soak(load(), args.seconds, args.rate, args.seed, args.kill_every, workdir)
    (workdir / "soak.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"soak: {report['events']:,} events in {args.seconds:g}s; kill -9: "
          + ", ".join(f"{name} {n}" for name, n in report["kills"].items()) + "; runs:")
    for name, summary in report["runs"].items():
        print(describe(name, summary))
    failed = [name for name, check in report["checks"].items() if not check["ok"]]
    for name, check in report["checks"].items():
        print(f"  {'ok  ' if check['ok'] else 'FAIL'} {name}: {check['found']} (expected {check['expected']})")
    print(f"soak: {'nothing lost or doubled' if not failed else 'MISMATCH in ' + ', '.join(failed)}; "
          f"report {workdir / 'soak.json'}")
    return 1 if failed else 0
