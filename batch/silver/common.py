"""What the silver jobs share: JSON contract checks, quarantine rows, dedupe, consumed-version state, summaries.

State: every silver target records the version of its source that it has consumed as a Delta application
transaction (app id `silver:<source table>`) in the same commit as its data. Data and state therefore commit
atomically, each target resumes on its own after a crash, and a run that finds nothing new commits nothing.

Reason codes name top-level contract fields; the first failing check wins, in this order: `malformed_json` (not
valid UTF-8 JSON, duplicate keys, or not an object); `missing_field:<name>` (absent or null), fields in contract
order; `wrong_type:<name>` (another JSON type; for `items` also an element that is not an object with a string
sku, an integer qty and a numeric unit_price); `invalid_value:<name>` (unknown enum value or currency, negative
amount or one that does not fit the silver type, empty items or an item with qty <= 0 or unit_price < 0,
unparseable event_ts); `future_event_ts` (event_ts more than EVENT_TS_MAX_AHEAD_SECONDS after the record's Kafka
timestamp). Booleans are not numbers; integers must be JSON integers.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from ecomlake import tables
from ecomlake.projection import project, quoted, string_literal, timestamp_literal
from ecomlake.tables import ddl_columns as columns
from ecomlake.tables import with_incarnation

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from ecomlake.lake import LakeEngine
    from ecomlake.settings import Settings

ORDERS_CLEAN_DDL = tables.ORDERS_CLEAN.ddl
ORDER_EVENTS_DDL = tables.ORDER_EVENTS.ddl
PAYMENTS_CLEAN_DDL = tables.PAYMENTS_CLEAN.ddl
ENRICHED_DDL = tables.ORDER_PAYMENTS_ENRICHED.ddl
PUBLISHED_MINUTE_SQL = "date_trunc('minute', kafka_timestamp)"  # of a row with lineage; Spark's and DuckDB's SQL
QUARANTINE_DDL = tables.QUARANTINE.ddl
LINEAGE = ("topic", "partition", "offset", "kafka_timestamp", "ingest_ts", "incarnation")
RAW_COLUMNS = ("topic", "incarnation", "partition", "offset", "raw_key", "raw_value", "raw_value_b64", "kafka_timestamp")
QUARANTINE_KEYS = tables.QUARANTINE.keys
# Ingestion order: which copy of an event_id arrived first (bronze batch, then publication, then coordinates).
ARRIVAL = ("ingest_ts", "incarnation", "kafka_timestamp", "partition", "offset")
CONFLICTING_COPY = "conflicting_duplicate:event_id"

INTEGER_TYPES = ("TINYINT", "SMALLINT", "INT", "BIGINT")


def empty(spark: "SparkSession", ddl: str) -> DataFrame:
    return spark.createDataFrame([], ddl)


_COLUMNS_CHECKED: set[str] = set()


def add_new_columns(spark: "SparkSession", lake: "LakeEngine", settings: "Settings") -> list[str]:
    """Tables written before a column joined their DDL (order_payments_enriched's first_published_ts) get it, as
    NULL, through an empty append with the new schema: gold reads the column whether or not a cycle has written
    rows since, and the jobs and the one-pass cycle read it as any other. Both entry points under silver's lock
    (jobs.run_silver, run_standalone) call it first. Once per table and process; returns the tables it extended."""
    extended = []
    for table in (tables.ORDER_PAYMENTS_ENRICHED,):
        uri = table.uri(settings)
        if uri in _COLUMNS_CHECKED or not lake.exists(uri):
            continue
        if set(table.columns) - set(lake.read(uri).columns):
            lake.append_batch(empty(spark, table.ddl), uri, app_id(f"{table.qualified}+new-columns"), 1,
                              partition_by=list(table.partition_by))
            extended.append(table.name)
        _COLUMNS_CHECKED.add(uri)
    return extended


def app_id(source_table: str) -> str:
    return f"silver:{source_table}"


# --- JSON contract checks ---------------------------------------------------------------------------------------
def with_json(bronze: DataFrame, payload_ddl: str) -> DataFrame:
    """Adds `_json` (the payload as a VARIANT, NULL when it is not UTF-8 JSON: the authority on presence and JSON
    types) and `_doc` (the payload parsed with the contract schema: the typed values)."""
    return bronze.withColumn(
        "_json", F.when(F.col("raw_value_b64").isNull(), F.expr("try_parse_json(raw_value)"))
    ).withColumn("_doc", F.from_json("raw_value", payload_ddl))


def _node(path: str, var: str = "_json") -> str:
    return f"variant_get({var}, '{path}', 'variant')"


def _kind_sql(type_sql: str, kind: str) -> str:
    ints = ", ".join(f"'{t}'" for t in INTEGER_TYPES)
    return {
        "string": f"{type_sql} = 'STRING'",
        "integer": f"({type_sql} IN ({ints}) OR {type_sql} RLIKE '^DECIMAL\\\\([0-9]+,0\\\\)$')",
        "number": f"({type_sql} IN ({ints}, 'FLOAT', 'DOUBLE') OR {type_sql} LIKE 'DECIMAL(%')",
        "array": f"{type_sql} LIKE 'ARRAY<%'",
        "object": f"{type_sql} LIKE 'OBJECT<%'",
    }[kind]


def _missing_sql(node: str) -> str:
    return f"({node} IS NULL OR is_variant_null({node}))"


def malformed() -> tuple[Column, str]:
    return F.expr("_json IS NULL OR NOT schema_of_variant(_json) LIKE 'OBJECT<%'"), "malformed_json"


def missing(name: str) -> tuple[Column, str]:
    return F.expr(_missing_sql(_node(f"$.{name}"))), f"missing_field:{name}"


def wrong_type(name: str, kind: str, element_kinds: dict[str, str] | None = None) -> tuple[Column, str]:
    """`name` is present with another JSON type; for an array with `element_kinds`, also when an element is not
    an object whose fields have those kinds."""
    node = _node(f"$.{name}")
    condition = f"NOT {_kind_sql(f'schema_of_variant({node})', kind)}"
    if element_kinds:
        element_ok = [_kind_sql("schema_of_variant(x)", "object")] + [
            f"NOT {_missing_sql(_node(f'$.{field}', 'x'))} AND "
            + _kind_sql("schema_of_variant(" + _node(f"$.{field}", "x") + ")", field_kind)
            for field, field_kind in element_kinds.items()
        ]
        elements = f"try_variant_get(_json, '$.{name}', 'array<variant>')"
        condition = f"{condition} OR exists({elements}, x -> NOT ({' AND '.join(f'({c})' for c in element_ok)}))"
    return F.expr(condition), f"wrong_type:{name}"


def invalid(condition: Column | str, name: str) -> tuple[Column, str]:
    return (F.expr(condition) if isinstance(condition, str) else condition), f"invalid_value:{name}"


def not_in(column: Column, allowed: Iterable[str]) -> Column:
    return ~column.isin(list(allowed))


def future_event_ts(max_ahead_s: int) -> tuple[Column, str]:
    """An event_ts more than `max_ahead_s` after the broker's timestamp of the record: a producer clock (or a
    payload) that cannot be right; such a row would open a gold minute in the future."""
    return F.col("_event_ts") > F.col("kafka_timestamp") + F.expr(f"INTERVAL {int(max_ahead_s)} SECONDS"), "future_event_ts"


def first_reason(rules: Sequence[tuple[Column, str]]) -> Column:
    """The reason of the first rule that holds (a CASE chain, so later checks only see rows that passed earlier
    ones), or NULL for a valid row."""
    expr = None
    for condition, reason in rules:
        expr = F.when(condition, F.lit(reason)) if expr is None else expr.when(condition, F.lit(reason))
    return expr


# --- row handling -----------------------------------------------------------------------------------------------
def quarantine_rows(rejected: DataFrame, source_table: str, quarantined_ts: datetime) -> DataFrame:
    """Rejected bronze rows (with `reason`) as silver.quarantine rows: raw payload, coordinates, reason."""
    values = {
        **{c: quoted(c) for c in (*RAW_COLUMNS, "reason")},
        "quarantined_ts": f"{timestamp_literal(quarantined_ts)} AS quarantined_ts",
        "source_table": f"{string_literal(source_table)} AS source_table",
    }
    return project(rejected, [values[c] for c in columns(QUARANTINE_DDL)])


def increment_rows(classified: DataFrame, table_columns: Sequence[str], typed: dict[str, str]) -> DataFrame:
    """A classified increment as one row per bronze row: the event table's columns, typed only where the row is valid
    (an invalid row's values may not even cast), then the raw columns and the reason."""
    names = [*table_columns, *(c for c in (*RAW_COLUMNS, "reason") if c not in table_columns)]
    return project(classified, [
        f"CASE WHEN reason IS NULL THEN {typed[c]} END AS {quoted(c)}" if c in typed else quoted(c) for c in names
    ])


def dedupe(events: DataFrame) -> DataFrame:
    """Copies share an event_id: keep the first to arrive (ARRIVAL), whatever partition it came through."""
    first = Window.partitionBy("event_id").orderBy(*ARRIVAL)
    return events.withColumn("_copy", F.row_number().over(first)).filter("_copy = 1").drop("_copy")


def content(events: DataFrame) -> Column:
    """A digest of an event's own fields, not of where or when it arrived: equal for a redelivered copy."""
    fields = sorted(c for c in events.columns if c not in LINEAGE and c not in ("event_date", tables.PUBLISHED_MINUTE))
    return F.expr(f"sha2(to_json(struct({', '.join(map(quoted, fields))})), 256)")


def conflicting(events: DataFrame, kept: DataFrame) -> DataFrame:
    """The copies in `events` whose content differs from the copy silver keeps for their event_id (`kept`)."""
    winner = kept.select(
        "event_id", content(kept).alias("_kept_content"),
        *[F.col(c).alias(f"_kept_{c}") for c in QUARANTINE_KEYS],
    )
    joined = events.withColumn("_content", content(events)).join(winner, "event_id")
    same_copy = " AND ".join(f"{quoted(c)} = {quoted('_kept_' + c)}" for c in QUARANTINE_KEYS)
    return project(joined.filter(f"NOT ({same_copy}) AND _content != _kept_content"), map(quoted, events.columns))


def stored_events(lake: "LakeEngine", uri: str, events: DataFrame, version: int | None = None) -> DataFrame | None:
    """The rows of the event table at `uri` (as of `version`, default the latest) for the event ids in `events`
    (None before the table exists)."""
    if not lake.exists(uri):
        return None
    stored = with_incarnation(lake.read(uri, version))
    return stored.join(F.broadcast(events.select("event_id").distinct()), "event_id", "left_semi")


def changed_only(fresh: DataFrame, existing: DataFrame, keys: Sequence[str], compared: Sequence[str]) -> DataFrame:
    """Rows of `fresh` that are new or differ from `existing` (same keys) in any of `compared` (NULL-safe)."""
    values = [c for c in compared if c not in keys]
    old = project(existing, [*map(quoted, keys), *(f"{quoted(c)} AS {quoted('_old_' + c)}" for c in values),
                             "true AS _old_exists"])
    joined = fresh.join(old, list(keys), "left")
    same = " AND ".join(f"{quoted(c)} <=> {quoted('_old_' + c)}" for c in values) or "true"
    return project(joined.filter(f"_old_exists IS NULL OR NOT ({same})"), map(quoted, fresh.columns))


@dataclass
class Increment:
    """The classified source rows one target has not consumed, up to source version `end`."""

    classified: DataFrame
    end: int
    read: int
    rejected: int
    # Coordinates of the conflicting copies, found by the event table's writer (write_events) and reused by the
    # quarantine's writer; None when the event table had taken this increment in an earlier, interrupted run.
    conflict_keys: DataFrame | None = None
    derived: dict = field(default_factory=dict, repr=False)

    def once(self, build: Callable[[DataFrame], object]):
        """`build(classified)`, built once for all the increment's writers: Spark analyses the whole classified plan
        again for every DataFrame built on it."""
        if build not in self.derived:
            self.derived[build] = build(self.classified)
        return self.derived[build]


def write_events(lake: "LakeEngine", batch: Increment, events: DataFrame, uri: str, app: str,
                 stats: "JobStats") -> int:
    """Insert the increment's events that silver does not hold yet into an event table (one row per event_id, the
    first copy to arrive), recording the source version in that commit. A stored event is never replaced: a
    redelivered copy is a duplicate, a copy with other content goes to quarantine (conflicting_rows). Counts events
    new to silver (`valid`) and redeliveries removed (`duplicates`); returns the rows written."""
    events = events.persist()
    # `stored` is what the table held before this merge, pinned to that version, so `new` means the same before and
    # after the commit (on delta-spark, a `stored` that read the latest version found no new event after the merge).
    stored = stored_events(lake, uri, events, lake.version(uri))
    stored = (stored if stored is not None else events.limit(0)).persist()
    new = dedupe(events).join(stored.select("event_id"), "event_id", "left_anti")
    try:
        written = lake.merge_counted(
            new, uri, ["event_id"], partition_by=[tables.PUBLISHED_MINUTE], when_matched_update="false", app_id=app,
            txn_version=batch.end,
        )
        batch.conflict_keys = conflicting(events, stored.unionByName(new)).select(*QUARANTINE_KEYS).persist()
        conflicts = batch.conflict_keys.count()
        stats.valid += written
        stats.duplicates += batch.read - batch.rejected - written - conflicts
        return written
    finally:
        for df in (stored, events):
            df.unpersist()


def conflicting_rows(lake: "LakeEngine", batch: Increment, events: DataFrame, events_uri: str) -> DataFrame:
    """Bronze rows of the increment whose event conflicts with the copy the event table keeps (RAW_COLUMNS and
    reason, as `split` gives rejected rows). Run after the event table took the increment."""
    if batch.conflict_keys is not None:
        copies = batch.conflict_keys
    else:
        kept = stored_events(lake, events_uri, events)
        if kept is None:
            return batch.classified.limit(0).select(*RAW_COLUMNS, F.lit(CONFLICTING_COPY).alias("reason"))
        copies = conflicting(events, kept).select(*QUARANTINE_KEYS)
    return batch.classified.join(copies, list(QUARANTINE_KEYS), "left_semi").select(
        *RAW_COLUMNS, F.lit(CONFLICTING_COPY).alias("reason")
    )


def write_quarantine(lake: "LakeEngine", batch: Increment, rejected: DataFrame, uri: str, source_table: str,
                     stats: "JobStats", conflicts: DataFrame | None = None) -> None:
    """Insert-only on the bronze coordinates; the consumed source version commits with the rows. Counts the rows
    quarantined: the rejected ones and the conflicting copies."""
    if conflicts is not None:
        rejected = rejected.unionByName(conflicts)
    rows = quarantine_rows(rejected, source_table, run_timestamp())
    stats.quarantined += lake.merge_counted(
        rows, uri, list(QUARANTINE_KEYS), when_matched_update="false", app_id=app_id(source_table),
        txn_version=batch.end,
    )


def run_increment(
    lake: "LakeEngine",
    stats: "JobStats",
    source_uri: str,
    app: str,
    classify: Callable[[DataFrame], DataFrame],
    writers: dict[str, Callable[[Increment], None]],
) -> "JobStats":
    """Feed each target (uri -> writer) the source rows it has not consumed.

    The source version is pinned at the start. After a crash the targets may have consumed different versions,
    so each reads from its own position; normally they share one read.
    """
    end = lake.version(source_uri)
    if end is None:
        return stats.done("no bronze table yet")
    stats.source_to = end
    pending = {uri: consumed(lake, uri, app) for uri in writers}
    pending = {uri: start for uri, start in pending.items() if start is None or start < end}
    if not pending:
        stats.source_from = end
        return stats.done(f"up to date (bronze v{end})")
    for start in sorted(set(pending.values()), key=lambda v: -1 if v is None else v):
        stats.source_from = start if stats.source_from is None else min(stats.source_from, start)
        classified = classify(with_incarnation(lake.changes_since(source_uri, start, end))).persist()
        try:
            read, rejected = classified.agg(F.count(F.lit(1)), F.count("reason")).first()
            stats.read += read
            batch = Increment(classified, end, read, rejected)
            accounted = stats.accounted()
            try:
                for uri, writer in writers.items():
                    if uri in pending and pending[uri] == start:
                        writer(batch)
            finally:
                if batch.conflict_keys is not None:
                    batch.conflict_keys.unpersist()
            if any(pending.get(uri) != start for uri in writers):
                # An interrupted run left some targets ahead: the rows they took are not counted again.
                stats.resumed += read - (stats.accounted() - accounted)
        finally:
            classified.unpersist()
    return stats.done()


# --- state and summaries ----------------------------------------------------------------------------------------
def consumed(lake: "LakeEngine", target_uri: str, app: str) -> int | None:
    """The source version `target_uri` has consumed for `app` (None: nothing yet)."""
    return lake.txn_version(target_uri, app) if lake.exists(target_uri) else None


def run_timestamp() -> datetime:
    """One timestamp per run (quarantined_ts, updated_ts), microsecond precision like Spark's."""
    return datetime.now(timezone.utc)


@dataclass
class JobStats:
    job: str
    source_from: int | None = None
    source_to: int | None = None
    span: str = ""
    read: int = 0
    valid: int = 0
    duplicates: int = 0
    quarantined: int = 0
    resumed: int = 0
    written: int = 0
    seconds: float = 0.0
    note: str = ""
    started: float = field(default_factory=time.monotonic, repr=False)

    def accounted(self) -> int:
        """Rows read whose outcome is counted: read = valid + duplicates + quarantined + resumed."""
        return self.valid + self.duplicates + self.quarantined

    def done(self, note: str = "") -> "JobStats":
        self.seconds = round(time.monotonic() - self.started, 3)
        if note:
            self.note = note
        return self

    def as_dict(self) -> dict:
        data = asdict(self)
        data.pop("started")
        return data

    def summary(self) -> str:
        if self.note:
            return f"silver {self.job}: {self.note} ({self.seconds:.1f} s)"
        if self.span:
            return f"silver {self.job}: {self.read} {self.span}, wrote {self.written} rows in {self.seconds:.1f} s"
        first = 0 if self.source_from is None else self.source_from + 1
        resumed = f", {self.resumed} taken by an interrupted run" if self.resumed else ""
        return (
            f"silver {self.job}: read {self.read} rows (bronze v{first}..v{self.source_to}): {self.valid} new, "
            f"{self.duplicates} duplicates removed, {self.quarantined} quarantined{resumed}; wrote {self.written} "
            f"rows in {self.seconds:.1f} s"
        )


def run_standalone(*jobs: Callable[["SparkSession", "Settings", "LakeEngine"], JobStats]) -> int:
    """A `main()` for `ecomlake silver` and each job's spark-submit entry: settings, session, the jobs in order."""
    from ecomlake.lake import get_engine
    from ecomlake.locks import single_writer
    from ecomlake.settings import Settings
    from ecomlake.spark import get_spark

    settings = Settings.from_env()
    with single_writer(settings.lakehouse_uri, "silver"):
        spark = get_spark(settings, app_name="ecomlake-silver")
        lake = get_engine(spark, settings)
        add_new_columns(spark, lake, settings)
        for job in jobs:
            print(job(spark, settings, lake).summary(), flush=True)
    return 0

