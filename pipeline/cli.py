"""`ecomlake`: the one console command. Each subcommand lives in its own module and parses its own options."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Callable, Sequence

from ecomlake.errors import EcomlakeError
from ecomlake.settings import debug_enabled

# subcommand -> ("module:function", one-line help). The function takes the remaining argv and returns an exit code.
COMMANDS: dict[str, tuple[str, str]] = {
    "broker": ("ecomlake.broker_cli:main", "start | stop | status the embedded Kafka-protocol broker"),
    "generate": ("generator.cli:main", "publish order and payment events to Kafka"),
    "bronze": ("streaming.bronze:main", "stream both topics into the bronze Delta tables"),
    "silver": ("batch.silver.service:main", "incremental silver jobs: orders, payments, enrichment (--continuous)"),
    "maintain": ("batch.maintain:main", "OPTIMIZE and VACUUM every table"),
    "gold": ("pipeline.services:gold_main", "dbt build of the gold models (--continuous)"),
    "freshness": ("gold.build:freshness_main", "dbt source freshness of the silver tables"),
    "demo": ("pipeline.demo:main", "the whole pipeline on the embedded stack, with a live status view"),
    "dashboard": ("serving.live:main", "serve the live dashboard of the lake on 127.0.0.1:DASHBOARD_PORT"),
    "bench": ("pipeline.bench.run:main", "measure every stage; writes bench/results.json"),
    "soak": ("pipeline.soak:main", "minutes of load with random kill -9 of every process, then a full reconciliation"),
    "register-tables": ("serving.trino_tables:main", "cluster stack: list every lake Delta table in Trino"),
    "metabase": ("serving.metabase:main", "cluster stack: provision Metabase (questions, dashboard)"),
    "jvm-parts": ("ecomlake.jvm.parts:main", "fetch the cluster stack's JVM parts with mvn into a cache"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: ecomlake [--debug] <command> [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run `ecomlake <command> --help` for a command's options."]
    return "\n".join(lines)


def _resolve(target: str) -> Callable[[Sequence[str]], int]:
    module_name, func_name = target.split(":")
    return getattr(importlib.import_module(module_name), func_name)


def _one_line(err: BaseException) -> str:
    """An unexpected exception as one line: its type and the first line of its message."""
    lines = [line.strip(" :") for line in str(err).splitlines() if line.strip(" :")]
    if lines and lines[0].startswith("An error occurred while calling"):  # Py4J: the Java exception is next
        lines = lines[1:]
    first = lines[0] if lines else ""
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    while argv and argv[0] in ("--debug", "-v"):
        os.environ["ECOMLAKE_DEBUG"] = "1"
        argv.pop(0)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"ecomlake: error: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    try:
        return int(_resolve(COMMANDS[name][0])(rest) or 0)
    except EcomlakeError as err:
        print(f"ecomlake {name}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"ecomlake {name}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if debug_enabled():
            raise
        print(f"ecomlake {name}: error: {_one_line(err)} (`ecomlake --debug {name} ...` shows the full trace)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
