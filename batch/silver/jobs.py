"""`ecomlake silver [--only orders|payments|enrich]`: the incremental silver jobs, in order, with a summary each.

Each job reads only what its source gained since its last successful run, so running it again right away
changes nothing, and a crashed run is completed by the next one.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Callable, Sequence

from batch.silver import common, enrich, one_pass, orders, payments
from ecomlake.locks import single_writer
from ecomlake.tables import PUBLISHED_MINUTE, in_layer

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from ecomlake.lake import LakeEngine
    from ecomlake.settings import Settings

COMPACT_RECENT = timedelta(hours=1)
JOBS = {"orders": orders.run, "payments": payments.run, "enrich": enrich.run}


def run_silver(
    spark: "SparkSession",
    settings: "Settings",
    only: Sequence[str] | None = None,
    echo: Callable[[str], None] | None = None,
    lake: "LakeEngine | None" = None,
    compact: bool = False,
    in_one_pass: bool = False,
) -> dict[str, dict]:
    """Run the jobs (all, in order, or `only` these) in this process, then (`compact`) compact the silver tables
    under the same lock; returns each job's figures by name. `in_one_pass`: all three jobs' work in one pass where
    batch/silver/one_pass.py applies (the figures then say `one_pass`), the jobs where it does not."""
    from ecomlake.lake import get_engine

    lake = lake or get_engine(spark, settings)
    results = {}
    with single_writer(settings.lakehouse_uri, "silver"):
        common.add_new_columns(spark, lake, settings)
        fused = one_pass.run(spark, settings, lake) if in_one_pass and not only else None
        for name, job in JOBS.items():
            if only and name not in only:
                continue
            stats = fused[name] if fused else job(spark, settings, lake)
            if echo:
                echo(stats.summary())
            results[name] = {**stats.as_dict(), "one_pass": bool(fused)}
        if compact:
            started = time.perf_counter()
            files = compact_silver(lake, settings)
            if echo:
                echo(f"silver compaction: {sum(f['files_removed'] for f in files.values())} files into "
                     f"{sum(f['files_added'] for f in files.values())} in {time.perf_counter() - started:.1f} s")
    return results


def compact_silver(lake: "LakeEngine", settings: "Settings") -> dict[str, dict]:
    """Bin-pack the small files of every silver table. Each cycle adds files to each table, and every later cycle
    pays for each file in its reads and merges. Compaction commits no data change, so no reader of the tables'
    changes (enrichment, gold) sees a row twice.

    A table laid out by published_minute gets its new files in the minutes of now (a cycle's rows were published in
    the last seconds; a merge rewrites an older minute's file in place of the old one), so only its newest
    COMPACT_RECENT of minutes is compacted: compacting a whole table with a day of history reads the entries of its
    1,440 minutes' files, every fifth cycle. `ecomlake maintain` compacts whole tables."""
    return {t.name: lake.optimize(uri, recent=COMPACT_RECENT if lake.partition_columns(uri) == [PUBLISHED_MINUTE]
                                  else None)
            for t in in_layer("silver") if lake.exists(uri := t.uri(settings))}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ecomlake silver", description=__doc__)
    parser.add_argument("--only", choices=list(JOBS), help="run just this job")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return common.run_standalone(*(job for name, job in JOBS.items() if args.only in (None, name)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
