"""`ecomlake broker start|stop|status`."""

from __future__ import annotations

import argparse
from typing import Sequence

from ecomlake import broker
from ecomlake.settings import load


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="ecomlake broker", description=broker.__doc__.splitlines()[0])
    parser.add_argument("action", choices=("start", "stop", "status"))
    args = parser.parse_args(argv)
    settings = load()
    if args.action == "start":
        state, started = broker.start(settings)
        verb = "started" if started else "already running"
        print(f"broker {verb}: 127.0.0.1:{state.port} (pid {state.pid}, log {state.log})")
        return 0
    if args.action == "stop":
        state = broker.stop(settings)
        print(f"broker stopped (pid {state.pid}, port {state.port})" if state else "broker was not running")
        return 0
    state = broker.status(settings)
    if state is None:
        print("broker not running")
        return 1
    answering = broker.answers_metadata(f"{state.host}:{state.port}")
    print(f"broker running: 127.0.0.1:{state.port} (pid {state.pid}){'' if answering else ', NOT answering metadata'}")
    return 0 if answering else 1
