"""silver.payments_clean: one row per payment event (deduplicated on event_id); contract breakers go to quarantine.

A payment without event_id gets a deterministic synthetic one from its bronze coordinates, so reruns agree.
Payments may arrive before their order: they wait here until enrichment sees the order. Runs alone with
`ecomlake silver --only payments` or `spark-submit batch/silver_payments.py`.
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from typing import TYPE_CHECKING, Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from batch.silver import common
from ecomlake.contract import (
    BRONZE_PAYMENTS,
    BRONZE_SCHEMA,
    CURRENCIES,
    MONEY_TYPE,
    PAYMENT_EVENT_DDL,
    PAYMENT_METHODS,
    PAYMENT_REQUIRED,
    PAYMENT_STATUSES,
    SILVER_PAYMENTS,
    SILVER_QUARANTINE,
    SILVER_SCHEMA,
)
from ecomlake.projection import project, quoted
from ecomlake.settings import Settings
from ecomlake.tables import PUBLISHED_MINUTE

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from ecomlake.lake import LakeEngine

SOURCE_TABLE = f"{BRONZE_SCHEMA}.{BRONZE_PAYMENTS}"
APP_ID = common.app_id(SOURCE_TABLE)
FIELD_KINDS = {
    "event_id": "string",
    "payment_id": "string",
    "order_id": "string",
    "amount_cents": "integer",
    "currency": "string",
    "status": "string",
    "method": "string",
    "event_ts": "string",
}
# amount = amount_cents / 100 must fit decimal(18,2).
MAX_AMOUNT_CENTS = 10**18 - 1
CLEAN_COLUMNS = common.columns(common.PAYMENTS_CLEAN_DDL)
assert set(FIELD_KINDS) == set(PAYMENT_REQUIRED)


def synthetic_event_id() -> F.Column:
    """Deterministic id for a payment without one: a hash of its (topic, partition, offset), with the broker
    incarnation in front after a `bronze --reset-source` (ids from the first incarnation stay as they were)."""
    coordinates = F.concat_ws(":", "topic", F.col("partition").cast("string"), F.col("offset").cast("string"))
    coordinates = F.when(F.col("incarnation") > 0, F.concat_ws("@", F.col("incarnation").cast("string"), coordinates)
                         ).otherwise(coordinates)
    return F.concat(F.lit("synthetic-"), F.substring(F.sha2(coordinates, 256), 1, 32))


def classify(bronze: DataFrame, max_ahead_s: int = Settings.event_ts_max_ahead_s) -> DataFrame:
    """Bronze rows with the typed payment fields and `reason` (NULL when the event honours the contract). The VARIANT
    parse the checks use is left out: the widest column, and the silver jobs cache what this returns."""
    doc = common.with_json(bronze, PAYMENT_EVENT_DDL).withColumn(
        "_event_ts", F.expr("try_to_timestamp(_doc.event_ts)")
    )
    d = lambda name: F.col(f"_doc.{name}")  # noqa: E731
    required = [name for name in PAYMENT_REQUIRED if name != "event_id"]
    id_missing, _ = common.missing("event_id")
    id_wrong_type, id_reason = common.wrong_type("event_id", "string")
    rules = [common.malformed()]
    rules += [common.missing(name) for name in required]
    rules += [(~id_missing & id_wrong_type, id_reason)]
    rules += [common.wrong_type(name, FIELD_KINDS[name]) for name in required]
    cents = d("amount_cents")
    rules += [
        common.invalid(cents.isNull() | (cents < 0) | (cents > MAX_AMOUNT_CENTS), "amount_cents"),
        common.invalid(common.not_in(d("currency"), CURRENCIES), "currency"),
        common.invalid(common.not_in(d("status"), PAYMENT_STATUSES), "status"),
        common.invalid(common.not_in(d("method"), PAYMENT_METHODS), "method"),
        common.invalid(F.col("_event_ts").isNull(), "event_ts"),
        common.future_event_ts(max_ahead_s),
    ]
    return doc.withColumn("reason", common.first_reason(rules)).withColumn(
        "_event_id", F.when(id_missing, synthetic_event_id()).otherwise(d("event_id"))
    ).drop("_json")


def _typed() -> dict[str, str]:
    """The SQL of each typed payments_clean column of a classified row (lineage columns are taken as they are)."""
    return {
        "event_id": "_event_id",
        "amount": f"CAST(CAST(_doc.amount_cents AS decimal(20,0)) / 100 AS {MONEY_TYPE})",
        "event_ts": "_event_ts",
        "event_date": "to_date(_event_ts)",
        PUBLISHED_MINUTE: common.PUBLISHED_MINUTE_SQL,
        **{c: f"_doc.{c}" for c in ("payment_id", "order_id", "amount_cents", "currency", "status", "method")},
    }


def split(classified: DataFrame) -> tuple[DataFrame, DataFrame]:
    """(valid payments as payments_clean rows, rejected bronze rows with their reason)."""
    typed = _typed()
    valid = project(classified.filter("reason IS NULL"), [
        f"{typed[c]} AS {quoted(c)}" if c in typed else quoted(c) for c in CLEAN_COLUMNS
    ])
    rejected = project(classified.filter("reason IS NOT NULL"), map(quoted, (*common.RAW_COLUMNS, "reason")))
    return valid, rejected


def increment_rows(classified: DataFrame) -> DataFrame:
    """Every classified row as one row: payments_clean's columns (NULL unless the row is valid), the raw columns
    and the reason. What silver's one-pass cycle collects (batch/silver/one_pass.py)."""
    return common.increment_rows(classified, CLEAN_COLUMNS, _typed())


def validate(bronze: DataFrame) -> tuple[DataFrame, DataFrame]:
    return split(classify(bronze))


def write_clean(lake: "LakeEngine", batch: common.Increment, uri: str, stats: common.JobStats) -> None:
    """Merge the increment's new payments into payments_clean, recording its bronze version in that commit."""
    stats.written += common.write_events(lake, batch, batch.once(split)[0], uri, APP_ID, stats)


def run(spark: "SparkSession", settings: "Settings", lake: "LakeEngine | None" = None) -> common.JobStats:
    """Add the bronze payments that arrived since the last run to payments_clean and quarantine."""
    from ecomlake.lake import get_engine

    lake = lake or get_engine(spark, settings)
    stats = common.JobStats("payments")
    clean_uri = settings.table_uri(SILVER_SCHEMA, SILVER_PAYMENTS)
    quarantine_uri = settings.table_uri(SILVER_SCHEMA, SILVER_QUARANTINE)
    writers = {
        clean_uri: lambda batch: write_clean(lake, batch, clean_uri, stats),
        quarantine_uri: lambda batch: common.write_quarantine(
            lake, batch, batch.once(split)[1], quarantine_uri, SOURCE_TABLE, stats,
            conflicts=common.conflicting_rows(lake, batch, batch.once(split)[0], clean_uri),
        ),
    }
    return common.run_increment(
        lake, stats, settings.table_uri(BRONZE_SCHEMA, BRONZE_PAYMENTS), APP_ID,
        partial(classify, max_ahead_s=settings.event_ts_max_ahead_s), writers
    )


def main(argv: Sequence[str] | None = None) -> int:
    argparse.ArgumentParser(prog="ecomlake silver --only payments", description=__doc__).parse_args(argv)
    return common.run_standalone(run)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
