"""Hand-made contract events and bronze rows for the silver tests."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from ecomlake.tables import ORDERS_RAW

T0 = datetime(2026, 11, 21, 10, 0, tzinfo=timezone.utc)
BRONZE_DDL = ORDERS_RAW.ddl


def iso(ts: datetime) -> str:
    return ts.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def order(order_id: str, event_type: str = "order_created", at: datetime = T0, **fields: Any) -> dict:
    event = {
        "event_id": str(uuid.uuid5(uuid.NAMESPACE_OID, f"{order_id}/{event_type}/{at.isoformat()}")),
        "event_type": event_type,
        "order_id": order_id,
        "user_id": "u-1",
        "items": [{"sku": "sku-1", "qty": 2, "unit_price": 10.25}],
        "currency": "USD",
        "total_amount": 20.50,
        "status": "cancelled" if event_type == "order_cancelled" else "created",
        "event_ts": iso(at),
    }
    event.update(fields)
    return event


def payment(order_id: str, amount_cents: int, status: str = "captured", at: datetime = T0, **fields: Any) -> dict:
    event = {
        "event_id": str(uuid.uuid5(uuid.NAMESPACE_OID, f"pay/{order_id}/{status}/{amount_cents}/{at.isoformat()}")),
        "payment_id": f"p-{order_id}",
        "order_id": order_id,
        "amount_cents": amount_cents,
        "currency": "USD",
        "status": status,
        "method": "card",
        "event_ts": iso(at),
    }
    event.update(fields)
    return event


def without(event: dict, *names: str) -> dict:
    return {k: v for k, v in event.items() if k not in names}


@dataclass
class Msg:
    """One Kafka message as bronze keeps it. `payload` is a dict (sent as JSON), a str (sent as is), bytes (kept
    base64 when not UTF-8) or None (a tombstone)."""

    payload: Any
    offset: int
    partition: int = 0
    key: str | None = None
    published: datetime | None = None
    incarnation: int = 0


def bronze_row(topic: str, msg: Msg) -> tuple:
    payload = msg.payload
    b64 = None
    if isinstance(payload, dict):
        raw = json.dumps(payload)
    elif isinstance(payload, bytes):
        try:
            raw = payload.decode("utf-8")
        except UnicodeDecodeError:
            raw, b64 = payload.decode("utf-8", errors="replace"), base64.b64encode(payload).decode()
    else:
        raw = payload
    key = msg.key if msg.key is not None else (payload.get("order_id") if isinstance(payload, dict) else None)
    published = msg.published or T0 + timedelta(seconds=msg.offset)
    return (key, raw, b64, topic, msg.partition, msg.offset, published, published + timedelta(seconds=1), msg.incarnation)


def bronze_df(spark, topic: str, msgs: list[Msg]):
    return spark.createDataFrame([bronze_row(topic, m) for m in msgs], BRONZE_DDL)


def numbered(payloads: list[Any], first_offset: int = 0, partition: int = 0) -> list[Msg]:
    return [Msg(p, first_offset + i, partition) for i, p in enumerate(payloads)]
