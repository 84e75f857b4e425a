"""The lake engine interface (seam 2): what bronze, silver and maintenance may ask of a Delta lake."""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator, Sequence

if TYPE_CHECKING:
    from datetime import timedelta

    from pyspark.sql import DataFrame, SparkSession

    from ecomlake.settings import Settings


class LakeEngine(ABC):
    name: str
    reads_rows_by_key: bool = False
    """Whether `rows_matching` is offered: the stored rows of given keys as Arrow, read without Spark. Silver's
    one-pass cycle needs it; without it silver runs its three Spark jobs."""

    def __init__(self, spark: "SparkSession", settings: "Settings") -> None:
        self.spark = spark
        self.settings = settings

    @contextmanager
    def kept_open(self) -> Iterator[None]:
        """Within, a long-running writer's thread may keep its tables open between calls (see DeltaRsEngine)."""
        yield

    # --- table state -------------------------------------------------------------------------------
    @abstractmethod
    def exists(self, uri: str) -> bool:
        """True when a Delta table exists at `uri`."""

    @abstractmethod
    def version(self, uri: str) -> int | None:
        """The table's latest committed version, or None when there is no table."""

    def partition_columns(self, uri: str) -> list[str]:
        """The table's partition columns ([] when it does not exist), from its Delta log: no Spark job."""
        from ecomlake.lake import delta_log

        version = delta_log.latest_version(uri)
        return [] if version is None else list(delta_log.table_metadata(uri, version).get("partitionColumns") or [])

    @abstractmethod
    def txn_version(self, uri: str, app_id: str) -> int | None:
        """The last application-transaction version recorded for `app_id` (idempotent writers), or None."""

    # --- writes --------------------------------------------------------------------------------------
    @abstractmethod
    def append_batch(
        self, df: "DataFrame", uri: str, app_id: str, txn_version: int, partition_by: Sequence[str] = ()
    ) -> bool:
        """Append `df` and record (app_id, txn_version) in the same commit; skip when that version (or a later
        one) is already recorded. Returns True when it wrote, False when the batch was already committed."""

    @abstractmethod
    def merge(
        self,
        df: "DataFrame",
        uri: str,
        keys: Sequence[str],
        *,
        partition_by: Sequence[str] = (),
        when_matched_update: str | None = None,
        app_id: str | None = None,
        txn_version: int | None = None,
        target_filter: str | None = None,
    ) -> bool:
        """Upsert `df` into `uri` on `keys` (creating the table if missing). `when_matched_update` is an optional SQL
        predicate over `target`/`source` that must hold for a matched row to be updated (e.g. only newer
        events win). `target_filter`, an SQL predicate over `target` that every stored row of `df`'s keys meets (e.g.
        their partitions), lets the engine skip the files of the other rows. With app_id/txn_version the merge is
        recorded as an application transaction in the same commit (even when no row changes, so a consumed batch is
        remembered) and skipped when that version or a later one is already recorded. Returns True when it
        committed."""

    def merge_counted(self, df: "DataFrame", uri: str, keys: Sequence[str], **options) -> int:
        """`merge`, returning the number of rows `df` held. The count comes from the evaluation the merge writes:
        evaluated again after the commit, a plan that compares with the target would find its rows stored already."""
        df = df.persist()
        try:
            rows = df.count()
            self.merge(df, uri, keys, **options)
            return rows
        finally:
            df.unpersist()

    # --- reads ---------------------------------------------------------------------------------------
    @abstractmethod
    def read(self, uri: str, version: int | None = None) -> "DataFrame":
        """The table (at `version`, default latest) as a Spark DataFrame."""

    def changes_since(self, uri: str, version: int | None, until: int | None = None) -> "DataFrame":
        """Rows added to an append-only table after `version` (None: all rows) up to `until` (default: the latest
        version; silver pins it so state and data agree). Follows the commits' data-changing adds (like Delta's
        streaming source), so OPTIMIZE rewrites in between neither repeat nor lose rows. For a merged table the
        result is a superset of the changed rows (whole rewritten files). Engine-neutral: it reads the Delta log
        and the added Parquet files, which is exact unless the table maps column names or has deletion vectors."""
        from ecomlake.errors import EcomlakeError
        from ecomlake.lake import delta_log

        until = self.version(uri) if until is None else until
        if until is None:
            raise EcomlakeError(f"no Delta table at {uri}")
        if version is None:
            return self.read(uri, until)
        meta = delta_log.table_metadata(uri, until)
        if (meta.get("configuration") or {}).get("delta.columnMapping.mode", "none") != "none":
            raise EcomlakeError(f"{uri} uses Delta column mapping, which reading its changes does not support")
        adds = delta_log.added_files(uri, version, until) if version < until else []
        if any(add.get("deletionVector") for add in adds):
            raise EcomlakeError(f"{uri} has deletion vectors, which reading its changes does not support")
        return delta_log.read_files(
            self.spark, uri, delta_log.schema_from_json(meta["schemaString"]), meta.get("partitionColumns") or [],
            adds,
        )

    @abstractmethod
    def history(self, uri: str, limit: int | None = None) -> list[dict]:
        """The table's commits, newest first, as dicts with version, timestamp (aware UTC datetime), operation.
        `ecomlake maintain` uses it to keep files that silver has not consumed yet."""

    # --- maintenance ---------------------------------------------------------------------------------
    @abstractmethod
    def optimize(self, uri: str, recent: "timedelta | None" = None) -> dict:
        """Compact small files; with `recent`, only in the published_minute partitions within `recent` of the table's
        newest (a table laid out by publication gets its new files there, and a compaction of the whole table reads
        every file's entry). Returns engine metrics (files removed/added)."""

    @abstractmethod
    def vacuum(self, uri: str, retention_hours: int) -> list[str]:
        """Delete files no longer referenced and older than the retention. Returns the deleted paths."""
