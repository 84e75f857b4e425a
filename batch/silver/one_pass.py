"""Silver's cycle in one pass (the continuous service, on the delta-rs engine): the three silver jobs' work with two
Spark actions instead of eleven.

Why: a Spark action has a fixed cost of tens of milliseconds from Python before it reads a row, and a lookup of a few
thousand keys costs an order of magnitude more as a Spark job than read by delta-rs into Arrow. The jobs run dozens of
Spark jobs for a cycle, almost all of their time fixed cost, and an event waits 1.5 cycles in silver
(docs/benchmarks.md#design-measurements). So Spark does here what needs it: the contract checks of both bronze
increments, with the jobs' own `classify`. The rest of the cycle touches a few thousand rows. The stored rows of the
touched keys are read by delta-rs, and deduplication, the orders' fold, enrichment and the changed-rows comparisons run
as SQL in an in-process DuckDB over Arrow, with the jobs' rules (the docstrings of common, orders and enrich).

The commits are the jobs' commits: the same rows, tables, partitioning and application transactions, in the same
order (orders_clean, order_events, quarantine; payments_clean, quarantine; order_payments_enriched). Where a job's
merge only inserts (order_events, payments_clean, quarantine), the cycle appends the rows it found new instead: a
merge reads the whole table to find the keys, which the cycle has looked up already. The jobs and this
cycle can take over from each other at any commit. The cycle runs only when every target has consumed the same bronze
versions and enrichment is up to date (after a crash between two commits, the jobs, which resume each target on its
own, complete the cycle). A cycle takes at most MAX_INCREMENT_ROWS / 2 bronze rows of each job, whole commits from
the oldest: a backlog is worked off a slice a cycle (the service runs the next at once), and only a single commit over
that (a backfill) goes through Spark. tests/test_silver_one_pass.py runs both on the same bronze and compares every
silver table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timezone
from typing import TYPE_CHECKING, Sequence

from batch.silver import common, enrich, orders, payments
from ecomlake.contract import MONEY_TYPE
from ecomlake.lake import delta_log
from ecomlake.tables import (
    BRONZE_KEYS,
    ORDER_EVENTS,
    ORDER_PAYMENTS_ENRICHED,
    ORDERS_CLEAN,
    ORDERS_RAW,
    PAYMENTS_CLEAN,
    PAYMENTS_RAW,
    PUBLISHED_MINUTE,
    QUARANTINE,
    with_incarnation,
)

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa
    from pyspark.sql import SparkSession

    from ecomlake.lake import LakeEngine
    from ecomlake.settings import Settings

MAX_INCREMENT_ROWS = 100_000
RAW = (*common.RAW_COLUMNS, "reason")


class NotApplicable(Exception):
    """The one-pass cycle does not apply to this state of the lake: the jobs run instead."""


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def names(columns: Sequence[str], prefix: str = "") -> str:
    return ", ".join(prefix + q(c) for c in columns)


ARRIVAL = ", ".join(f"{q(c)} NULLS FIRST" for c in common.ARRIVAL)
LATEST = ", ".join(f"{q(c)} DESC NULLS LAST" for c in ("event_ts", "incarnation", "offset", "partition"))


def run(spark: "SparkSession", settings: "Settings", lake: "LakeEngine") -> dict[str, common.JobStats] | None:
    """One cycle, with each job's figures by name (orders, payments, enrich); None when it does not apply. The
    caller holds silver's lock."""
    import duckdb

    if not lake.reads_rows_by_key:
        return None
    db = duckdb.connect()
    try:
        return _Cycle(spark, settings, lake, db).run()
    except NotApplicable:
        return None
    finally:
        db.close()


@dataclass(frozen=True)
class _Stored:
    """The rows look_up read before the cycle writes, of every order either increment names."""
    events: "pa.Table"
    payments: "pa.Table"
    clean: "pa.Table"


@dataclass(frozen=True)
class _Events:
    """write_events' sets of a job's increment: its `valid` rows (lazy); `new`, the first copy (in arrival order) of
    each valid event_id silver does not hold yet; `conflicts`, the coordinates of valid copies unlike the kept one."""
    valid: "duckdb.DuckDBPyRelation"
    new: "pa.Table"
    conflicts: "pa.Table"


@dataclass(frozen=True)
class _Written:
    """A job's rows as the cycle committed them (None without an increment): `added`, its new order_events or
    payments_clean rows; `clean`, the orders_clean rows it merged (orders)."""
    added: "pa.Table | None" = None
    clean: "pa.Table | None" = None


class _Cycle:
    def __init__(self, spark, settings, lake, db: "duckdb.DuckDBPyConnection"):
        self.spark, self.settings, self.lake, self.db = spark, settings, lake, db
        self.uri = {t.name: t.uri(settings) for t in (ORDERS_CLEAN, ORDER_EVENTS, PAYMENTS_CLEAN,
                                                      ORDER_PAYMENTS_ENRICHED, QUARANTINE)}
        self.now = common.run_timestamp()
        self.schemas: dict = {}
        self.index = None
        db.execute("SET TimeZone = 'UTC'")

    # --- the cycle ---------------------------------------------------------------------------------------------
    def run(self) -> dict[str, common.JobStats]:
        lake, uri = self.lake, self.uri
        bronze = {"orders": ORDERS_RAW.uri(self.settings), "payments": PAYMENTS_RAW.uri(self.settings)}
        if not all(lake.exists(u) for u in (*bronze.values(), *uri.values())):
            raise NotApplicable
        targets = {"orders": (orders, (ORDERS_CLEAN, ORDER_EVENTS, QUARANTINE)),
                   "payments": (payments, (PAYMENTS_CLEAN, QUARANTINE))}
        span = {}
        for job, (module, tables) in targets.items():
            consumed = {common.consumed(lake, uri[t.name], module.APP_ID) for t in tables}
            if len(consumed) != 1 or None in consumed:
                raise NotApplicable
            start = consumed.pop()
            span[job] = (start, _slice_end(bronze[job], start, lake.version(bronze[job]), MAX_INCREMENT_ROWS // 2))
        enriched = enrich.unpack_versions(common.consumed(lake, uri[ORDER_PAYMENTS_ENRICHED.name], enrich.APP_ID))
        for table, done in zip((ORDER_EVENTS, PAYMENTS_CLEAN), enriched):
            # Enrichment must have taken every data change; a compaction since commits none.
            if done is None or delta_log.added_files(uri[table.name], done, lake.version(uri[table.name])):
                raise NotApplicable
        increments = self.increments({job: (targets[job][0], bronze[job], *span[job]) for job in span})
        stored = self.look_up(increments)
        figures, written = {}, {}
        for job in span:
            figures[job], written[job] = self.events_job(job, targets[job][0], increments[job], stored, *span[job])
        figures["enrich"] = self.enrich(enriched, stored, written)
        return figures

    def increments(self, spans: dict) -> dict:
        """Each job's bronze increment, classified by Spark and collected to Arrow (None when there is none). The two
        Spark actions run at once: most of an action's time is the driver planning and waiting, not the 2 cores."""
        from concurrent.futures import ThreadPoolExecutor

        from pyspark import inheritable_thread_target

        def collect(module, uri: str, start: int, end: int) -> "pa.Table | None":
            if start == end:
                return None
            classified = module.classify(with_incarnation(self.lake.changes_since(uri, start, end)),
                                         max_ahead_s=self.settings.event_ts_max_ahead_s)
            return module.increment_rows(classified).toArrow()

        with ThreadPoolExecutor(max_workers=len(spans)) as pool:
            in_thread = inheritable_thread_target(self.spark)(collect)  # the cycle's job group counts its jobs
            futures = {job: pool.submit(in_thread, *span) for job, span in spans.items()}
            return {job: future.result() for job, future in futures.items()}

    def look_up(self, increments: dict) -> _Stored:
        """The stored rows the cycle reads, in three scans before it writes: the order_events, payments_clean and
        orders_clean rows of every order either increment names (and the events by id, for the duplicates).
        Enrichment's inputs are these rows with the cycle's own writes laid over them, so it reads none of those
        tables again (before, the tables were scanned whole seven times a cycle, a large share of a cycle late in a
        long run: docs/benchmarks.md#design-measurements)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        def valid(job: str, column: str) -> "pa.Array":
            rows = increments[job]
            if rows is None:
                return pa.array([], pa.string())
            return pc.unique(rows.filter(pc.is_null(rows["reason"]))[column].cast(pa.string()))

        order_ids = pc.unique(pa.concat_arrays([valid("orders", "order_id"), valid("payments", "order_id")]))
        self.index = self.order_index()
        if self.index is not None:
            held, minutes = self.index.minutes(order_ids)
            return _Stored(*(self.stored(table, {"order_id": held}, minutes)
                             for table in (ORDER_EVENTS, PAYMENTS_CLEAN, ORDERS_CLEAN)))
        return _Stored(self.stored(ORDER_EVENTS, {"event_id": valid("orders", "event_id"), "order_id": order_ids}),
                       self.stored(PAYMENTS_CLEAN, {"event_id": valid("payments", "event_id"), "order_id": order_ids}),
                       self.stored(ORDERS_CLEAN, {"order_id": order_ids}))

    def order_index(self):
        """The lake's order_minutes index, followed up to the tables' latest commits; None on a lake whose tables are
        not laid out by published_minute (they are then read whole)."""
        from batch.silver import order_minutes

        tables = (ORDER_EVENTS, PAYMENTS_CLEAN, ORDERS_CLEAN, ORDER_PAYMENTS_ENRICHED)
        if any(self.lake.partition_columns(self.uri[t.name]) != [PUBLISHED_MINUTE] for t in tables):
            return None
        index = order_minutes.for_lake(self.settings)
        try:
            index.follow(self.lake)
        except order_minutes.CannotFollow:
            return None
        return index

    def events_job(self, job: str, module, increment: "pa.Table | None", stored: _Stored, start: int, end: int
                   ) -> tuple[common.JobStats, _Written]:
        """What run_increment does with the job's writers: the increment's events, the orders' fold, quarantine."""
        stats = common.JobStats(job)
        stats.source_from, stats.source_to = start, end
        if increment is None:
            return stats.done(f"up to date (bronze v{end})"), _Written()
        folds = module is orders
        table = ORDER_EVENTS if folds else PAYMENTS_CLEAN
        events = self.new_and_conflicting(increment, table.columns, stored.events if folds else stored.payments)
        stats.read = increment.num_rows
        rejected = increment.num_rows - increment["reason"].null_count
        clean = (self.upsert(self.fold_changed(events.valid, stored), ORDERS_CLEAN, stored.clean, module.APP_ID, end)
                 if folds else None)
        new = self.append(events.new, table, module.APP_ID, end)
        stats.valid += new.num_rows
        stats.written += (clean if folds else new).num_rows
        stats.duplicates += stats.read - rejected - new.num_rows - events.conflicts.num_rows
        quarantine = self.quarantine_rows(increment, events.conflicts, module.SOURCE_TABLE)
        stats.quarantined += self.append(quarantine, QUARANTINE, module.APP_ID, end).num_rows
        return stats.done(), _Written(added=new, clean=clean)

    def new_and_conflicting(self, increment: "pa.Table", columns: Sequence[str], stored: "pa.Table") -> _Events:
        """write_events' sets of the increment, against the `stored` rows of its table."""
        content = [c for c in columns if c not in common.LINEAGE and c not in ("event_date", PUBLISHED_MINUTE)]
        valid = self.query(f"SELECT {names(columns)} FROM increment WHERE reason IS NULL", increment=increment)
        held = self.query(f"SELECT {names(columns)} FROM stored WHERE event_id IN (SELECT event_id FROM valid)",
                          stored=stored, valid=valid)
        new = self.query(f"""
            SELECT {names(columns)} FROM (
                SELECT *, row_number() OVER (PARTITION BY event_id ORDER BY {ARRIVAL}) AS _copy FROM valid
            ) AS copies
            WHERE _copy = 1 AND NOT EXISTS (SELECT 1 FROM held WHERE held.event_id = copies.event_id)""",
                         valid=valid, held=held).to_arrow_table()
        same_copy = " AND ".join(f"v.{q(c)} = k.{q(c)}" for c in BRONZE_KEYS)
        differs = " OR ".join(f"v.{q(c)} IS DISTINCT FROM k.{q(c)}" for c in content)
        conflicts = self.query(f"""
            SELECT {names(BRONZE_KEYS, 'v.')} FROM valid AS v
            JOIN (SELECT * FROM held UNION ALL SELECT * FROM new) AS k ON v.event_id = k.event_id
            WHERE NOT ({same_copy}) AND ({differs})""", valid=valid, held=held, new=new).to_arrow_table()
        return _Events(valid, new, conflicts)

    def fold_changed(self, valid: "duckdb.DuckDBPyRelation", stored: _Stored) -> "pa.Table":
        """orders.write_clean: the touched orders folded again from their stored events plus the `valid` ones of the
        increment, and only the rows that differ from orders_clean."""
        columns = ORDER_EVENTS.columns
        history = self.query(f"""
            SELECT {names(columns)} FROM (
                SELECT *, row_number() OVER (PARTITION BY event_id ORDER BY {ARRIVAL}) AS _copy FROM (
                    SELECT {names(columns)} FROM stored WHERE order_id IN (SELECT order_id FROM valid)
                    UNION ALL SELECT {names(columns)} FROM valid
                ) AS events
            ) AS copies WHERE _copy = 1""", stored=stored.events, valid=valid).to_arrow_table()
        clean = ORDERS_CLEAN.columns
        derived = {"order_ts": "first_seen.order_ts", "event_date": "CAST(latest.event_ts AS DATE)",
                   PUBLISHED_MINUTE: "date_trunc('minute', latest.kafka_timestamp)"}
        fresh = self.query(f"""
            WITH latest AS (
                SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY order_id ORDER BY {LATEST}) AS _rank
                               FROM history) AS ranked WHERE _rank = 1
            ), first_seen AS (
                SELECT order_id, coalesce(min(event_ts) FILTER (WHERE event_type = 'order_created'), min(event_ts))
                       AS order_ts
                FROM history GROUP BY order_id
            )
            SELECT {', '.join(f'{derived.get(c, "latest." + q(c))} AS {q(c)}' for c in clean)}
            FROM latest JOIN first_seen ON latest.order_id = first_seen.order_id""", history=history).to_arrow_table()
        return self.changed(fresh, stored.clean, clean).to_arrow_table()

    def quarantine_rows(self, increment: "pa.Table", conflicts: "pa.Table", source_table: str) -> "pa.Table":
        """common.write_quarantine's rows: the rejected rows and the conflicting copies, with reason and source."""
        on = " AND ".join(f"c.{q(k)} = i.{q(k)}" for k in BRONZE_KEYS)
        values = {"quarantined_ts": "CAST($now AS TIMESTAMPTZ)", "source_table": "$source"}
        return self.query(f"""
            SELECT {', '.join(f'{values.get(c, q(c))} AS {q(c)}' for c in QUARANTINE.columns)} FROM (
                SELECT {names(RAW)} FROM increment WHERE reason IS NOT NULL
                UNION ALL
                SELECT {names(common.RAW_COLUMNS, 'i.')}, '{common.CONFLICTING_COPY}' FROM increment AS i
                WHERE EXISTS (SELECT 1 FROM conflicts AS c WHERE {on})
            ) AS rejected""", {"now": self.now, "source": source_table},
                          increment=increment, conflicts=conflicts).to_arrow_table()

    def enrich(self, before: tuple, stored: _Stored, written: dict[str, _Written]) -> common.JobStats:
        """enrich.run for the orders whose events or payments this cycle added, from the tables as committed
        (`before`: the order_events and payments_clean versions enrichment had consumed)."""
        import pyarrow as pa

        lake, uri = self.lake, self.uri
        stats = common.JobStats("enrich")
        events_v, payments_v = lake.version(uri[ORDER_EVENTS.name]), lake.version(uri[PAYMENTS_CLEAN.name])
        target = enrich.pack_versions(events_v, payments_v)
        if target == enrich.pack_versions(*before):
            return stats.done(f"up to date (order_events v{events_v}, payments_clean v{payments_v})")
        stats.source_from, stats.source_to = before[0], events_v
        stats.span = (f"orders touched in order_events {enrich._span(before[0], events_v)}, "
                      f"payments_clean {enrich._span(before[1], payments_v)}")
        touched = self.touched(written)
        ids = pa.table({"order_id": touched})
        clean_rows = self.as_committed(ORDERS_CLEAN, stored.clean, written["orders"].clean, ids, replaces=True)
        event_rows = self.as_committed(ORDER_EVENTS, stored.events, written["orders"].added, ids)
        payment_rows = self.as_committed(PAYMENTS_CLEAN, stored.payments, written["payments"].added, ids)
        held, minutes = (touched, None) if self.index is None else self.index.minutes(touched)
        enriched = self.stored(ORDER_PAYMENTS_ENRICHED, {"order_id": held}, minutes)
        fresh = self.query(f"""
            WITH o AS (
                SELECT order_id, user_id, total_amount, currency, status, order_ts FROM clean
            ), published AS (
                SELECT order_id, min(kafka_timestamp) AS _order_first_published,
                       max(kafka_timestamp) AS _order_published
                FROM events GROUP BY order_id
            ), p AS (
                SELECT payments.*, o.currency AS _order_currency FROM payments JOIN o USING (order_id)
            ), totals AS (
                SELECT order_id,
                       sum(CASE WHEN currency = _order_currency AND status = 'captured' THEN amount
                                WHEN currency = _order_currency AND status = 'refunded' THEN -amount
                                ELSE CAST(0 AS {MONEY_TYPE}) END) AS _paid,
                       max(event_ts) AS last_payment_ts, min(kafka_timestamp) AS _payments_first_published,
                       max(kafka_timestamp) AS _payments_published
                FROM p GROUP BY order_id
            ), joined AS (
                SELECT o.*, _order_first_published, _order_published,
                       TRY_CAST(coalesce(_paid, 0) AS {MONEY_TYPE}) AS paid_amount,
                       last_payment_ts, _payments_first_published, _payments_published
                FROM o LEFT JOIN published USING (order_id) LEFT JOIN totals USING (order_id)
            )
            SELECT {names(enrich.VALUE_COLUMNS[:6])},
                   status != 'cancelled' AND paid_amount >= total_amount AS fully_paid,
                   order_ts, last_payment_ts, least(_order_first_published, _payments_first_published)
                   AS first_published_ts, greatest(_order_published, _payments_published) AS last_published_ts,
                   date_trunc('minute', greatest(_order_published, _payments_published)) AS {PUBLISHED_MINUTE}
            FROM joined""", clean=clean_rows, events=event_rows, payments=payment_rows).to_arrow_table()
        rows = self.query("SELECT *, CAST($now AS TIMESTAMPTZ) AS updated_ts FROM changed", {"now": self.now},
                          changed=self.changed(fresh, enriched, enrich.VALUE_COLUMNS)).to_arrow_table()
        stats.written = stats.valid = self.upsert(rows, ORDER_PAYMENTS_ENRICHED, enriched, enrich.APP_ID,
                                                  target).num_rows
        stats.read = len(touched)
        return stats.done()

    def touched(self, written: dict[str, _Written]) -> "pa.Array":
        """The orders whose events or payments the cycle added."""
        added = {job: w.added for job, w in written.items() if w.added is not None}
        parts = " UNION ALL ".join(f"SELECT order_id FROM {job}" for job in added) or "SELECT NULL::VARCHAR AS order_id"
        rows = self.query(f"SELECT DISTINCT order_id FROM ({parts}) AS t WHERE order_id IS NOT NULL", **added)
        return rows.to_arrow_table()["order_id"].combine_chunks()

    # --- DuckDB and the lake -----------------------------------------------------------------------------------
    def query(self, sql: str, params: dict | None = None, **inputs) -> "duckdb.DuckDBPyRelation":
        """`sql` over `inputs` (Arrow tables, relations), each read under its keyword: DuckDB's replacement scans look
        a query's table names up among the Python names of the frame that runs it, here a frame of `inputs` alone.
        Lazy, as a view: the rows are computed where the result is read, at each read."""
        return eval("_duckdb_sql(_sql, params=_params)", {},
                    {**inputs, "_duckdb_sql": self.db.sql, "_sql": sql, "_params": params})

    def stored(self, table, keys: dict, minutes: "pa.Array | None" = None) -> "pa.Table":
        """The stored rows of `table` matching `keys` (incarnation as the jobs read it: NULL is 0), read from the
        `minutes` partitions only when given."""
        import pyarrow.compute as pc

        partitions = None if minutes is None else (PUBLISHED_MINUTE, minutes)
        rows = self.lake.rows_matching(self.uri[table.name], keys, partitions=partitions)
        if set(table.columns) - set(rows.column_names):
            raise NotApplicable
        rows = rows.set_column(rows.column_names.index("incarnation"), "incarnation",
                               pc.fill_null(rows["incarnation"], 0)) if "incarnation" in rows.column_names else rows
        self.schemas[table.name] = rows.schema
        return rows

    def as_committed(self, table, stored: "pa.Table", written: "pa.Table | None", touched: "pa.Table",
                     replaces: bool = False) -> "duckdb.DuckDBPyRelation":
        """`table`'s rows of the `touched` orders as the cycle left them (lazy): the rows `stored` held before the
        cycle (all rows of these orders: look_up read them by order id) and those it `written` since, which replace
        the stored row of their order (a merge) or add to them (an append of new events)."""
        columns = names(table.columns)
        sql = f"SELECT {columns} FROM stored AS s WHERE order_id IN (SELECT order_id FROM touched)"
        if written is not None:
            if replaces:
                sql += " AND NOT EXISTS (SELECT 1 FROM written AS w WHERE w.order_id = s.order_id)"
            sql += f" UNION ALL SELECT {columns} FROM written WHERE order_id IN (SELECT order_id FROM touched)"
        return self.query(sql, stored=stored, written=written, touched=touched)

    def changed(self, fresh: "pa.Table", stored: "pa.Table", columns: Sequence[str]) -> "duckdb.DuckDBPyRelation":
        """common.changed_only: rows of `fresh` that are new or differ (NULL-safe) from their `stored` row."""
        same = " AND ".join(f"f.{q(c)} IS NOT DISTINCT FROM s.{q(c)}" for c in columns if c != "order_id")
        return self.query(f"SELECT {names(columns, 'f.')} FROM fresh AS f"
                          f" LEFT JOIN (SELECT *, true AS _old_exists FROM stored) AS s ON f.order_id = s.order_id"
                          f" WHERE s._old_exists IS NULL OR NOT ({same})", fresh=fresh, stored=stored)

    def merge(self, rows: "pa.Table", table, app_id: str, txn_version: int, target_filter: str | None = None
              ) -> "pa.Table":
        """The job's merge of `rows` into `table` on its keys; returns the rows merged, as committed."""
        rows = self.typed(rows, table)
        self.lake.merge(rows, self.uri[table.name], list(table.keys), partition_by=list(table.partition_by),
                        app_id=app_id, txn_version=txn_version, target_filter=target_filter)
        return rows

    def upsert(self, rows: "pa.Table", table, stored: "pa.Table", app_id: str, txn_version: int) -> "pa.Table":
        """The job's merge of `rows` into `table`, told which partitions the `stored` rows of their orders (looked up
        by the cycle) are in, so that it reads and rewrites only those; an append when there are none. On a lake not
        laid out by published_minute, the whole table's merge."""
        if self.index is None:
            return self.merge(rows, table, app_id, txn_version)
        if not len(rows):
            return self.merge(rows, table, app_id, txn_version, target_filter="false")
        minutes = [m for (m,) in self.query(
            f"SELECT DISTINCT {q(PUBLISHED_MINUTE)} FROM stored "
            f"WHERE order_id IN (SELECT order_id FROM upserted) ORDER BY 1", stored=stored, upserted=rows).fetchall()]
        if not minutes:
            return self.append(rows, table, app_id, txn_version)
        listed = ", ".join(f"TIMESTAMP '{m.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S}'" for m in minutes)
        return self.merge(rows, table, app_id, txn_version, target_filter=f"target.{PUBLISHED_MINUTE} IN ({listed})")

    def append(self, rows: "pa.Table", table, app_id: str, txn_version: int) -> "pa.Table":
        """The job's insert-only merge as an append: `rows` hold no key the table holds (the cycle looked them up
        at the version it writes on, under silver's lock), so the merge's scan of the whole table is not needed."""
        rows = self.typed(rows, table)
        self.lake.append_batch(rows, self.uri[table.name], app_id, txn_version, partition_by=list(table.partition_by))
        return rows

    def typed(self, rows: "pa.Table", table) -> "pa.Table":
        """`rows` in the table's column order and Arrow types."""
        import pyarrow as pa

        if table.name not in self.schemas:
            self.schemas[table.name] = self.lake.rows_matching(self.uri[table.name], {}).schema
        schema = self.schemas[table.name]
        return rows.select(table.columns).cast(pa.schema([schema.field(c).with_nullable(True) for c in table.columns]))


def _slice_end(uri: str, start: int, end: int, budget: int) -> int:
    """The last bronze commit after `start` (up to `end`) such that the commits up to it add at most `budget` rows,
    from their file statistics: a backlog (after a restart, a slow cycle) is taken a slice a cycle instead of falling
    to the jobs, whose merges read whole tables. NotApplicable when the first commit alone is over the budget or has
    no statistics (a backfill: the jobs take it)."""
    taken = 0
    for version in range(start + 1, end + 1):
        rows = 0
        for add in delta_log.added_files(uri, version - 1, version):
            stats = json.loads(add.get("stats") or "{}")
            if "numRecords" not in stats:
                rows = budget + 1
                break
            rows += stats["numRecords"]
        if taken + rows > budget:
            if version == start + 1:
                raise NotApplicable
            return version - 1
        taken += rows
    return end
