"""The silver transformations on small hand-made DataFrames: validation (every quarantine reason), dedupe, latest
state, payments and enrichment."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

import reference
from batch.silver import common
from batch.silver import enrich as silver_enrich
from batch.silver import orders as silver_orders
from batch.silver import payments as silver_payments
from silver_rows import T0, Msg, bronze_df, numbered, order, payment, without

ORDERS_TOPIC, PAYMENTS_TOPIC = "orders.events", "payments.events"


def reasons_by_offset(rejected) -> dict[int, str]:
    return {r["offset"]: r["reason"] for r in rejected.select("offset", "reason").collect()}


# Silver is stricter than the reference model on purpose here: duplicate JSON keys are malformed, and numbers that
# do not fit the silver column types (qty int, money decimal(18,2)) are invalid values.
STRICTER_THAN_REFERENCE = ('"order_id": "b"', "3000000000", "1e+20", str(10**19))


def reference_reason(validate, payload) -> str | None:
    """The independent model's verdict on the same payload (None: a case silver is stricter on)."""
    value = json.dumps(payload) if isinstance(payload, dict) else payload
    if value is None or any(marker in str(value) for marker in STRICTER_THAN_REFERENCE):
        return None
    try:
        validate(value if isinstance(value, bytes) else value.encode())
    except reference.Invalid as bad:
        return bad.reason
    return "valid"


def assert_reference_agrees(validate, cases) -> None:
    for payload, reason in cases:
        expected = reference_reason(validate, payload)
        assert expected in (reason, None), (payload, reason, expected)


# --- orders: validation -------------------------------------------------------------------------------------
ORDER_CASES = [
    ('{"event_id": "e1", "order_id": ', "malformed_json"),
    ("[1, 2]", "malformed_json"),
    ('"just a string"', "malformed_json"),
    ("null", "malformed_json"),
    ("", "malformed_json"),
    (None, "malformed_json"),
    ('{"order_id": "a", "order_id": "b"}', "malformed_json"),
    (b'{"order_id": "\xff\xfe"}', "malformed_json"),
    *[(without(order("m"), name), f"missing_field:{name}") for name in silver_orders.ORDER_REQUIRED],
    (order("n", currency=None), "missing_field:currency"),
    (order("t", event_id=42), "wrong_type:event_id"),
    (order("t", event_type=["order_created"]), "wrong_type:event_type"),
    ({**order("t"), "order_id": 7}, "wrong_type:order_id"),
    (order("t", user_id={"id": 1}), "wrong_type:user_id"),
    (order("t", items="sku-1 x2"), "wrong_type:items"),
    (order("t", currency=840), "wrong_type:currency"),
    (order("t", total_amount="20.50"), "wrong_type:total_amount"),
    (order("t", status=True), "wrong_type:status"),
    (order("t", event_ts=1795300000), "wrong_type:event_ts"),
    (order("t", items=["sku-1"]), "wrong_type:items"),
    (order("t", items=[{"qty": 1, "unit_price": 1}]), "wrong_type:items"),
    (order("t", items=[{"sku": "a", "unit_price": 1}]), "wrong_type:items"),
    (order("t", items=[{"sku": "a", "qty": 1, "unit_price": None}]), "wrong_type:items"),
    (order("t", items=[{"sku": 5, "qty": 1, "unit_price": 1}]), "wrong_type:items"),
    (order("t", items=[{"sku": "a", "qty": "2", "unit_price": 1}]), "wrong_type:items"),
    (order("t", items=[{"sku": "a", "qty": 1.5, "unit_price": 1}]), "wrong_type:items"),
    (order("t", items=[{"sku": "a", "qty": 1, "unit_price": True}]), "wrong_type:items"),
    (order("v", event_type="order_shipped"), "invalid_value:event_type"),
    (order("v", items=[]), "invalid_value:items"),
    (order("v", items=[{"sku": "a", "qty": 1, "unit_price": 1}, {"sku": "b", "qty": 0, "unit_price": 1}]),
     "invalid_value:items"),
    (order("v", items=[{"sku": "a", "qty": 3000000000, "unit_price": 1}]), "invalid_value:items"),
    (order("v", items=[{"sku": "a", "qty": 1, "unit_price": -0.01}]), "invalid_value:items"),
    (order("v", currency="JPY"), "invalid_value:currency"),
    (order("v", currency="usd"), "invalid_value:currency"),
    (order("v", total_amount=-1), "invalid_value:total_amount"),
    (order("v", total_amount=1e20), "invalid_value:total_amount"),
    (order("v", status="shipped"), "invalid_value:status"),
    (order("v", event_ts="yesterday noon"), "invalid_value:event_ts"),
    # The first failing check wins: missing before wrong type before invalid value.
    (without(order("x", currency="JPY", total_amount="1"), "user_id"), "missing_field:user_id"),
    (order("x", currency="JPY", total_amount="1"), "wrong_type:total_amount"),
]


def test_every_order_quarantine_reason(spark):
    bronze = bronze_df(spark, ORDERS_TOPIC, numbered([payload for payload, _ in ORDER_CASES]))
    valid, rejected = silver_orders.validate(bronze)
    assert valid.count() == 0
    got = reasons_by_offset(rejected)
    assert got == {offset: reason for offset, (_, reason) in enumerate(ORDER_CASES)}
    assert_reference_agrees(reference.validate_order, ORDER_CASES)
    row = rejected.filter("offset = 7").first()
    assert row["raw_value_b64"] == "eyJvcmRlcl9pZCI6ICL//iJ9" and row["topic"] == ORDERS_TOPIC


def test_valid_orders_are_typed_and_extra_fields_tolerated(spark):
    events = [
        order("o1", coupon="XMAS", items=[{"sku": "a", "qty": 2, "unit_price": 10.25, "gift": True}]),
        order("o2", event_ts="2026-11-21T12:00:00+02:00", total_amount=0, currency="GBP"),
        order("o3", event_type="order_cancelled", total_amount=19.999),
    ]
    valid, rejected = silver_orders.validate(bronze_df(spark, ORDERS_TOPIC, numbered(events)))
    assert rejected.count() == 0
    rows = {r["order_id"]: r for r in valid.collect()}
    assert rows["o1"]["total_amount"] == Decimal("20.50")
    assert rows["o1"]["items"][0]["unit_price"] == Decimal("10.25") and rows["o1"]["items"][0]["qty"] == 2
    assert rows["o2"]["event_ts"].timestamp() == T0.timestamp()  # 12:00+02:00 is 10:00 UTC
    assert rows["o3"]["total_amount"] == Decimal("20.00") and rows["o3"]["status"] == "cancelled"
    assert valid.schema["total_amount"].dataType.simpleString() == "decimal(18,2)"
    assert valid.schema["event_ts"].dataType.simpleString() == "timestamp"


# --- payments: validation -------------------------------------------------------------------------------------
PAYMENT_CASES = [
    ("{oops", "malformed_json"),
    *[(without(payment("m", 100), name), f"missing_field:{name}") for name in silver_payments.PAYMENT_REQUIRED[1:]],
    (payment("n", 100, method=None), "missing_field:method"),
    (payment("t", 100, event_id=123), "wrong_type:event_id"),
    (payment("t", 100, payment_id=9), "wrong_type:payment_id"),
    ({**payment("t", 100), "order_id": None}, "missing_field:order_id"),
    (payment("t", "100"), "wrong_type:amount_cents"),
    (payment("t", 12.5), "wrong_type:amount_cents"),
    (payment("t", 100, currency=["USD"]), "wrong_type:currency"),
    (payment("t", 100, status=1), "wrong_type:status"),
    (payment("t", 100, method=False), "wrong_type:method"),
    (payment("t", 100, event_ts={"s": 1}), "wrong_type:event_ts"),
    (payment("v", -1), "invalid_value:amount_cents"),
    (payment("v", 10**19), "invalid_value:amount_cents"),
    (payment("v", 100, currency="CHF"), "invalid_value:currency"),
    (payment("v", 100, status="pending"), "invalid_value:status"),
    (payment("v", 100, method="cash"), "invalid_value:method"),
    (payment("v", 100, event_ts="2026-13-45T99:00:00Z"), "invalid_value:event_ts"),
]


def test_every_payment_quarantine_reason(spark):
    bronze = bronze_df(spark, PAYMENTS_TOPIC, numbered([payload for payload, _ in PAYMENT_CASES]))
    valid, rejected = silver_payments.validate(bronze)
    assert valid.count() == 0
    assert reasons_by_offset(rejected) == {offset: reason for offset, (_, reason) in enumerate(PAYMENT_CASES)}
    assert_reference_agrees(reference.validate_payment, PAYMENT_CASES)


def test_payment_without_event_id_gets_a_deterministic_synthetic_one(spark):
    msgs = [
        Msg(without(payment("o1", 100), "event_id"), offset=5, partition=1),
        Msg(payment("o1", 250, event_id=None), offset=6, partition=1),
        Msg(payment("o1", 999, extra={"x": 1}), offset=7, partition=1),
    ]
    first, _ = silver_payments.validate(bronze_df(spark, PAYMENTS_TOPIC, msgs))
    again, _ = silver_payments.validate(bronze_df(spark, PAYMENTS_TOPIC, msgs))
    ids = {r["offset"]: r["event_id"] for r in first.collect()}
    assert ids == {r["offset"]: r["event_id"] for r in again.collect()}
    assert ids[5].startswith("synthetic-") and ids[6].startswith("synthetic-") and ids[5] != ids[6]
    assert ids[7] == msgs[2].payload["event_id"]
    row = first.filter("offset = 6").first()
    assert row["amount"] == Decimal("2.50") and row["amount_cents"] == 250
    assert str(row["event_date"]) == "2026-11-21"


# --- dedupe and latest state ------------------------------------------------------------------------------------
def test_dedupe_keeps_the_first_copy_to_arrive_whatever_its_partition(spark):
    """Ingestion order (bronze batch, publication, coordinates) decides; partition numbers order nothing."""
    created = order("o1")
    msgs = [Msg(created, offset=9, published=T0 + timedelta(seconds=9)),
            Msg(created, offset=4, published=T0 + timedelta(seconds=4)),
            Msg(created, offset=2, partition=1, published=T0 + timedelta(seconds=2)),
            Msg(created, offset=1, partition=0, published=T0 + timedelta(seconds=3)),
            Msg(order("o2"), 3)]
    valid, _ = silver_orders.validate(bronze_df(spark, ORDERS_TOPIC, msgs))
    kept = {(r["order_id"], r["partition"], r["offset"]) for r in common.dedupe(valid).collect()}
    assert kept == {("o1", 1, 2), ("o2", 0, 3)}


def order_events(spark, msgs):
    """Deduplicated valid order events, as silver.order_events holds them."""
    valid, _ = silver_orders.validate(bronze_df(spark, ORDERS_TOPIC, msgs))
    return common.dedupe(silver_orders.with_event_date(valid))


def fold(spark, msgs):
    return silver_orders.fold(order_events(spark, msgs))


def test_latest_state_is_the_newest_event_and_cancels_update_status(spark):
    late = T0 - timedelta(minutes=30)
    msgs = [
        Msg(order("o1", "order_cancelled", at=T0 + timedelta(minutes=5)), offset=1),  # out of order: cancel first
        Msg(order("o1", at=T0), offset=2),
        Msg(order("o2", at=late), offset=3),  # late event: event_ts far in the past
        Msg(order("o3", at=T0, total_amount=1), offset=4),  # same event_ts: the higher offset wins
        Msg(order("o3", at=T0, total_amount=2, event_id="o3-b"), offset=5),
    ]
    rows = {r["order_id"]: r for r in fold(spark, msgs).collect()}
    assert rows["o1"]["status"] == "cancelled" and rows["o1"]["offset"] == 1
    assert rows["o1"]["order_ts"].timestamp() == T0.timestamp()
    assert rows["o2"]["order_ts"] == rows["o2"]["event_ts"] and str(rows["o2"]["event_date"]) == "2026-11-21"
    assert rows["o3"]["total_amount"] == Decimal("2.00")


def test_late_created_event_sets_order_ts_and_redeliveries_change_nothing(spark):
    cancel = order("o1", "order_cancelled", at=T0 + timedelta(hours=25))
    cancelled_at = T0 + timedelta(hours=25)  # published when it happened, not before (else: future_event_ts)
    first = [Msg(cancel, offset=1, published=cancelled_at), Msg(order("o2", at=T0), offset=2),
             Msg(order("o4", "order_cancelled"), offset=3)]
    stored = fold(spark, first).persist()
    before = {r["order_id"]: r for r in stored.collect()}
    assert before["o1"]["order_ts"] == before["o1"]["event_ts"]  # no order_created seen yet: earliest event
    assert str(before["o1"]["event_date"]) == "2026-11-22"
    later = [
        Msg(order("o1", at=T0), offset=7),  # the order_created event arrives late
        Msg(cancel, offset=8, published=cancelled_at),  # redelivery of o1's latest event
        Msg(order("o2", at=T0), offset=9),  # redelivery of o2's only event
        Msg(order("o3", at=T0), offset=10),  # a new order
        Msg(order("o4", "order_cancelled", at=T0 - timedelta(minutes=1), event_id="o4-older"), offset=11),
    ]
    after = silver_orders.fold(order_events(spark, first + later))
    changed = common.changed_only(after, stored, ["order_id"], silver_orders.CLEAN_COLUMNS)
    rows = {r["order_id"]: r for r in changed.collect()}
    assert set(rows) == {"o1", "o3", "o4"}
    assert rows["o1"]["status"] == "cancelled" and rows["o1"]["offset"] == 1
    assert rows["o1"]["order_ts"].timestamp() == T0.timestamp()
    # An older event without order_created moves only order_ts (the earliest event) of o4, not its state.
    assert rows["o4"]["offset"] == 3 and rows["o4"]["order_ts"].timestamp() == (T0 - timedelta(minutes=1)).timestamp()
    stored.unpersist()


def test_a_copy_with_other_content_conflicts_and_a_redelivery_does_not(spark):
    p1, p2 = payment("o1", 100), payment("o1", 200, status="refunded")
    kept, _ = silver_payments.validate(bronze_df(spark, PAYMENTS_TOPIC, [Msg(p1, offset=10, partition=1)]))
    changed = dict(p1, amount_cents=1)
    batch, _ = silver_payments.validate(bronze_df(spark, PAYMENTS_TOPIC, [
        Msg(p1, offset=12, partition=1),  # redelivery: same content
        Msg(p2, offset=13, partition=1),  # another event
        Msg(changed, offset=3, partition=0),  # same event_id, other content, through a lower partition
        Msg(p1, offset=10, partition=1),  # the kept copy itself (a rerun after a crash)
    ]))
    rows = common.conflicting(batch, kept).collect()
    assert [(r["partition"], r["offset"]) for r in rows] == [(0, 3)]


# --- enrichment -------------------------------------------------------------------------------------------------
def enrich(spark, order_msgs, payment_msgs):
    events = order_events(spark, order_msgs)
    payments, _ = silver_payments.validate(bronze_df(spark, PAYMENTS_TOPIC, payment_msgs))
    return silver_enrich.enrich(silver_orders.fold(events), events, common.dedupe(payments))


def enriched(spark, order_msgs, payment_msgs):
    return {r["order_id"]: r for r in enrich(spark, order_msgs, payment_msgs).collect()}


def test_enrichment_of_split_failed_refunded_and_cancelled_orders(spark):
    at = lambda minutes: T0 + timedelta(minutes=minutes)  # noqa: E731
    orders = [
        Msg(order("split", total_amount=20.50), 1),
        Msg(order("failed", total_amount=10), 2),
        Msg(order("refund", total_amount=10), 3),
        Msg(order("cancel", total_amount=10), 4),
        Msg(order("cancel", "order_cancelled", at=at(3), total_amount=10), 5),
        Msg(order("fx", total_amount=10, currency="EUR"), 6),
        Msg(order("unpaid", total_amount=5), 7),
        Msg(order("free", total_amount=0), 8),
    ]
    payments = [
        Msg(payment("split", 1000, at=at(1)), 1),
        Msg(payment("split", 1050, at=at(2)), 2),
        Msg(payment("split", 1050, "authorized", at=at(1)), 3),
        Msg(payment("failed", 1000, "failed", at=at(1)), 4),
        Msg(payment("failed", 1000, at=at(2)), 5),  # retried after the failure
        Msg(payment("refund", 1000, at=at(1)), 6),
        Msg(payment("refund", 400, "refunded", at=at(4)), 7),
        Msg(payment("cancel", 1000, at=at(1)), 8),
        Msg(payment("fx", 1000, currency="USD", at=at(1)), 9),  # not the order's currency: not counted
        Msg(payment("nobody", 1000, at=at(1)), 10),  # its order has not arrived: waits, no row
    ]
    rows = enriched(spark, orders, payments)
    assert set(rows) == {"split", "failed", "refund", "cancel", "fx", "unpaid", "free"}
    expect = {
        "split": (Decimal("20.50"), True),
        "failed": (Decimal("10.00"), True),
        "refund": (Decimal("6.00"), False),
        "cancel": (Decimal("10.00"), False),
        "fx": (Decimal("0.00"), False),
        "unpaid": (Decimal("0.00"), False),
        "free": (Decimal("0.00"), True),
    }
    assert {k: (r["paid_amount"], r["fully_paid"]) for k, r in rows.items()} == expect
    assert rows["refund"]["last_payment_ts"].timestamp() == at(4).timestamp()
    assert rows["unpaid"]["last_payment_ts"] is None
    assert rows["cancel"]["status"] == "cancelled"
    # Payments published after the order move last_published_ts (bronze_row publishes at T0 + offset seconds).
    assert rows["refund"]["last_published_ts"].timestamp() == (T0 + timedelta(seconds=7)).timestamp()
    assert rows["unpaid"]["last_published_ts"].timestamp() == (T0 + timedelta(seconds=7)).timestamp()
    # first_published_ts is the earliest publication of its events and payments: where gold finds the order's rows.
    assert rows["refund"]["first_published_ts"].timestamp() == (T0 + timedelta(seconds=3)).timestamp()
    assert rows["cancel"]["first_published_ts"].timestamp() == (T0 + timedelta(seconds=4)).timestamp()


def test_changed_rows_stamp_only_new_or_changed_orders(spark):
    orders = [Msg(order("a", total_amount=10), 1), Msg(order("b", total_amount=10), 2)]
    before = enriched(spark, orders, [Msg(payment("a", 500), 1)])
    stored = spark.createDataFrame([tuple(r) + (T0,) for r in before.values()], common.ENRICHED_DDL)
    after = enrich(spark, orders, [Msg(payment("a", 500), 1), Msg(payment("a", 500, at=T0 + timedelta(seconds=1)), 2)])
    stamp = T0 + timedelta(days=2)
    rows = silver_enrich.changed_rows(after, stored, stamp).collect()
    assert [(r["order_id"], r["paid_amount"], r["fully_paid"]) for r in rows] == [("a", Decimal("10.00"), True)]
    assert rows[0]["updated_ts"].timestamp() == stamp.timestamp()


def test_version_packing_is_monotonic_and_reversible():
    assert silver_enrich.unpack_versions(silver_enrich.pack_versions(7, None)) == (7, None)
    assert silver_enrich.unpack_versions(silver_enrich.pack_versions(0, 12)) == (0, 12)
    assert silver_enrich.pack_versions(3, 9) < silver_enrich.pack_versions(3, 10) < silver_enrich.pack_versions(4, None)


@pytest.mark.parametrize("job", [silver_orders, silver_payments])
def test_validation_never_crashes_on_hostile_payloads(spark, job):
    hostile = ['{"a": ' * 600 + "1" + "}" * 600, "\x00\x01", "{" + '"k":1,' * 2000 + '"z":2}', "1e999999", "[]" * 3]
    valid, rejected = job.validate(bronze_df(spark, "t", numbered(hostile)))
    assert valid.count() == 0
    allowed = {"malformed_json", "missing_field:event_id", "missing_field:payment_id"}
    assert set(reasons_by_offset(rejected).values()) <= allowed
    assert rejected.count() == len(hostile)


@pytest.mark.parametrize("job,event", [
    (silver_orders, lambda at: order("f1", at=at)),
    (silver_payments, lambda at: payment("f1", 100, at=at)),
])
def test_an_event_ts_far_ahead_of_its_kafka_timestamp_is_quarantined(spark, job, event):
    """event_ts in the year 3000 would open a gold minute in the future; a few minutes of clock skew is fine."""
    topic = ORDERS_TOPIC if job is silver_orders else PAYMENTS_TOPIC
    msgs = [Msg(event(datetime(3000, 1, 1, tzinfo=timezone.utc)), 0, published=T0),
            Msg(event(T0 + timedelta(minutes=5)), 1, published=T0),
            Msg(event(T0 + timedelta(minutes=61)), 2, published=T0)]
    valid, rejected = job.split(job.classify(bronze_df(spark, topic, msgs), max_ahead_s=3600))
    assert reasons_by_offset(rejected) == {0: "future_event_ts", 2: "future_event_ts"}
    assert [r["offset"] for r in valid.collect()] == [1]
