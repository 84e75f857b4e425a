"""Silver Delta tables written directly with deltalake + pyarrow, in exactly the silver schemas of ecomlake/tables.py,
so gold (dbt) can be built and tested without running bronze and Spark.

`SilverLake.write(orders, payments)` derives all four tables from a list of orders and payments the way the
silver jobs define them (paid_amount, fully_paid, order_ts, ...). Like silver, a rewrite keeps an enriched row's
updated_ts unless the row changed, so two writes behave like two incremental silver runs (a late payment moves
only its order's updated_ts). The gold benchmark and the gold tests build on it (tests/silver_fixtures.py adds
the expected gold figures).
"""

from __future__ import annotations

import dataclasses
import random
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Iterable, Sequence

import pyarrow as pa

UTC = timezone.utc
TS = pa.timestamp("us", tz="UTC")
MONEY = pa.decimal128(18, 2)
ITEM = pa.struct([("sku", pa.string()), ("qty", pa.int32()), ("unit_price", MONEY)])

ORDERS_CLEAN = pa.schema([
    ("order_id", pa.string()), ("event_id", pa.string()), ("event_type", pa.string()), ("user_id", pa.string()),
    ("items", pa.list_(ITEM)), ("currency", pa.string()), ("total_amount", MONEY), ("status", pa.string()),
    ("order_ts", TS), ("event_ts", TS), ("event_date", pa.date32()), ("topic", pa.string()),
    ("partition", pa.int32()), ("offset", pa.int64()), ("kafka_timestamp", TS), ("ingest_ts", TS),
    ("incarnation", pa.int32()),
])
PAYMENTS_CLEAN = pa.schema([
    ("event_id", pa.string()), ("payment_id", pa.string()), ("order_id", pa.string()), ("amount", MONEY),
    ("amount_cents", pa.int64()), ("currency", pa.string()), ("status", pa.string()), ("method", pa.string()),
    ("event_ts", TS), ("event_date", pa.date32()), ("topic", pa.string()), ("partition", pa.int32()),
    ("offset", pa.int64()), ("kafka_timestamp", TS), ("ingest_ts", TS), ("incarnation", pa.int32()),
])
ORDER_PAYMENTS_ENRICHED = pa.schema([
    ("order_id", pa.string()), ("user_id", pa.string()), ("total_amount", MONEY), ("paid_amount", MONEY),
    ("currency", pa.string()), ("status", pa.string()), ("fully_paid", pa.bool_()), ("order_ts", TS),
    ("last_payment_ts", TS), ("first_published_ts", TS), ("last_published_ts", TS), ("updated_ts", TS),
])
QUARANTINE = pa.schema([
    ("topic", pa.string()), ("partition", pa.int32()), ("offset", pa.int64()), ("raw_key", pa.string()),
    ("raw_value", pa.string()), ("raw_value_b64", pa.string()), ("kafka_timestamp", TS), ("reason", pa.string()),
    ("quarantined_ts", TS), ("source_table", pa.string()), ("incarnation", pa.int32()),
])
SCHEMAS = {
    "orders_clean": ORDERS_CLEAN,
    "payments_clean": PAYMENTS_CLEAN,
    "order_payments_enriched": ORDER_PAYMENTS_ENRICHED,
    "quarantine": QUARANTINE,
}
PARTITIONED = {"orders_clean": ["event_date"], "payments_clean": ["event_date"]}
CENT = Decimal("0.01")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@dataclass(frozen=True)
class Order:
    order_id: str
    order_ts: datetime
    currency: str = "USD"
    total_amount: Decimal = Decimal("10.00")
    status: str = "created"
    user_id: str = "user-1"


@dataclass(frozen=True)
class Payment:
    order_id: str
    amount: Decimal
    event_ts: datetime
    status: str = "captured"
    currency: str | None = None  # None: the order's currency
    method: str = "card"
    event_id: str = dataclasses.field(default_factory=lambda: str(uuid.uuid4()))


def paid_amount(order: Order, payments: Iterable[Payment]) -> Decimal:
    """Captured minus refunded, over payments in the order's currency."""
    total = Decimal("0.00")
    for p in payments:
        if (p.currency or order.currency) != order.currency:
            continue
        if p.status == "captured":
            total += p.amount
        elif p.status == "refunded":
            total -= p.amount
    return total


def fully_paid(order: Order, payments: Iterable[Payment]) -> bool:
    return order.status != "cancelled" and paid_amount(order, payments) >= order.total_amount


def minute_of(ts: datetime) -> datetime:
    return ts.astimezone(UTC).replace(second=0, microsecond=0)


def payments_by_order(payments: Iterable[Payment]) -> dict[str, list[Payment]]:
    by_order: dict[str, list[Payment]] = defaultdict(list)
    for p in payments:
        by_order[p.order_id].append(p)
    return by_order


class SilverLake:
    """Writes the four silver tables under `<lakehouse_uri>/silver/` from orders and payments."""

    def __init__(self, lakehouse_uri: str, topic_orders: str = "orders.events", topic_payments: str = "payments.events"):
        self.lakehouse_uri = lakehouse_uri
        self.topics = (topic_orders, topic_payments)

    def uri(self, table: str) -> str:
        return f"{self.lakehouse_uri}/silver/{table}"

    def write(self, orders: Sequence[Order], payments: Sequence[Payment] = (), quarantine: Sequence[dict] = (),
              now: datetime | None = None) -> dict[str, pa.Table]:
        """Overwrite the silver tables with this state; ingest_ts = `now` (default: the current time)."""
        from deltalake import write_deltalake

        now = now or datetime.now(UTC)
        tables = {
            "orders_clean": self._orders(orders, now),
            "payments_clean": self._payments(orders, payments, now),
            "order_payments_enriched": self._enriched(orders, payments, now),
            "quarantine": pa.Table.from_pylist([{**q, "quarantined_ts": q.get("quarantined_ts", now)} for q in quarantine],
                                               schema=QUARANTINE),
        }
        for name, table in tables.items():
            write_deltalake(self.uri(name), table, mode="overwrite", partition_by=PARTITIONED.get(name))
        return tables

    def _orders(self, orders: Sequence[Order], now: datetime) -> pa.Table:
        rows = []
        for offset, o in enumerate(orders):
            rows.append({
                "order_id": o.order_id, "event_id": f"ev-{o.order_id}",
                "event_type": "order_cancelled" if o.status == "cancelled" else "order_created",
                "user_id": o.user_id,
                "items": [{"sku": "sku-1", "qty": 1, "unit_price": o.total_amount}],
                "currency": o.currency, "total_amount": o.total_amount, "status": o.status,
                "order_ts": o.order_ts, "event_ts": o.order_ts, "event_date": o.order_ts.date(),
                "topic": self.topics[0], "partition": 0, "offset": offset,
                "kafka_timestamp": o.order_ts, "ingest_ts": now, "incarnation": 0,
            })
        return pa.Table.from_pylist(rows, schema=ORDERS_CLEAN)

    def _payments(self, orders: Sequence[Order], payments: Sequence[Payment], now: datetime) -> pa.Table:
        currency = {o.order_id: o.currency for o in orders}
        rows = []
        for offset, p in enumerate(payments):
            rows.append({
                "event_id": p.event_id, "payment_id": f"pay-{p.event_id}", "order_id": p.order_id,
                "amount": p.amount, "amount_cents": int(p.amount * 100),
                "currency": p.currency or currency.get(p.order_id, "USD"), "status": p.status, "method": p.method,
                "event_ts": p.event_ts, "event_date": p.event_ts.date(), "topic": self.topics[1], "partition": 0,
                "offset": offset, "kafka_timestamp": p.event_ts, "ingest_ts": now, "incarnation": 0,
            })
        return pa.Table.from_pylist(rows, schema=PAYMENTS_CLEAN)

    def _enriched(self, orders: Sequence[Order], payments: Sequence[Payment], now: datetime) -> pa.Table:
        previous = self._previous_enriched()
        by_order = payments_by_order(payments)
        rows = []
        for o in orders:
            pays = by_order[o.order_id]
            row = {
                "order_id": o.order_id, "user_id": o.user_id, "total_amount": o.total_amount,
                "paid_amount": paid_amount(o, pays), "currency": o.currency, "status": o.status,
                "fully_paid": fully_paid(o, pays), "order_ts": o.order_ts,
                "last_payment_ts": max((p.event_ts for p in pays), default=None),
                "first_published_ts": min([o.order_ts, *(p.event_ts for p in pays)]),
                "last_published_ts": max([o.order_ts, *(p.event_ts for p in pays)]),
            }
            old = previous.get(o.order_id)
            unchanged = old is not None and all(old[k] == v for k, v in row.items())
            row["updated_ts"] = old["updated_ts"] if unchanged else now
            rows.append(row)
        return pa.Table.from_pylist(rows, schema=ORDER_PAYMENTS_ENRICHED)

    def _previous_enriched(self) -> dict[str, dict]:
        from deltalake import DeltaTable

        uri = self.uri("order_payments_enriched")
        if not DeltaTable.is_deltatable(uri):
            return {}
        return {r["order_id"]: r for r in DeltaTable(uri).to_pyarrow_table().to_pylist()}


def synthetic(n_orders: int, seed: int = 7, start: datetime | None = None,
              span_minutes: int = 120) -> tuple[list[Order], list[Payment]]:
    """Orders spread over `span_minutes` in USD/EUR/GBP with the payment patterns silver sees: one capture, split
    captures, failed then retried, unpaid, refunded, cancelled."""
    rng = random.Random(seed)
    start = start or minute_of(datetime.now(UTC)) - timedelta(minutes=span_minutes)
    orders: list[Order] = []
    payments: list[Payment] = []
    currencies = ("USD", "USD", "EUR", "GBP")
    for i in range(n_orders):
        ts = start + timedelta(milliseconds=rng.randrange(span_minutes * 60_000))
        total = Decimal(rng.randrange(100, 50_000)) / 100
        kind = rng.random()
        status = "cancelled" if kind > 0.97 else "created"
        order = Order(f"o-{seed}-{i}", ts, rng.choice(currencies), total, status, f"user-{rng.randrange(1000)}")
        orders.append(order)
        pay_ts = ts + timedelta(seconds=rng.randrange(1, 90))
        ids = (f"p-{seed}-{i}-{k}" for k in range(4))
        if kind < 0.60:
            payments.append(Payment(order.order_id, total, pay_ts, event_id=next(ids)))
        elif kind < 0.75:
            first = (total / 3).quantize(CENT)
            payments += [Payment(order.order_id, first, pay_ts, event_id=next(ids)),
                         Payment(order.order_id, total - first, pay_ts + timedelta(seconds=5), event_id=next(ids))]
        elif kind < 0.85:
            payments += [Payment(order.order_id, total, pay_ts, status="failed", event_id=next(ids)),
                         Payment(order.order_id, total, pay_ts + timedelta(seconds=3), event_id=next(ids))]
        elif kind < 0.90:
            payments += [Payment(order.order_id, total, pay_ts, event_id=next(ids)),
                         Payment(order.order_id, total, pay_ts + timedelta(seconds=30), status="refunded",
                                 event_id=next(ids))]
        elif kind < 0.95:
            payments.append(Payment(order.order_id, total, pay_ts, status="authorized", event_id=next(ids)))
        elif status == "cancelled":
            payments.append(Payment(order.order_id, total, pay_ts, event_id=next(ids)))
    return orders, payments
