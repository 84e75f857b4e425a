"""An independent reference model of silver and gold, for end-to-end tests.

Feed it the messages of both topics (as consumed from Kafka, or the generator's records in publish order) and it
computes, from the raw bytes alone and the contract (ecomlake/contract.py, docs/stages.md), what silver and gold must hold.
It shares no code with the silver jobs or the generator on purpose; only the contract constants.

    model = reference.build(messages, order_topic=s.topic_order_events, payment_topic=s.topic_payment_events)
    model.orders["ord-..."].status, model.enriched[oid].fully_paid, model.gold[minute].gmv, model.summary()

Conventions beyond the brief, stated once here:
- A payload that is not valid UTF-8 is malformed_json, as is valid JSON that is not an object.
- Checks run in the order missing_field (all fields) -> wrong_type (all fields) -> invalid_value (all fields),
  each in the contract's field order; the first failure is the reason. Generated dirty records break one rule each.
- Numbers: integers and decimals are numbers, booleans are not; qty and amount_cents must be JSON integers.
- Without real coordinates (generator records), a message's offset is its position within its topic and its
  partition 0: the relative order of one order_id's events is the same as on its real partition.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Iterable, NamedTuple

from ecomlake.contract import (
    CURRENCIES,
    FX_TO_USD,
    ORDER_EVENT_TYPES,
    ORDER_REQUIRED,
    ORDER_STATUSES,
    PAYMENT_METHODS,
    PAYMENT_REQUIRED,
    PAYMENT_STATUSES,
)

CENT = Decimal("0.01")


class Message(NamedTuple):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp_ms: int | None = None


def from_records(records: Iterable[Any]) -> list[Message]:
    """Generator records (anything with .topic/.key/.value) in publish order -> messages with stand-in offsets."""
    position: Counter = Counter()
    out = []
    for record in records:
        out.append(Message(record.topic, 0, position[record.topic], record.key, record.value))
        position[record.topic] += 1
    return out


def from_kafka(messages: Iterable[Any]) -> list[Message]:
    """confluent_kafka Message objects -> messages."""
    return [Message(m.topic(), m.partition(), m.offset(), m.key(), m.value(), m.timestamp()[1]) for m in messages]


@dataclass(frozen=True)
class OrderRow:
    order_id: str
    event_id: str
    event_type: str
    user_id: str
    currency: str
    total_amount: Decimal
    status: str
    order_ts: datetime
    event_ts: datetime
    partition: int
    offset: int


@dataclass(frozen=True)
class PaymentRow:
    event_id: str  # synthetic "<topic>/<partition>/<offset>" stand-in when the payload had none
    has_event_id: bool
    payment_id: str
    order_id: str
    amount: Decimal
    amount_cents: int
    currency: str
    status: str
    method: str
    event_ts: datetime
    partition: int
    offset: int


@dataclass(frozen=True)
class EnrichedRow:
    order_id: str
    user_id: str
    total_amount: Decimal
    paid_amount: Decimal
    currency: str
    status: str
    fully_paid: bool
    order_ts: datetime
    last_payment_ts: datetime | None


@dataclass(frozen=True)
class Quarantined:
    topic: str
    partition: int
    offset: int
    reason: str
    raw_value: bytes


@dataclass(frozen=True)
class MinuteRow:
    minute_bucket: datetime
    gmv: Decimal  # USD, rounded to the cent (ROUND_HALF_UP) after summing the minute's exact amounts
    paid_orders: int


@dataclass
class Model:
    order_topic: str
    payment_topic: str
    orders: dict[str, OrderRow] = field(default_factory=dict)
    payments: dict[str, PaymentRow] = field(default_factory=dict)
    enriched: dict[str, EnrichedRow] = field(default_factory=dict)
    quarantine: list[Quarantined] = field(default_factory=list)
    duplicates: Counter = field(default_factory=Counter)  # topic -> redelivered valid events dropped by dedupe
    valid_unique: Counter = field(default_factory=Counter)  # topic -> valid events kept after dedupe
    gold: dict[datetime, MinuteRow] = field(default_factory=dict)

    def quarantine_reasons(self, topic: str | None = None) -> Counter:
        return Counter(q.reason for q in self.quarantine if topic is None or q.topic == topic)

    def summary(self) -> dict:
        """The same shape as the generator manifest's `expected` block, so the two can be compared directly."""
        topics = (self.order_topic, self.payment_topic)
        fully_paid = [r for r in self.enriched.values() if r.fully_paid]
        gmv_exact = sum((r.total_amount * FX_TO_USD[r.currency] for r in fully_paid), Decimal(0))
        return {
            "valid_unique": {t: self.valid_unique[t] for t in topics},
            "duplicates": {t: self.duplicates[t] for t in topics},
            "quarantined": {t: sum(1 for q in self.quarantine if q.topic == t) for t in topics},
            "quarantine_reasons": {t: dict(sorted(self.quarantine_reasons(t).items())) for t in topics},
            "orders_clean_rows": len(self.orders),
            "payments_clean_rows": len(self.payments),
            "order_payments_enriched_rows": len(self.enriched),
            "quarantine_rows": len(self.quarantine),
            "cancelled_orders": sum(1 for r in self.orders.values() if r.status == "cancelled"),
            "fully_paid_orders": len(fully_paid),
            "gmv_usd_exact": str(gmv_exact.quantize(Decimal("0.0001"))),
        }


# validation -----------------------------------------------------------------------------------------------------

_STRING = "string"
_NUMBER = "number"
_INTEGER = "integer"
_ITEMS = "items"
ORDER_TYPES = {"event_id": _STRING, "event_type": _STRING, "order_id": _STRING, "user_id": _STRING,
               "items": _ITEMS, "currency": _STRING, "total_amount": _NUMBER, "status": _STRING, "event_ts": _STRING}
PAYMENT_TYPES = {"event_id": _STRING, "payment_id": _STRING, "order_id": _STRING, "amount_cents": _INTEGER,
                 "currency": _STRING, "status": _STRING, "method": _STRING, "event_ts": _STRING}


class Invalid(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, Decimal)) and not isinstance(v, bool)


def _is_integer(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _has_type(v: Any, kind: str) -> bool:
    if kind == _STRING:
        return isinstance(v, str)
    if kind == _NUMBER:
        return _is_number(v)
    if kind == _INTEGER:
        return _is_integer(v)
    return isinstance(v, list) and all(
        isinstance(i, dict) and isinstance(i.get("sku"), str) and _is_integer(i.get("qty")) and _is_number(i.get("unit_price"))
        for i in v
    )


def parse_ts(text: str) -> datetime | None:
    """ISO-8601 with a Z or an offset (naive means UTC) -> aware UTC datetime; None when it does not parse."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def decode(value: bytes) -> dict:
    try:
        obj = json.loads(value.decode("utf-8"), parse_float=Decimal)
    except (UnicodeDecodeError, ValueError):
        raise Invalid("malformed_json") from None
    if not isinstance(obj, dict):
        raise Invalid("malformed_json")
    return obj


def validate_order(value: bytes) -> dict:
    """The parsed order event, or Invalid(reason)."""
    obj = decode(value)
    for name in ORDER_REQUIRED:
        if obj.get(name) is None:
            raise Invalid(f"missing_field:{name}")
    for name in ORDER_REQUIRED:
        if not _has_type(obj[name], ORDER_TYPES[name]):
            raise Invalid(f"wrong_type:{name}")
    checks = {
        "event_type": obj["event_type"] in ORDER_EVENT_TYPES,
        "status": obj["status"] in ORDER_STATUSES,
        "currency": obj["currency"] in CURRENCIES,
        "total_amount": obj["total_amount"] >= 0,
        "items": bool(obj["items"]) and all(i["qty"] > 0 and i["unit_price"] >= 0 for i in obj["items"]),
        "event_ts": parse_ts(obj["event_ts"]) is not None,
    }
    for name in ORDER_REQUIRED:
        if not checks.get(name, True):
            raise Invalid(f"invalid_value:{name}")
    return obj


def validate_payment(value: bytes) -> dict:
    """The parsed payment event (event_id may be absent), or Invalid(reason)."""
    obj = decode(value)
    present = [n for n in PAYMENT_REQUIRED if n != "event_id" or obj.get("event_id") is not None]
    for name in PAYMENT_REQUIRED:
        if name != "event_id" and obj.get(name) is None:
            raise Invalid(f"missing_field:{name}")
    for name in present:
        if not _has_type(obj[name], PAYMENT_TYPES[name]):
            raise Invalid(f"wrong_type:{name}")
    checks = {
        "amount_cents": obj["amount_cents"] >= 0,
        "currency": obj["currency"] in CURRENCIES,
        "status": obj["status"] in PAYMENT_STATUSES,
        "method": obj["method"] in PAYMENT_METHODS,
        "event_ts": parse_ts(obj["event_ts"]) is not None,
    }
    for name in PAYMENT_REQUIRED:
        if not checks.get(name, True):
            raise Invalid(f"invalid_value:{name}")
    return obj


# the model ------------------------------------------------------------------------------------------------------

def build(messages: Iterable[Message], *, order_topic: str, payment_topic: str) -> Model:
    """Silver and gold as the brief defines them, from the raw messages of both topics (any order)."""
    model = Model(order_topic, payment_topic)
    ordered = sorted(messages, key=lambda m: (m.topic, m.partition, m.offset))
    seen: set[tuple[str, str]] = set()
    order_events: dict[str, list[tuple[datetime, int, int, dict]]] = defaultdict(list)
    for msg in ordered:
        if msg.topic not in (order_topic, payment_topic):
            continue
        is_order = msg.topic == order_topic
        try:
            obj = validate_order(msg.value) if is_order else validate_payment(msg.value)
        except Invalid as bad:
            model.quarantine.append(Quarantined(msg.topic, msg.partition, msg.offset, bad.reason, msg.value))
            continue
        event_id = obj.get("event_id")
        if event_id is not None:
            if (msg.topic, event_id) in seen:
                model.duplicates[msg.topic] += 1
                continue
            seen.add((msg.topic, event_id))
        model.valid_unique[msg.topic] += 1
        ts = parse_ts(obj["event_ts"])
        if is_order:
            order_events[obj["order_id"]].append((ts, msg.partition, msg.offset, obj))
        else:
            row_id = event_id if event_id is not None else f"{msg.topic}/{msg.partition}/{msg.offset}"
            model.payments[row_id] = PaymentRow(
                row_id, event_id is not None, obj["payment_id"], obj["order_id"], Decimal(obj["amount_cents"]) / 100,
                obj["amount_cents"], obj["currency"], obj["status"], obj["method"], ts, msg.partition, msg.offset,
            )
    for order_id, events in order_events.items():
        ts, partition, offset, obj = max(events, key=lambda e: (e[0], e[2]))
        created = [e[0] for e in events if e[3]["event_type"] == "order_created"]
        order_ts = min(created) if created else min(e[0] for e in events)
        model.orders[order_id] = OrderRow(
            order_id, obj["event_id"], obj["event_type"], obj["user_id"], obj["currency"],
            Decimal(obj["total_amount"]).quantize(CENT, rounding=ROUND_HALF_UP), obj["status"], order_ts, ts, partition, offset,
        )
    by_order: dict[str, list[PaymentRow]] = defaultdict(list)
    for payment in model.payments.values():
        by_order[payment.order_id].append(payment)
    for order in model.orders.values():
        payments = by_order.get(order.order_id, [])
        same_currency = [p for p in payments if p.currency == order.currency]
        paid = sum((p.amount for p in same_currency if p.status == "captured"), Decimal(0)) - sum(
            (p.amount for p in same_currency if p.status == "refunded"), Decimal(0))
        model.enriched[order.order_id] = EnrichedRow(
            order.order_id, order.user_id, order.total_amount, paid.quantize(CENT), order.currency, order.status,
            order.status != "cancelled" and paid >= order.total_amount, order.order_ts,
            max((p.event_ts for p in payments), default=None),
        )
    minutes: dict[datetime, list[EnrichedRow]] = defaultdict(list)
    for row in model.enriched.values():
        if row.fully_paid:
            minutes[row.order_ts.replace(second=0, microsecond=0)].append(row)
    for minute, rows in sorted(minutes.items()):
        gmv = sum((r.total_amount * FX_TO_USD[r.currency] for r in rows), Decimal(0))
        model.gold[minute] = MinuteRow(minute, gmv.quantize(CENT, rounding=ROUND_HALF_UP), len(rows))
    return model


def value_digest(values: Iterable[bytes]) -> str:
    """Order-independent digest of payloads (sum of sha256 mod 2^256), comparable to the manifest's value_digest."""
    total = 0
    for value in values:
        total = (total + int.from_bytes(hashlib.sha256(value).digest(), "big")) % (1 << 256)
    return f"{total:064x}"
