"""`ecomlake bench`: every stage's figures in one run, on a private embedded broker and a scratch lakehouse.

Writes bench/results.json and prints a table. Stage benchmarks live in bench/<stage>.py, each exposing
`run(settings, quick=False) -> dict`.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import platform
import socket
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from ecomlake import broker
from ecomlake.settings import load

STAGES = ("generator", "bronze", "silver", "gold", "latency")


def machine_facts() -> dict:
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from ecomlake.java import find_java

    return {
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "cpu": cpu,
        "python": platform.python_version(),
        "java": find_java().describe(),
        "platform": platform.platform(),
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _print_table(results: dict) -> None:
    print("\nstage      figure                                           value")
    print("---------  -----------------------------------------------  ------------")
    for stage in STAGES:
        figures = results["stages"].get(stage, {})
        for key, value in figures.items():
            shown = f"{value:,.2f}" if isinstance(value, float) else str(value)
            print(f"{stage:<9}  {key:<47}  {shown}")
    facts = results["machine"]
    print(f"\nmachine: {facts['cores']} cores, {facts['memory_gib']} GiB, {facts['cpu']}; {facts['java']}")


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="ecomlake bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test of the benchmarks, not figures")
    parser.add_argument("--only", choices=STAGES, action="append", help="run only these stages (repeatable)")
    parser.add_argument("--out", default="bench/results.json", help="where to write the results (default %(default)s)")
    args = parser.parse_args(argv)

    base = load()
    scratch = tempfile.mkdtemp(prefix="ecomlake-bench-")
    settings = dataclasses.replace(
        base,
        kafka_bootstrap=f"127.0.0.1:{_free_port()}",
        lakehouse_uri=str(Path(scratch) / "lakehouse"),
        run_dir=str(Path(scratch) / "run"),
    )
    results: dict = {
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": machine_facts(),
        "stages": {},
    }
    broker.start(settings)
    try:
        for stage in args.only or STAGES:
            module = importlib.import_module(f"pipeline.bench.{stage}")
            print(f"== bench {stage} ...", flush=True)
            started = time.perf_counter()
            stage_settings = dataclasses.replace(
                settings,
                lakehouse_uri=str(Path(scratch) / stage / "lakehouse"),
                topic_order_events=f"orders.bench-{stage}",
                topic_payment_events=f"payments.bench-{stage}",
            )
            results["stages"][stage] = module.run(stage_settings, quick=args.quick)
            print(f"   done in {time.perf_counter() - started:.1f}s: {results['stages'][stage]}", flush=True)
    finally:
        broker.stop(settings)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    _print_table(results)
    print(f"\nwrote {out}")
    return 0
