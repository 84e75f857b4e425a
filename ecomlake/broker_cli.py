"""`ecomlake broker start|stop|status`."""

from __future__ import annotations

import argparse
from typing import Sequence

from ecomlake import broker
from ecomlake.settings import load


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="ecomlake broker",
        description="the local Kafka broker on 127.0.0.1, chosen by KAFKA_BROKER: embedded (Tansu) or kafka (Apache Kafka)")
    parser.add_argument("action", choices=("start", "stop", "status"))
    args = parser.parse_args(argv)
    settings = load()
    state: broker.BrokerState | None
    if args.action == "start":
        state, started = broker.start(settings)
        verb = "started" if started else "already running"
        print(f"broker {verb}: 127.0.0.1:{state.port} (pid {state.pid}, log {state.log}{_kind(state)})")
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
    print(f"broker running: 127.0.0.1:{state.port} (pid {state.pid}{_kind(state)})"
          f"{'' if answering else ', NOT answering metadata'}")
    return 0 if answering else 1


def _kind(state: broker.BrokerState) -> str:
    """Tansu's lines stay as they were; Apache Kafka says so."""
    return f", {state.label}" if state.kind != "embedded" else ""
