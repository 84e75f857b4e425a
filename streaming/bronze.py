"""`ecomlake bronze`: stream both topics into bronze_raw.orders_raw and bronze_raw.payments_raw, exactly once.

One streaming query per topic, each with its own checkpoint under `${LAKEHOUSE_URI}/_checkpoints/bronze_<table>`.
Every micro-batch is appended with `LakeEngine.append_batch(app_id, txn_version=batch_id)`: the Delta commit
records the (app_id, batch id) application transaction, so when the process dies after the Delta commit but
before Spark's checkpoint commit, the replayed batch is recognised and skipped. app_id is the query's id from its
checkpoint (`bronze/<table>/<query id>`): stable across restarts, new when the checkpoint is deleted (then the
topic is read again from the earliest offset and appended again — delete the table with its checkpoint).

Bronze never rejects a payload. raw_value is the payload decoded as UTF-8; when the bytes are not valid UTF-8,
raw_value holds a decoding with U+FFFD replacement characters and raw_value_b64 the exact bytes, base64-encoded
(raw_value_b64 is NULL for every valid payload). raw_key is decoded the same way (keys are order ids).

Also runnable with spark-submit: `spark-submit streaming/bronze.py --available-now`. This module is the command
line; the parts live beside it: bronze_table.py (the tables and the transform), incarnations.py (--reset-source),
broker_checks.py (the broker probes), batch_writer.py (the per-batch writer), query_errors.py (reading a failed
query's error) and bronze_queries.py (starting and stopping the queries).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Sequence

from ecomlake import contract
from ecomlake.arguments import positive_float, positive_int
from ecomlake.errors import EcomlakeError
from ecomlake.locks import check_lake
from ecomlake.service_loop import log_to_stderr, run_until_stopped
from ecomlake.settings import load
from streaming.broker_checks import DEFAULT_CONNECT_TIMEOUT_S, BrokerWatchdog
from streaming.bronze_queries import (
    CONTINUOUS_MAX_OFFSETS,
    DEFAULT_TRIGGER_S,
    Bronze,
    run_available_now,
    start_bronze,
)
from streaming.bronze_table import BronzeTable, bronze_tables, to_bronze_rows
from streaming.incarnations import incarnation, reset_source
from streaming.query_errors import batch_failure, raise_failure

__all__ = ["DEFAULT_CONNECT_TIMEOUT_S", "DEFAULT_TRIGGER_S", "Bronze", "BronzeTable", "batch_failure", "bronze_tables",
           "incarnation", "main", "reset_source", "run_available_now", "start_bronze", "to_bronze_rows"]

log = logging.getLogger("ecomlake.bronze")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ecomlake bronze",
        description="Stream TOPIC_ORDER_EVENTS and TOPIC_PAYMENT_EVENTS into the Delta tables "
        "bronze_raw.orders_raw and bronze_raw.payments_raw under LAKEHOUSE_URI, exactly once "
        "(KAFKA_SOURCE picks the Kafka reader, LAKE_ENGINE the Delta writer).",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--available-now", action="store_true",
                      help="process everything in the topics now, then stop")
    mode.add_argument("--trigger", type=positive_float, metavar="SECONDS", default=DEFAULT_TRIGGER_S,
                      help=f"run until stopped, one micro-batch every SECONDS (default {DEFAULT_TRIGGER_S:g})")
    parser.add_argument("--max-offsets-per-trigger", type=positive_int, metavar="N",
                        help="at most N records per micro-batch and topic (default: "
                        f"{CONTINUOUS_MAX_OFFSETS:,} when running until stopped, no limit with --available-now)")
    parser.add_argument("--reset-source", action="store_true",
                        help="the broker lost its data or the topics were recreated: read them from the earliest "
                        "offset as a new broker incarnation, keeping the rows already in bronze")
    parser.add_argument("--connect-timeout", type=positive_float, metavar="SECONDS",
                        default=DEFAULT_CONNECT_TIMEOUT_S,
                        help=f"how long to retry an unreachable broker at start (default {DEFAULT_CONNECT_TIMEOUT_S:g})")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    log_to_stderr(log, "bronze")
    settings = load()
    from ecomlake.spark import get_spark

    if settings.is_local_lake:
        check_lake(settings.lakehouse_uri)
    spark = get_spark(settings, app_name="ecomlake-bronze")
    if args.available_now:
        result = run_available_now(spark, settings, args.max_offsets_per_trigger, args.connect_timeout,
                                   reset=args.reset_source)
        rate = result["rows"] / result["seconds"] if result["seconds"] else 0.0
        print(f"bronze: {result['rows']} new rows ({result[contract.BRONZE_ORDERS]['rows']} orders, "
              f"{result[contract.BRONZE_PAYMENTS]['rows']} payments) in {result['seconds']:.1f}s ({rate:.0f} rows/s)")
        return 0
    job = start_bronze(spark, settings, args.trigger, args.max_offsets_per_trigger or CONTINUOUS_MAX_OFFSETS,
                       args.connect_timeout, reset=args.reset_source)
    log.info("streaming %s -> %s (checkpoints under %s); Ctrl-C to stop",
             ", ".join(b.topic for b in bronze_tables(settings)), contract.BRONZE_SCHEMA,
             settings.checkpoint_uri(""))
    watchdog = BrokerWatchdog(settings.kafka_bootstrap, args.connect_timeout)
    try:
        if run_until_stopped(lambda: _watch(job, watchdog)):
            log.info("stopping")
        return 0
    finally:
        job.stop()


def _watch(job: Bronze, watchdog: BrokerWatchdog) -> None:
    """Until a query stops (with its cause) or the broker has been gone for the whole --connect-timeout."""
    while True:
        for query in job.queries:
            if not query.isActive:
                job.stop()
                if watchdog.down_since is not None:
                    raise EcomlakeError(watchdog.failure())
                if not watchdog.reachable():
                    raise EcomlakeError(watchdog.failed_mid_batch())
                raise_failure(query)
                raise EcomlakeError(f"query {query.name} stopped unexpectedly")
        if watchdog.check():
            job.stop(wait_s=5.0)
            raise EcomlakeError(watchdog.failure())
        time.sleep(0.5)


def _submit_main() -> int:
    """Entry point under spark-submit: the same one-line errors as the `ecomlake` command."""
    try:
        return main()
    except EcomlakeError as err:
        print(f"bronze: error: {err}", file=sys.stderr)
        return err.exit_code


if __name__ == "__main__":
    sys.exit(_submit_main())
