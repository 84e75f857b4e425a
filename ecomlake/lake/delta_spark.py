"""`LAKE_ENGINE=delta-spark`: Delta Lake for Spark (io.delta jars from SPARK_EXTRA_JARS or SPARK_PACKAGES)."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import timedelta, timezone
from typing import TYPE_CHECKING, Sequence

from ecomlake.lake import delta_log
from ecomlake.lake.base import LakeEngine
from ecomlake.tables import PUBLISHED_MINUTE

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


LISTING_PARALLELISM = "spark.sql.sources.parallelPartitionDiscovery.parallelism"


class DeltaSparkEngine(LakeEngine):
    name = "delta-spark"

    # --- bronze: table state, idempotent appends, reads (issue 3) -----------------------------------
    def exists(self, uri: str) -> bool:
        from delta.tables import DeltaTable

        return DeltaTable.isDeltaTable(self.spark, uri)

    def version(self, uri: str) -> int | None:
        from delta.tables import DeltaTable

        if not self.exists(uri):
            return None
        return DeltaTable.forPath(self.spark, uri).history(1).select("version").first()[0]

    def txn_version(self, uri: str, app_id: str) -> int | None:
        """Delta for Spark has no public API for it; the log holds it (see ecomlake.lake.delta_log)."""
        return delta_log.txn_version(uri, app_id)

    def append_batch(
        self, df: "DataFrame", uri: str, app_id: str, txn_version: int, partition_by: Sequence[str] = ()
    ) -> bool:
        """Delta's idempotent writes (txnAppId/txnVersion) skip a replayed batch by themselves; the check before
        only tells the caller whether this call wrote."""
        done = self.txn_version(uri, app_id)
        if done is not None and done >= txn_version:
            return False
        writer = (df.write.format("delta").mode("append").option("mergeSchema", "true")
                  .option("txnAppId", app_id).option("txnVersion", txn_version))
        if partition_by and not self.exists(uri):  # a table keeps the partitioning it was created with
            writer = writer.partitionBy(*partition_by)
        writer.save(uri)
        return True

    def read(self, uri: str, version: int | None = None) -> "DataFrame":
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        return reader.load(uri)

    # --- silver: merge, history and maintenance ----------------------------------------------------
    def merge(self, df, uri, keys, *, partition_by=(), when_matched_update=None, app_id=None, txn_version=None,
              target_filter=None):
        from delta.tables import DeltaTable

        idempotent = app_id is not None and txn_version is not None
        if not DeltaTable.isDeltaTable(self.spark, uri):
            writer = df.write.format("delta").mode("append")
            if partition_by:
                writer = writer.partitionBy(*partition_by)
            if idempotent:
                writer = writer.option("txnAppId", app_id).option("txnVersion", txn_version)
            writer.save(uri)
            return True
        if idempotent:
            done = self.txn_version(uri, app_id)
            if done is not None and done >= txn_version:
                return False
        table = DeltaTable.forPath(self.spark, uri)
        before = table.history(1).select("version").first()[0]
        condition = " AND ".join(f"target.`{k}` = source.`{k}`" for k in keys)
        if target_filter:
            condition += f" AND ({target_filter})"
        with _txn_confs(self.spark, app_id if idempotent else None, txn_version):
            (
                table.alias("target")
                .merge(df.alias("source"), condition)
                .withSchemaEvolution()
                .whenMatchedUpdateAll(condition=when_matched_update)
                .whenNotMatchedInsertAll()
                .execute()
            )
        recorded = self.txn_version(uri, app_id) if idempotent else None
        if not idempotent or (recorded is not None and recorded >= txn_version):
            return table.history(1).select("version").first()[0] > before
        # A merge that changes no row may not commit: record the consumed batch with an empty append.
        (
            self.spark.createDataFrame([], df.schema).write.format("delta").mode("append").option("mergeSchema", "true")
            .option("txnAppId", app_id).option("txnVersion", txn_version).save(uri)
        )
        return True

    def history(self, uri: str, limit: int | None = None) -> list[dict]:
        from delta.tables import DeltaTable

        table = DeltaTable.forPath(self.spark, uri)
        rows = (table.history(limit) if limit else table.history()).select("version", "timestamp", "operation")
        return [
            {
                "version": row["version"],
                # Spark returns session-time-zone (UTC) naive datetimes.
                "timestamp": row["timestamp"].replace(tzinfo=timezone.utc),
                "operation": row["operation"],
            }
            for row in rows.orderBy(rows.version.desc()).collect()
        ]

    def optimize(self, uri: str, recent: "timedelta | None" = None) -> dict:
        from delta.tables import DeltaTable
        from pyspark.sql import functions as F

        table = DeltaTable.forPath(self.spark, uri)
        compaction = table.optimize()
        if recent is not None:
            # Partition values only (no file is read), formatted in the session's time zone, which reads the literal.
            oldest = F.max(PUBLISHED_MINUTE) - F.expr(f"INTERVAL {int(recent.total_seconds())} SECONDS")
            since = table.toDF().agg(F.date_format(oldest, "yyyy-MM-dd HH:mm:ss")).first()[0]
            if since is None:
                return {"files_removed": 0, "files_added": 0}
            compaction = compaction.where(f"{PUBLISHED_MINUTE} >= TIMESTAMP '{since}'")
        metrics = compaction.executeCompaction().select("metrics").first()[0]
        return {"files_removed": int(metrics["numFilesRemoved"]), "files_added": int(metrics["numFilesAdded"])}

    def vacuum(self, uri: str, retention_hours: int) -> list[str]:
        if retention_hours < 1:
            raise ValueError("vacuum retention must be at least 1 hour")
        # The retention is checked by the caller (`ecomlake maintain`), so Delta's 7-day safety check is lifted.
        check = "spark.databricks.delta.retentionDurationCheck.enabled"
        confs, previous = {check: "false"}, {check: self.spark.conf.get(check, "true")}
        # Delta lists the table in `parallelPartitionDiscovery.parallelism` tasks (Spark's default: 10000), twice
        # here (DRY RUN, then VACUUM): on local[2], a small table's vacuum was almost all empty tasks. Unless the Spark
        # conf sets it, list with the cluster's own parallelism (docs/benchmarks.md#design-measurements).
        if not self.spark.sparkContext.getConf().contains(LISTING_PARALLELISM):
            confs[LISTING_PARALLELISM] = str(self.spark.sparkContext.defaultParallelism)
            previous[LISTING_PARALLELISM] = self.spark.conf.get(LISTING_PARALLELISM)
        for key, value in confs.items():
            self.spark.conf.set(key, value)
        try:
            target = f"delta.`{uri}`"
            doomed = [
                row[0] for row in self.spark.sql(f"VACUUM {target} RETAIN {retention_hours} HOURS DRY RUN").collect()
            ]
            self.spark.sql(f"VACUUM {target} RETAIN {retention_hours} HOURS")
        finally:
            for key, value in previous.items():
                self.spark.conf.set(key, value)
        return doomed


@contextmanager
def _txn_confs(spark, app_id: str | None, txn_version: int | None):
    """Delta's session confs that make the next DML (MERGE) an idempotent application transaction."""
    if app_id is None:
        yield
        return
    keys = ("spark.databricks.delta.write.txnAppId", "spark.databricks.delta.write.txnVersion")
    spark.conf.set(keys[0], app_id)
    spark.conf.set(keys[1], str(txn_version))
    try:
        yield
    finally:
        for key in keys:
            spark.conf.unset(key)
