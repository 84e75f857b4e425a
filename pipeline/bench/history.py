"""A lake that already holds a day of history, written in bulk (not by replaying the stream), for the sustained bench.

A near-real-time pipeline is judged by how it runs after a day, not on a fresh lake. Replaying a day of events through
the stream would take that day; this writes what silver would hold after it straight into the silver tables, in
Arrow, a million orders at a time: every order created and captured in full, in one of the contract's currencies,
spread evenly over the hours before `end`. It records the application transactions silver records, against empty
bronze tables, so the continuous services take up the lake as their own: the first cycle runs in one pass on the
history, and gold's first build is an incremental one on a warehouse that has the day in it.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Callable

from ecomlake.contract import CURRENCIES, FX_TO_USD, PAYMENT_METHODS
from ecomlake.tables import (
    ORDER_EVENTS,
    ORDER_PAYMENTS_ENRICHED,
    ORDERS_CLEAN,
    ORDERS_RAW,
    PAYMENTS_CLEAN,
    PAYMENTS_RAW,
    PUBLISHED_MINUTE,
    QUARANTINE,
)

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa
    from pyspark.sql import SparkSession

    from ecomlake.settings import Settings

CHUNK_ORDERS = 1_000_000
HEX = b"0123456789abcdef"


def uuids(rng: "np.random.Generator", n: int) -> "pa.Array":
    """n random version-4 UUID strings, built as bytes in numpy (a Python loop takes minutes for a day's orders)."""
    import numpy as np
    import pyarrow as pa

    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    lut = np.frombuffer(HEX, dtype=np.uint8)
    digits = np.empty((n, 32), dtype=np.uint8)
    digits[:, 0::2], digits[:, 1::2] = lut[raw >> 4], lut[raw & 0x0F]
    text = np.full((n, 36), ord("-"), dtype=np.uint8)
    for start, (lo, hi) in zip((0, 9, 14, 19, 24), ((0, 8), (8, 12), (12, 16), (16, 20), (20, 32))):
        text[:, start:start + hi - lo] = digits[:, lo:hi]
    offsets = np.arange(0, 36 * (n + 1), 36, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(text.tobytes()))


def arrow_schema(spark: "SparkSession", table) -> "pa.Schema":
    """The table's Arrow schema exactly as silver writes it (from the registry's DDL, through Spark), all nullable."""
    import pyarrow as pa

    schema = spark.createDataFrame([], table.ddl).toArrow().schema
    return pa.schema([field.with_nullable(True) for field in schema])


def _chunk(rng: "np.random.Generator", n: int, first: int, total: int, start: datetime, span_s: float,
           schemas: dict) -> dict[str, "pa.Table"]:
    """Orders first..first+n of `total`, created evenly over span_s seconds from start: each table's rows."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    def ts(seconds: "np.ndarray") -> "pa.Array":
        micros = (start.timestamp() + seconds) * 1e6
        return pa.array(micros.astype("int64"), pa.int64()).cast(pa.timestamp("us", tz="UTC"))

    def minute(seconds: "np.ndarray") -> "pa.Array":
        return ts(np.floor((start.timestamp() + seconds) / 60) * 60 - start.timestamp())

    created_s = (first + np.arange(n)) * (span_s / total)
    paid_s = created_s + rng.uniform(0.5, 5.0, n)
    order_ts, payment_ts = ts(created_s), ts(paid_s)
    cents = rng.integers(500, 50_000, n)
    currency = pa.array(np.array(CURRENCIES)[rng.integers(0, len(CURRENCIES), n)])
    order_id, user_id = uuids(rng, n), pc.binary_join_element_wise("user-", pa.array(rng.integers(0, 10**6, n)).cast(
        pa.string()), "")
    money = schemas[ORDERS_CLEAN.name].field("total_amount").type
    unscaled = np.zeros((n, 2), np.int64)  # a decimal128 is 16 little-endian bytes: the cents, then their sign
    unscaled[:, 0] = cents
    amount = pa.Array.from_buffers(money, n, [None, pa.py_buffer(unscaled.tobytes())])
    item_type = schemas[ORDERS_CLEAN.name].field("items").type
    items = pa.ListArray.from_arrays(
        pa.array(np.arange(n + 1, dtype=np.int32)),
        pa.StructArray.from_arrays([pa.array(["sku-history"] * n), pa.array(np.ones(n, np.int32)), amount],
                                   fields=list(item_type.value_type)))
    offsets = pa.array(first + np.arange(n), pa.int64())

    def lineage(topic: str, at: "pa.Array") -> dict:
        return {"topic": pa.array([topic] * n), "partition": pa.array((first + np.arange(n)) % 3, pa.int32()),
                "offset": offsets, "kafka_timestamp": at, "ingest_ts": ts(paid_s + 1.0),
                "incarnation": pa.array(np.zeros(n, np.int32))}

    order_topic, payment_topic = "orders.history", "payments.history"
    event = {"order_id": order_id, "event_id": uuids(rng, n), "event_type": pa.array(["order_created"] * n),
             "user_id": user_id, "items": items, "currency": currency, "total_amount": amount,
             "status": pa.array(["created"] * n), "order_ts": order_ts, "event_ts": order_ts,
             "event_date": order_ts.cast(pa.date32()), PUBLISHED_MINUTE: minute(created_s),
             **lineage(order_topic, order_ts)}
    payment = {"event_id": uuids(rng, n), "payment_id": uuids(rng, n), "order_id": order_id, "amount": amount,
               "amount_cents": pa.array(cents, pa.int64()), "currency": currency,
               "status": pa.array(["captured"] * n),
               "method": pa.array(np.array(PAYMENT_METHODS)[rng.integers(0, len(PAYMENT_METHODS), n)]),
               "event_ts": payment_ts, "event_date": payment_ts.cast(pa.date32()), PUBLISHED_MINUTE: minute(paid_s),
               **lineage(payment_topic, payment_ts)}
    enriched = {"order_id": order_id, "user_id": user_id, "total_amount": amount, "paid_amount": amount,
                "currency": currency, "status": pa.array(["created"] * n), "fully_paid": pa.array(np.ones(n, bool)),
                "order_ts": order_ts, "last_payment_ts": payment_ts, "first_published_ts": order_ts,
                "last_published_ts": payment_ts,
                "updated_ts": ts(paid_s + 2.0), PUBLISHED_MINUTE: minute(paid_s)}
    columns = {ORDER_EVENTS.name: event, ORDERS_CLEAN.name: event, PAYMENTS_CLEAN.name: payment,
               ORDER_PAYMENTS_ENRICHED.name: enriched}
    return {name: pa.table({c: columns[name][c] for c in schemas[name].names}).cast(schemas[name])
            for name in columns}


def write_history(spark: "SparkSession", settings: "Settings", orders: int, end: datetime, span: timedelta,
                  seed: int = 25, progress: Callable[[str], None] = print) -> dict:
    """Writes `orders` fully paid orders created over `span` before `end` into an empty lake: the silver tables, empty
    bronze tables and the application transactions that say silver has consumed them. Returns what was written and
    the expected gold totals of the history (GMV in USD, paid orders)."""
    import numpy as np
    from deltalake import CommitProperties, Transaction, write_deltalake

    from batch.silver import enrich
    from batch.silver import orders as orders_job
    from batch.silver import payments as payments_job

    tables = (ORDER_EVENTS, ORDERS_CLEAN, PAYMENTS_CLEAN, ORDER_PAYMENTS_ENRICHED)
    schemas = {t.name: arrow_schema(spark, t) for t in (*tables, QUARANTINE, ORDERS_RAW)}
    for bronze in (ORDERS_RAW, PAYMENTS_RAW):
        write_deltalake(bronze.uri(settings), schemas[ORDERS_RAW.name].empty_table(), mode="append")
    rng = np.random.default_rng(seed)
    start, span_s = end - span, span.total_seconds()
    started = time.perf_counter()
    gmv_cents_usd, written = 0, 0
    while written < orders:
        n = min(CHUNK_ORDERS, orders - written)
        chunk = _chunk(rng, n, written, orders, start, span_s, schemas)
        for table in tables:
            write_deltalake(table.uri(settings), chunk[table.name], mode="append",
                            partition_by=list(table.partition_by) or None)
        rows = chunk[ORDER_PAYMENTS_ENRICHED.name]
        for currency in CURRENCIES:
            mask = np.asarray(rows["currency"].to_numpy(zero_copy_only=False) == currency)
            cents = int(chunk[PAYMENTS_CLEAN.name]["amount_cents"].to_numpy()[mask].sum())
            gmv_cents_usd += cents * FX_TO_USD[currency]
        written += n
        progress(f"history: {written:,} of {orders:,} orders written ({time.perf_counter() - started:.0f} s)")

    def consumed(table, *apps: tuple[str, int]) -> None:
        commit = CommitProperties(app_transactions=[Transaction(app, version) for app, version in apps])
        write_deltalake(table.uri(settings), schemas[table.name].empty_table(), mode="append",
                        partition_by=list(table.partition_by) or None, commit_properties=commit)

    consumed(ORDER_EVENTS, (orders_job.APP_ID, 0))
    consumed(ORDERS_CLEAN, (orders_job.APP_ID, 0))
    consumed(PAYMENTS_CLEAN, (payments_job.APP_ID, 0))
    consumed(QUARANTINE, (orders_job.APP_ID, 0), (payments_job.APP_ID, 0))
    from deltalake import DeltaTable

    versions = [DeltaTable(t.uri(settings)).version() for t in (ORDER_EVENTS, PAYMENTS_CLEAN)]
    consumed(ORDER_PAYMENTS_ENRICHED, (enrich.APP_ID, enrich.pack_versions(*versions)))
    return {"history_orders": orders, "history_from": start.isoformat(), "history_to": end.isoformat(),
            "history_write_s": round(time.perf_counter() - started, 1),
            "history_gmv_usd": str(gmv_cents_usd / 100),
            "history_paid_orders": orders, "history_rows_per_table": orders}

