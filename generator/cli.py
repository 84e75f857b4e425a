"""`ecomlake generate`: publish a scenario's order and payment events to Kafka, with a manifest of what was sent."""

from __future__ import annotations

import argparse
import secrets
import sys
from typing import Sequence

from ecomlake.arguments import non_negative_float, positive_float, positive_int
from ecomlake.settings import load
from generator.events import parse_start
from generator.scenarios import SCENARIOS

DEFAULT_EVENTS = 10_000








def _start(text: str) -> str:
    try:
        parse_start(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO-8601 timestamp (e.g. 2026-11-21T10:00:00Z)") from None
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ecomlake generate",
        description="Publish order and payment events (keyed by order_id) to TOPIC_ORDER_EVENTS and "
        "TOPIC_PAYMENT_EVENTS at KAFKA_BOOTSTRAP. Same --seed, --start and --rate => the same events.",
        epilog="scenarios: " + "; ".join(f"{s.name}: {s.description}" for s in SCENARIOS.values()),
    )
    amount = parser.add_mutually_exclusive_group()
    amount.add_argument("--events", type=positive_int, metavar="N",
                        help=f"publish N events in total, all kinds included (default {DEFAULT_EVENTS})")
    amount.add_argument("--duration", type=positive_float, metavar="S", help="publish for S seconds of wall-clock time")
    parser.add_argument("--rate", type=non_negative_float, default=0.0, metavar="R",
                        help="events per second (default 0: as fast as the broker takes them)")
    parser.add_argument("--scenario", choices=tuple(SCENARIOS), default="steady", help="default %(default)s")
    parser.add_argument("--seed", type=int, default=None, metavar="K",
                        help="RNG seed (default: random, recorded in the manifest)")
    parser.add_argument("--start", type=_start, default=None, metavar="ISO",
                        help="simulated clock start for event_ts (default: now)")
    parser.add_argument("--manifest", metavar="PATH", help="write a JSON manifest of what was sent and what silver must hold")
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    return parser


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    settings = load()
    from generator.publish import generate

    if args.events is None and args.duration is None:
        args.events = DEFAULT_EVENTS
    seed = args.seed if args.seed is not None else secrets.randbits(31)
    result = generate(settings, events=args.events, duration_s=args.duration, rate=args.rate, scenario=args.scenario,
                      seed=seed, start=args.start, manifest_path=args.manifest, progress=not args.quiet)
    for line in result.errors[:5] if result.failed else ():
        print(f"ecomlake generate: delivery error: {line}", file=sys.stderr)
    print(result.summary() + (f"; manifest {args.manifest}" if args.manifest else ""), flush=True)
    if result.failed and not result.stopped_by:
        print(f"ecomlake generate: error: {result.failed} events were not confirmed by the broker "
              "(they are not in the manifest)", file=sys.stderr)
    return result.exit_code
