"""The reference model on hand-made events: it is the yardstick of the end-to-end tests, so it gets its own."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal

import reference
from reference import Message

OT, PT = "orders.t", "payments.t"


def order(eid, oid, ts, currency="USD", lines=((2, "10.00"),), event_type="order_created", status="created", **over):
    payload = {
        "event_id": eid, "event_type": event_type, "order_id": oid, "user_id": "u1",
        "items": [{"sku": f"S{i}", "qty": q, "unit_price": float(p)} for i, (q, p) in enumerate(lines)],
        "currency": currency, "total_amount": float(sum(q * Decimal(p) for q, p in lines)), "status": status,
        "event_ts": ts,
    }
    payload.update(over)
    return json.dumps({k: v for k, v in payload.items() if v is not ...}).encode()


def payment(eid, oid, cents, ts, status="captured", currency="USD", **over):
    payload = {"event_id": eid, "payment_id": f"p-{eid}", "order_id": oid, "amount_cents": cents,
               "currency": currency, "status": status, "method": "card", "event_ts": ts}
    payload.update(over)
    return json.dumps({k: v for k, v in payload.items() if v is not ...}).encode()


def msgs(*items):
    """(topic, value) pairs -> messages on partition 0 with increasing offsets per topic."""
    offsets = {OT: 0, PT: 0}
    out = []
    for topic, value in items:
        out.append(Message(topic, 0, offsets[topic], b"k", value))
        offsets[topic] += 1
    return out


def build(*items):
    return reference.build(msgs(*items), order_topic=OT, payment_topic=PT)


def utc(text):
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def test_latest_state_dedupe_and_payments_before_their_order():
    created = order("e1", "o1", "2026-11-21T10:00:05.000Z")
    model = build(
        (PT, payment("p1", "o1", 1500, "2026-11-21T10:00:06.000Z")),  # before its order
        (OT, created),
        (OT, created),  # redelivery
        (PT, payment("p2", "o1", 500, "2026-11-21T10:00:07.000Z")),
        (PT, payment("p2", "o1", 500, "2026-11-21T10:00:07.000Z")),  # redelivery must not double-pay
        (OT, order("e2", "o2", "2026-11-21T10:00:30.000Z", currency="EUR", lines=((1, "50.00"),))),
        (OT, order("e3", "o2", "2026-11-21T10:01:30.000Z", currency="EUR", lines=((1, "50.00"),),
                   event_type="order_cancelled", status="cancelled")),
        (PT, payment("p3", "o2", 5000, "2026-11-21T10:00:40.000Z", currency="EUR")),
    )
    assert model.duplicates == {OT: 1, PT: 1}
    assert set(model.orders) == {"o1", "o2"}
    assert model.orders["o2"].status == "cancelled"
    assert model.orders["o2"].order_ts == utc("2026-11-21T10:00:30")
    o1 = model.enriched["o1"]
    assert (o1.paid_amount, o1.total_amount, o1.fully_paid) == (Decimal("20.00"), Decimal("20.00"), True)
    assert o1.last_payment_ts == utc("2026-11-21T10:00:07")
    assert model.enriched["o2"].fully_paid is False  # paid in full, but cancelled
    assert list(model.gold.values()) == [reference.MinuteRow(utc("2026-11-21T10:00:00"), Decimal("20.00"), 1)]


def test_split_refund_and_foreign_currency_payments():
    model = build(
        (OT, order("e1", "o1", "2026-11-21T10:00:00.000Z", currency="GBP", lines=((1, "30.00"),))),
        (PT, payment("p1", "o1", 1000, "2026-11-21T10:00:01.000Z", currency="GBP")),
        (PT, payment("p2", "o1", 2000, "2026-11-21T10:00:02.000Z", currency="USD")),  # wrong currency: not applied
        (PT, payment("p3", "o1", 1000, "2026-11-21T10:00:03.000Z", status="failed", currency="GBP")),
        (OT, order("e2", "o2", "2026-11-21T10:00:10.000Z", currency="EUR", lines=((1, "10.00"),))),
        (PT, payment("p4", "o2", 400, "2026-11-21T10:00:11.000Z", currency="EUR")),
        (PT, payment("p5", "o2", 600, "2026-11-21T10:00:12.000Z", currency="EUR")),
        (OT, order("e3", "o3", "2026-11-21T10:00:20.000Z", lines=((1, "5.00"),))),
        (PT, payment("p6", "o3", 500, "2026-11-21T10:00:21.000Z")),
        (PT, payment("p7", "o3", 100, "2026-11-21T10:00:22.000Z", status="refunded")),
    )
    assert model.enriched["o1"].paid_amount == Decimal("10.00") and not model.enriched["o1"].fully_paid
    assert model.enriched["o2"].fully_paid and model.enriched["o2"].paid_amount == Decimal("10.00")
    assert model.enriched["o3"].paid_amount == Decimal("4.00") and not model.enriched["o3"].fully_paid
    assert model.gold[utc("2026-11-21T10:00:00")] == reference.MinuteRow(utc("2026-11-21T10:00:00"), Decimal("10.80"), 1)


def test_gold_rounds_each_minute_half_up_after_summing():
    # 3 x EUR 0.05 -> 3 x 0.054 USD = 0.162 -> 0.16; rounding each order first would give 0.15
    items = [(OT, order(f"e{i}", f"o{i}", "2026-11-21T10:05:00.000Z", currency="EUR", lines=((1, "0.05"),)))
             for i in range(3)]
    pays = [(PT, payment(f"p{i}", f"o{i}", 5, "2026-11-21T10:05:01.000Z", currency="EUR")) for i in range(3)]
    row = build(*items, *pays).gold[utc("2026-11-21T10:05:00")]
    assert (row.gmv, row.paid_orders) == (Decimal("0.16"), 3)
    half = build((OT, order("e", "o", "2026-11-21T10:06:00Z", currency="EUR", lines=((1, "0.125"),), total_amount=0.125)),
                 (PT, payment("p", "o", 13, "2026-11-21T10:06:01Z", currency="EUR")))
    assert half.gold[utc("2026-11-21T10:06:00")].gmv == Decimal("0.14")  # 0.13 (decimal(18,2)) * 1.08 = 0.1404


def test_quarantine_reasons_one_per_broken_rule():
    ts = "2026-11-21T10:00:00.000Z"
    model = build(
        (OT, b'{"event_id": "x", "event_type"'),
        (OT, b"\xff" + order("e0", "o0", ts)),
        (OT, b"[1, 2]"),
        (OT, order("e1", "o1", ts, currency=...)),
        (OT, order("e2", "o2", ts, total_amount="20.00")),
        (OT, order("e3", "o3", ts, user_id=42)),
        (OT, order("e4", "o4", ts, items=[{"sku": "S", "qty": "1", "unit_price": 1.0}])),
        (OT, order("e5", "o5", ts, currency="JPY")),
        (OT, order("e6", "o6", ts, total_amount=-1.0)),
        (OT, order("e7", "o7", ts, event_ts="not-a-timestamp")),
        (OT, order("e8", "o8", ts, status="shipped")),
        (OT, order("e9", "o9", ts, coupon="X", client={"app": "ios"})),  # extra fields are fine
        (PT, payment("p1", "o9", 100, ts, amount_cents="100")),
        (PT, payment("p2", "o9", 100, ts, amount_cents=100.5)),
        (PT, payment("p3", "o9", -100, ts)),
        (PT, payment("p4", "o9", 100, ts, method="crypto")),
        (PT, payment("p5", "o9", 100, ts, currency=...)),
        (PT, payment(..., "o9", 100, ts)),  # no event_id: valid, gets a synthetic id
        (PT, payment(..., "o9", 100, ts)),  # ... each its own
    )
    assert model.quarantine_reasons(OT) == {
        "malformed_json": 3, "missing_field:currency": 1, "wrong_type:total_amount": 1, "wrong_type:user_id": 1,
        "wrong_type:items": 1, "invalid_value:currency": 1, "invalid_value:total_amount": 1,
        "invalid_value:event_ts": 1, "invalid_value:status": 1,
    }
    assert model.quarantine_reasons(PT) == {
        "wrong_type:amount_cents": 2, "invalid_value:amount_cents": 1, "invalid_value:method": 1,
        "missing_field:currency": 1,
    }
    assert set(model.orders) == {"o9"}
    assert model.valid_unique == {OT: 1, PT: 2}
    assert sorted(model.payments) == [f"{PT}/0/5", f"{PT}/0/6"]
    assert model.enriched["o9"].paid_amount == Decimal("2.00")
