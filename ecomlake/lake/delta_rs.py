"""`LAKE_ENGINE=delta-rs` (embedded default): Spark computes, the `deltalake` package (delta-rs) commits."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Sequence

from ecomlake.errors import EcomlakeError
from ecomlake.lake import delta_log
from ecomlake.lake.base import LakeEngine
from ecomlake.lake.fs import delta_rs_location

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


class DeltaRsEngine(LakeEngine):
    name = "delta-rs"

    # --- bronze: table state, idempotent appends, reads (issue 3) -----------------------------------
    def exists(self, uri: str) -> bool:
        from deltalake import DeltaTable

        location, options = delta_rs_location(uri)
        return DeltaTable.is_deltatable(location, storage_options=options)

    def version(self, uri: str) -> int | None:
        return _open(uri).version() if self.exists(uri) else None

    def txn_version(self, uri: str, app_id: str) -> int | None:
        return _open(uri).transaction_version(app_id) if self.exists(uri) else None

    def append_batch(
        self, df: "DataFrame", uri: str, app_id: str, txn_version: int, partition_by: Sequence[str] = ()
    ) -> bool:
        """The batch is collected to Arrow on the driver (micro-batches are bounded by maxOffsetsPerTrigger) and
        committed by delta-rs together with the (app_id, txn_version) application transaction."""
        from deltalake import write_deltalake

        done = self.txn_version(uri, app_id)
        if done is not None and done >= txn_version:
            return False
        location, options = delta_rs_location(uri)
        write_deltalake(
            location, _nullable(df.toArrow()), mode="append", partition_by=list(partition_by) or None,
            schema_mode="merge", commit_properties=_commit_properties(app_id, txn_version), storage_options=options,
        )
        return True

    def read(self, uri: str, version: int | None = None) -> "DataFrame":
        """Spark reads the version's active Parquet files itself (no copy through the driver)."""
        table = _open(uri, version=version)
        _check_readable(table, uri)
        adds = [
            {"path": a["path"], "partitionValues": _partition_strings(a.get("partition"))}
            for a in _rows(table.get_add_actions(flatten=False))
        ]
        return delta_log.read_files(
            self.spark, uri, delta_log.schema_from_json(table.schema().to_json()),
            table.metadata().partition_columns, adds,
        )

    # --- silver: merge, history and maintenance ----------------------------------------------------
    def merge_counted(self, df, uri, keys, **options) -> int:
        """The rows are collected to Arrow once, counted there and merged: one Spark job, no cached copy."""
        data = _nullable(df.toArrow())
        self.merge(data, uri, keys, **options)
        return data.num_rows

    def merge(self, df, uri, keys, *, partition_by=(), when_matched_update=None, app_id=None, txn_version=None):
        """`df` is a Spark DataFrame, or the Arrow table merge_counted collected from one."""
        import pyarrow as pa
        from deltalake import DeltaTable, write_deltalake

        path, options = delta_rs_location(uri)
        table = DeltaTable(path, storage_options=options) if DeltaTable.is_deltatable(path, options) else None
        if table is not None and app_id is not None and txn_version is not None:
            done = table.transaction_version(app_id)
            if done is not None and done >= txn_version:
                return False
        commit = _commit_properties(app_id, txn_version)
        data = df if isinstance(df, pa.Table) else _nullable(df.toArrow())
        if table is None:
            write_deltalake(path, data, partition_by=list(partition_by) or None, mode="append", commit_properties=commit,
                            storage_options=options)
            return True
        predicate = " AND ".join(f"target.`{k}` = source.`{k}`" for k in keys)
        before = table.version()
        (
            table.merge(data, predicate, source_alias="source", target_alias="target", merge_schema=True,
                        commit_properties=commit)
            .when_matched_update_all(predicate=when_matched_update)
            .when_not_matched_insert_all()
            .execute()
        )
        if table.version() > before:
            return True
        if commit is None:
            return False
        # delta-rs skips the commit of a merge that changes no row: record the consumed batch with an empty append.
        write_deltalake(path, data.schema.empty_table(), mode="append", schema_mode="merge",
                        commit_properties=commit, storage_options=options)
        return True

    def history(self, uri: str, limit: int | None = None) -> list[dict]:
        return [
            {
                "version": entry["version"],
                "timestamp": datetime.fromtimestamp(entry["timestamp"] / 1000, tz=timezone.utc),
                "operation": entry.get("operation"),
            }
            for entry in _open(uri).history(limit)
        ]

    def optimize(self, uri: str) -> dict:
        metrics = _open(uri).optimize.compact()
        return {"files_removed": int(metrics["numFilesRemoved"]), "files_added": int(metrics["numFilesAdded"])}

    def vacuum(self, uri: str, retention_hours: int) -> list[str]:
        if retention_hours < 1:
            raise ValueError("vacuum retention must be at least 1 hour")
        # The retention is checked by the caller (`ecomlake maintain`), so the table's 7-day default is not enforced.
        # full=True also removes files no commit references (left by crashed writers), like Spark's VACUUM.
        return _open(uri).vacuum(
            retention_hours=retention_hours, dry_run=False, enforce_retention_duration=False, full=True
        )


def _open(uri: str, version: int | None = None):
    """The delta-rs table at a lake URI (s3a:// mapped to s3://, S3 options from the settings: lake.fs)."""
    from deltalake import DeltaTable

    location, options = delta_rs_location(uri)
    return DeltaTable(location, version=version, storage_options=options)


def _commit_properties(app_id: str | None, txn_version: int | None):
    from deltalake import CommitProperties, Transaction

    if app_id is None or txn_version is None:
        return None
    return CommitProperties(app_transactions=[Transaction(app_id, txn_version)])


def _nullable(data):
    """Spark marks some derived columns NOT NULL; Delta tables here keep every top-level column nullable so that
    successive merges from differently planned DataFrames always have the same schema."""
    import pyarrow as pa

    return data.cast(pa.schema([field.with_nullable(True) for field in data.schema]))


def _rows(table) -> list[dict]:
    import pyarrow as pa

    return pa.table(table).to_pylist()


def _partition_strings(values: dict | None) -> dict:
    """Partition values as the strings the Delta log holds (the reader casts them to the column types)."""
    return {k: None if v is None else v.isoformat(sep=" ") if hasattr(v, "hour") else str(v)
            for k, v in (values or {}).items()}


def _check_readable(table, uri: str) -> None:
    """Spark reads the Parquet files directly, which is exact unless the table maps column names or has
    deletion vectors (features this project's writers never enable)."""
    config = table.metadata().configuration or {}
    if config.get("delta.columnMapping.mode", "none") != "none":
        raise EcomlakeError(f"{uri} uses Delta column mapping, which the delta-rs engine's reader does not support")
    features = table.protocol().reader_features or []
    if "deletionVectors" in features and len(_rows(table.deletion_vectors())):
        raise EcomlakeError(f"{uri} has deletion vectors, which the delta-rs engine's reader does not support")
