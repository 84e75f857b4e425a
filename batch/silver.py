"""`ecomlake silver [--only orders|payments|enrich]`: the incremental silver jobs, in order, with a summary each.

Each job reads only what its source gained since its last successful run, so running it again right away
changes nothing, and a crashed run is completed by the next one.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Callable, Sequence

from batch import silver_enrich, silver_orders, silver_payments

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from ecomlake.lake import LakeEngine
    from ecomlake.settings import Settings

JOBS = {"orders": silver_orders.run, "payments": silver_payments.run, "enrich": silver_enrich.run}


def run_silver(
    spark: "SparkSession",
    settings: "Settings",
    only: Sequence[str] | None = None,
    echo: Callable[[str], None] | None = None,
    lake: "LakeEngine | None" = None,
) -> dict[str, dict]:
    """Run the jobs (all, in order, or `only` these) in this process; returns each job's figures by name."""
    from ecomlake.lake import get_engine

    lake = lake or get_engine(spark, settings)
    results = {}
    for name, job in JOBS.items():
        if only and name not in only:
            continue
        stats = job(spark, settings, lake)
        if echo:
            echo(stats.summary())
        results[name] = stats.as_dict()
    return results


def run_jobs(only: Sequence[str] | None = None) -> int:
    from ecomlake.settings import Settings
    from ecomlake.spark import get_spark

    settings = Settings.from_env()
    spark = get_spark(settings, app_name="ecomlake-silver")
    run_silver(spark, settings, only, echo=lambda line: print(line, flush=True))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ecomlake silver", description=__doc__)
    parser.add_argument("--only", choices=list(JOBS), help="run just this job")
    args = parser.parse_args(argv)
    return run_jobs([args.only] if args.only else None)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
