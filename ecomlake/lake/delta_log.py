"""Reading a Delta table's transaction log directly, and its data files with Spark, for both lake engines.

Why: delta-rs has no Spark reader, and neither engine offers "rows added between two versions" without the
change data feed (which tables written by the other engine may not have). The log answers it exactly: the
`add` actions with dataChange=true of the commits in between (OPTIMIZE's rewrites carry dataChange=false, so
they neither repeat nor lose rows; a file added and then compacted away must still exist, i.e. not be vacuumed).

Log files are read with pyarrow.fs: local paths, file://, s3:// and s3a:// (credentials from the usual AWS_*
variables, endpoint from S3_ENDPOINT).
"""

from __future__ import annotations

import json
import posixpath
from typing import TYPE_CHECKING, Iterable
from urllib.parse import unquote

from ecomlake.errors import EcomlakeError
from ecomlake.lake.fs import resolve

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType


def _listing(uri: str) -> tuple[list[int], dict[int, list[str]]]:
    """(commit versions, {checkpoint version: its parquet files}) of the table at `uri`."""
    from pyarrow import fs

    filesystem, root = resolve(uri)
    log_dir = posixpath.join(root, "_delta_log")
    if filesystem.get_file_info(log_dir).type != fs.FileType.Directory:
        return [], {}
    commits, checkpoints = [], {}
    parts_expected: dict[int, int] = {}
    for info in filesystem.get_file_info(fs.FileSelector(log_dir)):
        name = info.base_name
        head = name.split(".", 1)[0]
        if not head.isdigit():
            continue
        if name.endswith(".json") and name.count(".") == 1:
            commits.append(int(head))
        elif ".checkpoint." in name and name.endswith(".parquet"):
            bits = name.split(".")
            checkpoints.setdefault(int(head), []).append(info.path)
            parts_expected[int(head)] = int(bits[3]) if len(bits) == 5 and bits[3].isdigit() else 1
    complete = {v: sorted(files) for v, files in checkpoints.items() if len(files) == parts_expected[v]}
    return sorted(commits), complete


def latest_version(uri: str) -> int | None:
    commits, checkpoints = _listing(uri)
    versions = commits + list(checkpoints)
    return max(versions) if versions else None


def has_commit(uri: str, version: int) -> bool:
    """Whether commit `version` is in the table's log: one file lookup, where a log listing or a delta-rs update
    reads the directory. Commits are numbered without gaps, so no commit `v + 1` means `v` is the latest."""
    from pyarrow import fs as pafs

    filesystem, root = resolve(uri)
    return filesystem.get_file_info(_commit_path(root, version)).type != pafs.FileType.NotFound


def _commit_path(root: str, version: int) -> str:
    return posixpath.join(root, "_delta_log", f"{version:020d}.json")


def commit_actions(uri: str, version: int) -> list[dict]:
    filesystem, root = resolve(uri)
    path = _commit_path(root, version)
    try:
        with filesystem.open_input_stream(path) as stream:
            text = stream.read().decode("utf-8")
    except FileNotFoundError:
        raise EcomlakeError(
            f"{uri}: commit {version} is no longer in the Delta log (log retention); read the whole table instead"
        ) from None
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def added_files(uri: str, after: int, until: int) -> list[dict]:
    """`add` actions that changed data in commits after..until (inclusive). For an append-only table these are
    exactly the new rows; for a merged table, the rewritten files (a superset of the changed rows)."""
    return [
        action["add"]
        for version in range(after + 1, until + 1)
        for action in commit_actions(uri, version)
        if "add" in action and action["add"].get("dataChange", True)
    ]


def txn_version(uri: str, app_id: str) -> int | None:
    """The last application transaction version of `app_id`: from the newest checkpoint, then later commits."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    commits, checkpoints = _listing(uri)
    found: int | None = None
    start = -1
    if checkpoints:
        start = max(checkpoints)
        filesystem, _ = resolve(uri)
        for path in checkpoints[start]:
            with filesystem.open_input_file(path) as handle:
                schema = pq.read_schema(handle)
                if "txn" not in schema.names:
                    continue
                handle.seek(0)
                txn = pq.read_table(handle, columns=["txn"]).column("txn").combine_chunks()
            if txn.null_count == len(txn):
                continue
            rows = txn.filter(pc.equal(txn.field("appId"), app_id))
            if len(rows):
                found = max(rows.field("version").to_pylist())
    for version in (v for v in commits if v > start):
        for action in commit_actions(uri, version):
            if "txn" in action and action["txn"].get("appId") == app_id:
                found = int(action["txn"]["version"])
    return found


def file_uri(table_uri: str, path: str) -> str:
    """The location Spark reads for an `add` path (URL-encoded, relative to the table or absolute)."""
    if "://" in path:
        return path
    return f"{table_uri.rstrip('/')}/{unquote(path)}"


def read_files(spark: "SparkSession", table_uri: str, schema: "StructType", partition_columns: Iterable[str],
               adds: list[dict]) -> "DataFrame":
    """The rows of the given data files as a DataFrame with exactly `schema`. Partition values come from the
    log (not from directory names), so any value round-trips with its Delta type."""
    from pyspark.sql.types import StructType

    from ecomlake.projection import project, quoted, string_literal

    partition_columns = list(partition_columns)
    if not adds:
        return spark.createDataFrame([], schema)
    data_schema = StructType([f for f in schema.fields if f.name not in partition_columns])
    paths = [file_uri(table_uri, a["path"]) for a in adds]
    df = spark.read.schema(data_schema).parquet(*paths)
    if not partition_columns:
        return df

    def partition_value(column: str) -> str:
        """A literal file name -> value map (no join, and no broadcast job, per read), cast to the column's type."""
        pairs = ", ".join(
            f"{string_literal(posixpath.basename(path))}, {string_literal(a.get('partitionValues', {}).get(column))}"
            for path, a in zip(paths, adds)
        )
        return f"CAST(map({pairs})[_metadata.file_name] AS {schema[column].dataType.simpleString()})"

    return project(df, [
        f"{partition_value(f.name)} AS {quoted(f.name)}" if f.name in partition_columns else quoted(f.name)
        for f in schema.fields
    ])


def schema_from_json(schema_json: str) -> "StructType":
    """A Delta schema string is Spark's StructType JSON."""
    from pyspark.sql.types import StructType

    return StructType.fromJson(json.loads(schema_json))


def table_metadata(uri: str, version: int) -> dict:
    """The `metaData` action in force at `version` (schema, partition columns, configuration)."""
    import pyarrow.parquet as pq

    commits, checkpoints = _listing(uri)
    for v in sorted((c for c in commits if c <= version), reverse=True):
        for action in commit_actions(uri, v):
            if "metaData" in action:
                return action["metaData"]
        if v in checkpoints:
            break
    usable = [c for c in checkpoints if c <= version]
    if usable:
        filesystem, _ = resolve(uri)
        for path in checkpoints[max(usable)]:
            with filesystem.open_input_file(path) as handle:
                rows = pq.read_table(handle, columns=["metaData"]).column("metaData").to_pylist()
            for row in rows:
                if row:
                    return row
    raise EcomlakeError(f"{uri}: no table metadata found at version {version}")
