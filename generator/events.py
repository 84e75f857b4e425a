"""Event construction, pure and deterministic: (scenario, seed, start, rate) -> an endless stream of Kafka records.

Nothing here reads the wall clock, draws OS randomness or publishes: ids come from the seeded RNG and event_ts
from a simulated clock, so a test can rebuild exactly what a run published. Each record carries its kind, its
traits and, when a correct silver job keeps it, the fact it contributes; the manifest is tallied from those.
"""

from __future__ import annotations

import heapq
import json
import random
import time
import uuid
from datetime import datetime, timezone
from decimal import Decimal
from itertools import islice
from typing import Iterator, NamedTuple

from ecomlake.contract import CURRENCIES, FX_TO_USD, ORDER_REQUIRED, PAYMENT_METHODS, PAYMENT_REQUIRED
from generator.scenarios import SCENARIOS, Scenario

DEFAULT_TOPICS = ("orders.events", "payments.events")
SIM_RATE_UNPACED = 50.0  # simulated events/s when publishing as fast as possible (spreads event_ts over minutes)
LATE_S = (120, 900)  # a late event's event_ts lies this many seconds in the past
CURRENCY_WEIGHTS = (5, 3, 2)  # USD, EUR, GBP

# Record kinds: every record is exactly one of these.
VALID_KINDS = ("orders", "order_cancels", "payments")
DUPLICATE = "duplicates"
QUARANTINE_KINDS = ("malformed_json", "missing_field", "wrong_type", "invalid_value")
KINDS = VALID_KINDS + (DUPLICATE,) + QUARANTINE_KINDS
# Traits: counted on top of the kind.
TRAITS = (
    "late", "early_payments", "split_payments", "retried_payments", "delayed_payments", "refunds",
    "failed_payments", "payments_authorized", "payments_captured", "extra_fields", "payments_without_event_id",
    "truncated_json", "not_json", "non_utf8",
)


class Fact(NamedTuple):
    """What a valid, first-seen event contributes to silver."""

    entity: str  # "order" | "payment"
    order_id: str
    event_id: str | None
    status: str
    currency: str
    cents: int  # order total or payment amount, in cents of `currency`
    ts_ms: int  # event_ts, epoch milliseconds


class Record(NamedTuple):
    topic: str
    key: bytes
    value: bytes
    kind: str
    traits: tuple[str, ...] = ()
    at: float = 0.0  # simulated seconds since start at emission: paced publishing follows it
    fact: Fact | None = None  # None for duplicates and quarantined records
    reason: str | None = None  # the quarantine reason a correct silver job gives it


def parse_start(value: str | datetime | None) -> datetime:
    """A simulated clock start as an aware UTC datetime, millisecond precision; naive input means UTC."""
    if value is None:
        moment = datetime.now(timezone.utc)
    elif isinstance(value, datetime):
        moment = value
    else:
        moment = datetime.fromisoformat(value.strip().replace("z", "Z"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    moment = moment.astimezone(timezone.utc)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def iso_ms(ms: int) -> str:
    sec, frac = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{frac:03d}Z"


def _dumps(payload: dict) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def _catalog() -> dict[str, list[tuple[str, int]]]:
    """500 SKUs with list prices in every currency (cents), fixed regardless of the seed."""
    rng = random.Random(20261121)
    usd = [rng.choice((499, 999, 1499, 1999, 2499, 3999, 4999, 7999, 12999, 24999)) for _ in range(500)]
    return {
        cur: [(f"SKU-{i + 1:05d}", int((Decimal(c) / FX_TO_USD[cur]).quantize(Decimal(1)))) for i, c in enumerate(usd)]
        for cur in CURRENCIES
    }


CATALOG = _catalog()


class _Order:
    __slots__ = ("order_id", "user_id", "currency", "items", "total_cents", "created_ms", "late", "actions", "pos",
                 "sent")

    def __init__(self, order_id, user_id, currency, items, total_cents, created_ms, late):
        self.order_id, self.user_id, self.currency = order_id, user_id, currency
        self.items, self.total_cents, self.created_ms, self.late = items, total_cents, created_ms, late
        self.actions: list[tuple[int, tuple]] = []
        self.pos = 0
        self.sent = False

    def payload(self, event_id: str, cancelled: bool, ts_ms: int) -> dict:
        return {
            "event_id": event_id,
            "event_type": "order_cancelled" if cancelled else "order_created",
            "order_id": self.order_id,
            "user_id": self.user_id,
            "items": [{"sku": sku, "qty": qty, "unit_price": cents / 100} for sku, qty, cents in self.items],
            "currency": self.currency,
            "total_amount": self.total_cents / 100,
            "status": "cancelled" if cancelled else "created",
            "event_ts": iso_ms(ts_ms),
        }


class _Stream:
    def __init__(self, scenario: Scenario, seed: int, start: datetime, rate: float, topics: tuple[str, str]):
        self.sc = scenario
        self.rng = random.Random(seed)
        self.start_ms = int(start.timestamp() * 1000)
        self.order_topic, self.payment_topic = topics
        sim_rate = rate if rate and rate > 0 else SIM_RATE_UNPACED
        self.dt = 1.0 / sim_rate
        if scenario.burst_period and scenario.burst_speedup != 1.0:
            share = (scenario.burst_to - scenario.burst_from) / scenario.burst_period
            self.dt_burst = self.dt / scenario.burst_speedup
            self.dt_calm = self.dt * (1 - share / scenario.burst_speedup) / (1 - share)  # keeps the mean rate
        else:
            self.dt_burst = self.dt_calm = self.dt
        self.step = 0
        self.at = 0.0
        self.heap: list[tuple[int, int, tuple]] = []
        self.seq = 0

    # ids and clock
    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _hex_id(self, prefix: str) -> str:
        return f"{prefix}-{self.rng.getrandbits(64):016x}"

    def _now_ms(self) -> int:
        return self.start_ms + int(self.at * 1000)

    def _late_ms(self) -> int:
        return self._now_ms() - self.rng.randint(LATE_S[0] * 1000, LATE_S[1] * 1000)

    def _schedule(self, delay: int, job: tuple) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (self.step + max(1, delay), self.seq, job))

    def __iter__(self) -> Iterator[Record]:
        while True:
            in_burst = self.sc.in_burst(self.step)
            if self.heap and self.heap[0][0] <= self.step:
                job = heapq.heappop(self.heap)[2]
                record = self._run(job)
            elif self.sc.p_dirty and self.rng.random() < self.sc.p_dirty:
                record = self._dirty()
            else:
                order = self._plan(in_burst)
                record = self._run(("order_plan", order))
            yield record
            self.step += 1
            self.at += self.dt_burst if in_burst else self.dt_calm

    # orders and their payment stories
    def _new_order(self, late: bool) -> _Order:
        rng = self.rng
        currency = rng.choices(CURRENCIES, weights=CURRENCY_WEIGHTS)[0]
        prices = CATALOG[currency]
        items = [(sku, rng.choice((1, 1, 1, 2, 2, 3)), cents)
                 for sku, cents in (prices[i] for i in rng.sample(range(len(prices)), rng.choice((1, 1, 1, 2, 2, 3, 4))))]
        created = self._late_ms() if late else self._now_ms()
        return _Order(self._hex_id("ord"), f"user-{rng.randint(1, 20000):05d}", currency, items,
                      sum(q * c for _, q, c in items), created, late)

    def _plan(self, in_burst: bool) -> _Order:
        sc, rng = self.sc, self.rng
        order = self._new_order(late=bool(sc.p_late) and rng.random() < sc.p_late)
        total = order.total_cents
        method = rng.choice(PAYMENT_METHODS)
        slow = in_burst and sc.burst_speedup > 1

        def pay_delay() -> int:
            return rng.randint(20, 200) if slow else rng.randint(1, 20)

        def pay(delay: int, status: str, cents: int, payment_id: str, traits: tuple = (), how: str = method):
            actions.append((delay, ("pay", status, cents, payment_id, how, traits)))

        actions: list[tuple[int, tuple]] = []
        story = rng.random()
        if in_burst and sc.burst_fraud and rng.random() < sc.burst_fraud:
            for _ in range(rng.randint(2, 5)):
                pay(rng.randint(1, 3), "failed", total, self._hex_id("pay"), how=rng.choice(("card", "card", "apple_pay")))
            if rng.random() < 0.2:
                pay(rng.randint(1, 5), "captured", total, self._hex_id("pay"), ("retried_payments",), "card")
        elif story < sc.p_abandon:
            if rng.random() < 0.5:
                pay(pay_delay(), "authorized", total, self._hex_id("pay"))
        elif story < sc.p_abandon + sc.p_cancel:
            if rng.random() < 0.5:
                pay(pay_delay(), "authorized", total, self._hex_id("pay"))
            actions.append((rng.randint(5, 40), ("cancel",)))
        else:
            retried: tuple = ()
            if rng.random() < sc.p_retry:
                pay(pay_delay(), "failed", total, self._hex_id("pay"))
                retried = ("retried_payments",)
            if sc.p_split and rng.random() < sc.p_split and total >= 3:
                parts = rng.randint(2, 3)
                cuts = sorted(rng.sample(range(1, total), parts - 1))
                for n, (lo, hi) in enumerate(zip([0] + cuts, cuts + [total])):
                    pay(pay_delay(), "captured", hi - lo, self._hex_id("pay"), ("split_payments",) + (retried if n == 0 else ()))
            else:
                payment_id = self._hex_id("pay")
                if rng.random() < sc.p_authorize_first:
                    pay(pay_delay(), "authorized", total, payment_id, retried)
                    retried = ()
                pay(pay_delay(), "captured", total, payment_id, retried)
            if sc.p_delayed_capture and rng.random() < sc.p_delayed_capture:
                delay, action = actions[-1]
                actions[-1] = (rng.randint(300, 1500), action[:5] + (action[5] + ("delayed_payments",),))
            if sc.p_refund and rng.random() < sc.p_refund:
                refund = total if rng.random() < 0.7 else rng.randint(1, max(1, total - 1))
                pay(rng.randint(5, 100), "refunded", refund, self._hex_id("pay"))
        if actions and actions[0][1][0] == "pay" and sc.p_early_payment and rng.random() < sc.p_early_payment:
            order.actions = [actions[0], (rng.randint(5, 30), ("order",))] + actions[1:]
        else:
            order.actions = [(0, ("order",))] + actions
        return order

    def _run(self, job: tuple) -> Record:
        if job[0] == "dup":
            original: Record = job[1]
            return Record(original.topic, original.key, original.value, DUPLICATE, (), self.at)
        order: _Order = job[1]
        action = order.actions[order.pos][1]
        order.pos += 1
        if order.pos < len(order.actions):
            self._schedule(order.actions[order.pos][0], ("order_plan", order))
        if action[0] == "order":
            order.sent = True
            record = self._order_event(order, cancelled=False)
        elif action[0] == "cancel":
            record = self._order_event(order, cancelled=True)
        else:
            record = self._payment_event(order, *action[1:])
        if self.sc.p_duplicate and record.fact and record.fact.event_id and "extra_fields" not in record.traits \
                and self.rng.random() < self.sc.p_duplicate:
            self._schedule(self.rng.randint(1, 50), ("dup", record))
        return record

    def _extra(self, payload: dict, traits: tuple) -> tuple:
        if self.sc.p_extra_fields and self.rng.random() < self.sc.p_extra_fields:
            payload["coupon_code"] = f"SAVE{self.rng.choice((5, 10, 15, 20))}"
            payload["client"] = {"app": self.rng.choice(("ios", "android", "web")), "version": "4.2.1"}
            return traits + ("extra_fields",)
        return traits

    def _order_event(self, order: _Order, cancelled: bool) -> Record:
        ts = max(self._now_ms(), order.created_ms + 1) if cancelled else order.created_ms
        event_id = self._uuid()
        payload = order.payload(event_id, cancelled, ts)
        traits = ("late",) if order.late and not cancelled else ()
        traits = self._extra(payload, traits)
        fact = Fact("order", order.order_id, event_id, payload["status"], order.currency, order.total_cents, ts)
        return Record(self.order_topic, order.order_id.encode(), _dumps(payload),
                      "order_cancels" if cancelled else "orders", traits, self.at, fact)

    def _payment_event(self, order: _Order, status: str, cents: int, payment_id: str, method: str, traits: tuple) -> Record:
        rng = self.rng
        late = bool(self.sc.p_late) and rng.random() < self.sc.p_late / 2
        ts = self._late_ms() if late else self._now_ms()
        event_id: str | None = self._uuid()
        payload = {"event_id": event_id, "payment_id": payment_id, "order_id": order.order_id, "amount_cents": cents,
                   "currency": order.currency, "status": status, "method": method, "event_ts": iso_ms(ts)}
        traits = traits + {"failed": ("failed_payments",), "refunded": ("refunds",), "authorized": ("payments_authorized",),
                           "captured": ("payments_captured",)}[status]
        if late:
            traits += ("late",)
        if not order.sent:
            traits += ("early_payments",)
        if self.sc.p_missing_event_id and rng.random() < self.sc.p_missing_event_id:
            del payload["event_id"]
            event_id = None
            traits += ("payments_without_event_id",)
        else:
            traits = self._extra(payload, traits)
        fact = Fact("payment", order.order_id, event_id, status, order.currency, cents, ts)
        return Record(self.payment_topic, order.order_id.encode(), _dumps(payload), "payments", traits, self.at, fact)

    # contract breakers
    def _dirty(self) -> Record:
        rng = self.rng
        order = self._new_order(late=False)
        ts = order.created_ms
        is_order = rng.random() < 0.5
        if is_order:
            topic, payload = self.order_topic, order.payload(self._uuid(), False, ts)
        else:
            topic = self.payment_topic
            payload = {"event_id": self._uuid(), "payment_id": self._hex_id("pay"), "order_id": order.order_id,
                       "amount_cents": order.total_cents, "currency": order.currency, "status": "captured",
                       "method": rng.choice(PAYMENT_METHODS), "event_ts": iso_ms(ts)}
        kind = rng.choice(QUARANTINE_KINDS)
        traits: tuple = ()
        reason = kind
        if kind == "malformed_json":
            text = _dumps(payload)
            variant = rng.randrange(3)
            if variant == 0:
                value, traits = text[: rng.randint(1, len(text) - 2)], ("truncated_json",)
            elif variant == 1:
                value, traits = f"{order.order_id};{order.currency};{order.total_cents}".encode(), ("not_json",)
            else:
                value, traits = b"\xff" + text, ("non_utf8",)
        else:
            if kind == "missing_field":
                field = rng.choice(ORDER_REQUIRED if is_order else tuple(f for f in PAYMENT_REQUIRED if f != "event_id"))
                del payload[field]
            elif kind == "wrong_type":
                field, bad = rng.choice(
                    [("total_amount", f"{order.total_cents / 100:.2f}"), ("user_id", rng.randint(1, 20000)),
                     ("items", f"{order.items[0][0]}x{order.items[0][1]}"), ("event_ts", ts)]
                    if is_order else
                    [("amount_cents", str(order.total_cents)), ("payment_id", rng.getrandbits(40)), ("event_ts", ts)]
                )
                payload[field] = bad
            else:
                field, bad = rng.choice(
                    [("currency", rng.choice(("JPY", "CHF", "XXX"))), ("total_amount", -order.total_cents / 100),
                     ("status", "shipped"), ("event_type", "order_shipped"), ("event_ts", "not-a-timestamp")]
                    if is_order else
                    [("currency", rng.choice(("JPY", "CHF", "XXX"))), ("amount_cents", -order.total_cents),
                     ("status", "chargeback"), ("method", "crypto"), ("event_ts", "not-a-timestamp")]
                )
                payload[field] = bad
            reason = f"{kind}:{field}"
            value = _dumps(payload)
        return Record(topic, order.order_id.encode(), value, kind, traits, self.at, None, reason)


def generate_records(
    scenario: str = "steady",
    seed: int = 0,
    start: str | datetime | None = None,
    rate: float = 0.0,
    topics: tuple[str, str] = DEFAULT_TOPICS,
    count: int | None = None,
) -> Iterator[Record]:
    """The records a run publishes, in publish order: endless unless `count` is given. `rate` (events/s, 0 = as
    fast as possible) sets the simulated clock's pace, so it is part of what makes two runs identical."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; use one of: {', '.join(SCENARIOS)}")
    stream = iter(_Stream(SCENARIOS[scenario], seed, parse_start(start), rate, topics))
    return stream if count is None else islice(stream, count)
