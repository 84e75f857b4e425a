"""`ecomlake silver [--only orders|payments|enrich]`: the incremental silver jobs, in order, with a summary each.

Each job reads only what its source gained since its last successful run, so running it again right away
changes nothing, and a crashed run is completed by the next one.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Callable, Sequence

from batch.silver import common, enrich, orders, payments
from ecomlake.locks import single_writer

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from ecomlake.lake import LakeEngine
    from ecomlake.settings import Settings

JOBS = {"orders": orders.run, "payments": payments.run, "enrich": enrich.run}


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
    with single_writer(settings.lakehouse_uri, "silver"):
        for name, job in JOBS.items():
            if only and name not in only:
                continue
            stats = job(spark, settings, lake)
            if echo:
                echo(stats.summary())
            results[name] = stats.as_dict()
    return results


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
