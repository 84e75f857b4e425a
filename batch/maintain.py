"""`ecomlake maintain [--retention-hours H]`: OPTIMIZE (compact small files) and VACUUM (delete files no longer
referenced and older than the retention) for every bronze and silver table, with one summary line per table.

The retention is never shorter than 1 hour, and for a table whose downstream silver job is behind it is
lengthened to keep every file that job still has to read (silver follows the data-changing commits, whose files
a compaction may already have removed from the current version).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Callable, Sequence

from batch.silver import enrich as silver_enrich
from batch.silver import orders as silver_orders
from batch.silver import payments as silver_payments
from ecomlake import tables
from ecomlake.errors import EcomlakeError
from ecomlake.locks import check_lake, single_writer
from ecomlake.tables import LAKE_TABLES

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from ecomlake.lake import LakeEngine
    from ecomlake.settings import Settings
    from ecomlake.tables import Table

DEFAULT_RETENTION_HOURS = 168
MIN_RETENTION_HOURS = 1
Decode = Callable[[int], "int | None"]


def _readers(settings: "Settings") -> dict[str, list[tuple[str, str, Decode]]]:
    """table uri -> the silver targets that read it incrementally: (target uri, app id, consumed version of it)."""
    uri = lambda table: table.uri(settings)  # noqa: E731
    same: Decode = lambda v: v  # noqa: E731
    quarantine, enriched = uri(tables.QUARANTINE), uri(tables.ORDER_PAYMENTS_ENRICHED)
    return {
        uri(tables.ORDERS_RAW): [
            (uri(target), silver_orders.APP_ID, same)
            for target in (tables.ORDERS_CLEAN, tables.ORDER_EVENTS, tables.QUARANTINE)
        ],
        uri(tables.PAYMENTS_RAW): [
            (uri(tables.PAYMENTS_CLEAN), silver_payments.APP_ID, same),
            (quarantine, silver_payments.APP_ID, same),
        ],
        uri(tables.ORDER_EVENTS): [
            (enriched, silver_enrich.APP_ID, lambda v: silver_enrich.unpack_versions(v)[0]),
        ],
        uri(tables.PAYMENTS_CLEAN): [
            (enriched, silver_enrich.APP_ID, lambda v: silver_enrich.unpack_versions(v)[1]),
        ],
    }


def safe_retention(
    lake: "LakeEngine", uri: str, requested: int, readers: list[tuple[str, str, Decode]], now: datetime
) -> tuple[int, str]:
    """(retention hours, why it is longer than requested or ""): old enough to cover every commit a reader of the
    table has not consumed yet."""
    latest = lake.version(uri)
    consumed = []
    for target_uri, app, decode in readers:
        recorded = lake.txn_version(target_uri, app) if lake.exists(target_uri) else None
        version = None if recorded is None else decode(recorded)
        consumed.append(-1 if version is None else version)
    oldest = min(consumed, default=latest)
    if latest is None or oldest >= latest:
        return requested, ""
    commits = {c["version"]: c["timestamp"] for c in lake.history(uri, limit=latest - oldest)}
    if oldest + 1 not in commits:
        raise EcomlakeError(f"{uri}: cannot date commit {oldest + 1}, which silver has not read yet")
    needed = math.ceil((now - commits[oldest + 1]).total_seconds() / 3600) + 1
    if needed <= requested:
        return requested, ""
    return needed, f"silver has not read v{oldest + 1}+ yet"


def check_retention(hours: int) -> None:
    if hours < MIN_RETENTION_HOURS:
        raise EcomlakeError(
            f"--retention-hours {hours} is below {MIN_RETENTION_HOURS}: a shorter retention can delete files that "
            "running readers and writers still need"
        )


def run_maintain(
    spark: "SparkSession",
    settings: "Settings",
    retention_hours: int = DEFAULT_RETENTION_HOURS,
    echo: Callable[[str], None] | None = None,
    lake: "LakeEngine | None" = None,
) -> list[dict]:
    """OPTIMIZE then VACUUM each table that exists; returns one dict of figures per table."""
    from ecomlake.lake import get_engine

    check_retention(retention_hours)
    lake = lake or get_engine(spark, settings)
    readers = _readers(settings)
    with single_writer(settings.lakehouse_uri, "maintain"):
        return [_maintain_table(lake, table, settings, retention_hours, readers, echo) for table in LAKE_TABLES]


def _maintain_table(lake: "LakeEngine", table: "Table", settings: "Settings", retention_hours: int,
                    readers: dict, echo: Callable[[str], None] | None) -> dict:
    name, uri, started = table.qualified, table.uri(settings), time.monotonic()
    if not lake.exists(uri):
        result = {"table": name, "skipped": "no table yet"}
        line = f"{name}: no table yet, skipped"
    else:
        compacted = lake.optimize(uri)
        hours, why = safe_retention(lake, uri, retention_hours, readers.get(uri, []), datetime.now(timezone.utc))
        deleted = lake.vacuum(uri, hours)
        result = {
            "table": name, **compacted, "files_deleted": len(deleted), "retention_hours": hours,
            "seconds": round(time.monotonic() - started, 3),
        }
        line = (
            f"{name}: compacted {compacted['files_removed']} files into {compacted['files_added']}, "
            f"vacuumed {len(deleted)} files (retention {hours} h{': ' + why if why else ''}) "
            f"in {result['seconds']:.1f} s"
        )
    if echo:
        echo(line)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ecomlake maintain", description=__doc__)
    parser.add_argument(
        "--retention-hours", type=int, default=DEFAULT_RETENTION_HOURS,
        help=f"keep unreferenced files this long (default {DEFAULT_RETENTION_HOURS}, at least {MIN_RETENTION_HOURS})",
    )
    args = parser.parse_args(argv)
    check_retention(args.retention_hours)
    from ecomlake.settings import Settings
    from ecomlake.spark import get_spark

    settings = Settings.from_env()
    if settings.is_local_lake:
        check_lake(settings.lakehouse_uri)
    spark = get_spark(settings, app_name="ecomlake-maintain")
    run_maintain(spark, settings, args.retention_hours, echo=lambda line: print(line, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
