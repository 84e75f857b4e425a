"""`LAKE_ENGINE=delta-rs` (embedded default): Spark computes, the `deltalake` package (delta-rs) commits."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Iterator, Sequence

from ecomlake.errors import EcomlakeError
from ecomlake.lake import delta_log
from ecomlake.lake.base import LakeEngine
from ecomlake.lake.fs import delta_rs_location
from ecomlake.tables import PUBLISHED_MINUTE

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame


class DeltaRsEngine(LakeEngine):
    name = "delta-rs"
    reads_rows_by_key = True

    @contextmanager
    def kept_open(self) -> Iterator[None]:
        """Within, this thread opens each table once and then reads only the commits added since (for a long-running
        writer). Opening a table replays its log from the last checkpoint, and a silver cycle opened tables 20 times:
        late in a long run that was a large share of the cycle, and the cycle grew with the run; with the tables kept
        open it barely grows (docs/benchmarks.md#design-measurements)."""
        outer = getattr(_kept, "tables", None)
        outer_facts = getattr(_kept, "facts", None)
        _kept.tables = {} if outer is None else outer
        _kept.facts = {} if outer_facts is None else outer_facts
        try:
            yield
        finally:
            _kept.tables, _kept.facts = outer, outer_facts

    # --- bronze: table state, idempotent appends, reads (issue 3) -----------------------------------
    def exists(self, uri: str) -> bool:
        from deltalake import DeltaTable

        location, options = delta_rs_location(uri)
        return DeltaTable.is_deltatable(location, storage_options=options)

    def version(self, uri: str) -> int | None:
        return _open(uri).version() if self.exists(uri) else None

    def table_id(self, uri: str) -> str | None:
        """The id Delta gives a table when it is created: another id at the same place is another table."""
        return _per_version(uri, "id", lambda table: table.metadata().id) if self.exists(uri) else None

    def partition_columns(self, uri: str) -> list[str]:
        return _per_version(uri, "partitions", lambda table: list(table.metadata().partition_columns)) \
            if self.exists(uri) else []

    def txn_version(self, uri: str, app_id: str) -> int | None:
        return _per_version(uri, ("txn", app_id), lambda table: table.transaction_version(app_id)) \
            if self.exists(uri) else None

    def append_batch(
        self, df: "DataFrame", uri: str, app_id: str, txn_version: int, partition_by: Sequence[str] = ()
    ) -> bool:
        """The batch is collected to Arrow on the driver (micro-batches are bounded by maxOffsetsPerTrigger) and
        committed by delta-rs together with the (app_id, txn_version) application transaction. `df` may also be an
        Arrow table (silver's one-pass cycle)."""
        import pyarrow as pa
        from deltalake import write_deltalake

        table = _open(uri) if self.exists(uri) else None
        done = table.transaction_version(app_id) if table is not None else None
        if done is not None and done >= txn_version:
            return False
        location, options = delta_rs_location(uri)
        write_deltalake(  # a table keeps the partitioning it was created with
            table or location, _nullable(df if isinstance(df, pa.Table) else df.toArrow()), mode="append",
            partition_by=(list(partition_by) or None) if table is None else None, schema_mode="merge",
            commit_properties=_commit_properties(app_id, txn_version), storage_options=options,
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

    def rows_matching(self, uri: str, keys: dict, partitions: tuple[str, "pa.Array"] | None = None) -> "pa.Table":
        """The latest rows whose value in any of the `keys` columns is among that column's values (an Arrow array),
        read by delta-rs straight from the table's Parquet into Arrow; with `partitions` (a partition column and its
        values), from the files of those partitions only, the others left unopened. A lookup as a Spark job costs
        ten times as much.

        The rows are filtered batch by batch after the scan, not by a scan filter: delta-rs writes its strings as
        string_view, and pyarrow's scan filter then fails on files whose statistics it compares with plain strings
        (random ids make statistics useless here anyway)."""
        import pyarrow as pa

        table = _open(uri)
        _check_readable(table, uri)
        keys = {column: values for column, values in keys.items() if len(values)}
        if partitions is not None:
            schema = pa.schema(table.schema().to_arrow())
            if not keys:
                return schema.empty_table()
            column, values = partitions
            found = [_matching(rows, keys) for rows in _partition_rows(table, uri, schema, column, values)]
            return pa.Table.from_batches([b for t in found for b in t.to_batches()], schema=schema)
        dataset = table.to_pyarrow_dataset()
        if not keys:
            return dataset.schema.empty_table()
        found = [_matching(batch, keys) for batch in dataset.to_batches(columns=dataset.schema.names)]
        return pa.Table.from_batches(found, schema=dataset.schema)

    def partition_files(self, uri: str, column: str, values: "pa.Array | None" = None) -> list[tuple[str, object]]:
        """(file path, partition value) of the table's files in the partitions `values` of `column` (all when
        None), from the Delta log: no file is opened."""
        return _partition_files(_open(uri), uri, column, values)

    # --- silver: merge, history and maintenance ----------------------------------------------------
    def merge_counted(self, df, uri, keys, **options) -> int:
        """The rows are collected to Arrow once, counted there and merged: one Spark job, no cached copy."""
        data = _nullable(df.toArrow())
        self.merge(data, uri, keys, **options)
        return data.num_rows

    def merge(self, df, uri, keys, *, partition_by=(), when_matched_update=None, app_id=None, txn_version=None,
              target_filter=None):
        """`df` is a Spark DataFrame, or the Arrow table merge_counted collected from one."""
        import pyarrow as pa
        from deltalake import write_deltalake

        path, options = delta_rs_location(uri)
        table = _open(uri) if self.exists(uri) else None
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
        if target_filter:
            predicate += f" AND ({target_filter})"
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
        write_deltalake(table, data.schema.empty_table(), mode="append", schema_mode="merge", commit_properties=commit)
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

    def optimize(self, uri: str, recent: timedelta | None = None) -> dict:
        import pyarrow as pa
        import pyarrow.compute as pc

        table, filters = _open(uri), None
        if recent is not None:
            actions = pa.table(table.get_add_actions(flatten=True))
            if not actions.num_rows:
                return {"files_removed": 0, "files_added": 0}
            newest = pc.max(actions[f"partition.{PUBLISHED_MINUTE}"]).as_py()
            filters = [(PUBLISHED_MINUTE, ">=", _minute_text(newest - recent))]
        metrics = table.optimize.compact(partition_filters=filters)
        return {"files_removed": int(metrics["numFilesRemoved"]), "files_added": int(metrics["numFilesAdded"])}

    def vacuum(self, uri: str, retention_hours: int) -> list[str]:
        if retention_hours < 1:
            raise ValueError("vacuum retention must be at least 1 hour")
        # The retention is checked by the caller (`ecomlake maintain`), so the table's 7-day default is not enforced.
        # full=True also removes files no commit references (left by crashed writers), like Spark's VACUUM.
        return _open(uri).vacuum(
            retention_hours=retention_hours, dry_run=False, enforce_retention_duration=False, full=True
        )


_kept = threading.local()


def _matching(rows, keys: dict):
    """The rows (a batch or a table) whose value in any `keys` column is among that column's values."""
    import pyarrow.compute as pc

    matches = [pc.is_in(rows[column], value_set=values.cast(rows.schema.field(column).type))
               for column, values in keys.items()]
    mask = matches[0]
    for match in matches[1:]:
        mask = pc.or_kleene(mask, match)
    return rows.filter(mask)


def _partition_files(table, uri: str, column: str, values) -> list[tuple[str, object]]:
    import posixpath
    from urllib.parse import unquote

    import pyarrow as pa
    import pyarrow.compute as pc

    from ecomlake.lake.fs import resolve

    actions = pa.table(table.get_add_actions(flatten=True))
    if not actions.num_rows:
        return []
    parts = actions[f"partition.{column}"]
    if values is not None:
        keep = pc.is_in(parts, value_set=values.cast(parts.type))
        actions, parts = actions.filter(keep), parts.filter(keep)
    _, root = resolve(uri)
    return [(posixpath.join(root, unquote(path)), value)
            for path, value in zip(actions["path"].to_pylist(), parts.to_pylist())]


def _partition_rows(table, uri: str, schema, column: str, values):
    """Each file of the partitions `values` of `column`, as an Arrow table in `schema` (its partition value added)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ecomlake.lake.fs import resolve

    filesystem, _ = resolve(uri)
    for path, value in _partition_files(table, uri, column, values):
        rows = pq.read_table(path, filesystem=filesystem)
        for field in schema:  # columns added to the table after this file was written
            if field.name not in rows.column_names:
                rows = rows.append_column(field.name, pa.array([value if field.name == column else None]
                                                               * rows.num_rows, field.type))
        yield rows.select(schema.names).cast(schema)


def _per_version(uri: str, fact, read):
    """`read(table)` of the table's latest version, remembered per version within kept_open: a silver cycle asks a
    table for its transactions and layout a dozen times between two of its commits, and on a table with a day of
    history each answer walks its snapshot (docs/architecture.md, "Running for days")."""
    table = _open(uri)
    memo = getattr(_kept, "facts", None)  # set with the kept tables, in kept_open
    if memo is None:
        return read(table)
    key = (table.table_uri, table.version(), fact)
    if key not in memo:
        if len(memo) > 10_000:
            memo.clear()
        memo[key] = read(table)
    return memo[key]


def _open(uri: str, version: int | None = None):
    """The delta-rs table at a lake URI (s3a:// mapped to s3://, S3 options from the settings: lake.fs); within
    DeltaRsEngine.kept_open, the thread's open table brought up to date."""
    from deltalake import DeltaTable

    location, options = delta_rs_location(uri)
    kept = getattr(_kept, "tables", None)
    if kept is None or version is not None:
        return DeltaTable(location, version=version, storage_options=options)
    table = kept.get(location)
    if table is None:
        table = kept[location] = DeltaTable(location, storage_options=options)
    elif delta_log.has_commit(uri, table.version() + 1):  # most calls find none: a lookup, not a log read
        table.update_incremental()
    return table


def _minute_text(at: datetime) -> str:
    """A published_minute value as Delta partition values and SQL literals write it (UTC)."""
    return f"{at.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S}"


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
