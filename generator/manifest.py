"""The manifest: what a run actually delivered, per topic and per kind, and what a correct silver job and gold
model must end up with. It is tallied from delivery reports, so an interrupted run describes exactly what a
consumer can read."""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

from ecomlake.contract import FX_TO_USD
from generator.events import DUPLICATE, QUARANTINE_KINDS, Record, iso_ms


class Manifest:
    def __init__(self, *, scenario: str, seed: int, start_ms: int, rate: float, topics: tuple[str, str],
                 bootstrap: str, requested_events: int | None, requested_duration_s: float | None):
        self.meta = {
            "scenario": scenario, "seed": seed, "start": iso_ms(start_ms), "rate": rate,
            "topics": {"orders": topics[0], "payments": topics[1]}, "bootstrap": bootstrap,
            "requested_events": requested_events, "requested_duration_s": requested_duration_s,
        }
        self.topics = topics
        self.sent = 0
        self.per_topic: dict[str, dict[str, Any]] = {
            t: {"sent": 0, "kinds": Counter(), "reasons": Counter(), "digest": 0} for t in topics}
        self.kinds: Counter = Counter()
        self.orders: dict[str, tuple[int, str, str, int]] = {}  # order_id -> latest (ts_ms, status, currency, cents)
        self.paid_cents: Counter = Counter()  # order_id -> captured - refunded, in the order's currency
        self.payment_rows = 0

    def add(self, record: Record) -> None:
        """Count one delivered record."""
        self.sent += 1
        topic = self.per_topic[record.topic]
        topic["sent"] += 1
        topic["kinds"][record.kind] += 1
        topic["kinds"].update(record.traits)
        self.kinds[record.kind] += 1
        self.kinds.update(record.traits)
        topic["digest"] = (topic["digest"] + int.from_bytes(hashlib.sha256(record.value).digest(), "big")) % (1 << 256)
        if record.reason:
            topic["reasons"][record.reason] += 1
        fact = record.fact
        if fact is None:
            return
        if fact.entity == "order":
            latest = self.orders.get(fact.order_id)
            if latest is None or fact.ts_ms > latest[0]:
                self.orders[fact.order_id] = (fact.ts_ms, fact.status, fact.currency, fact.cents)
        else:
            self.payment_rows += 1
            if fact.status == "captured":
                self.paid_cents[fact.order_id] += fact.cents
            elif fact.status == "refunded":
                self.paid_cents[fact.order_id] -= fact.cents

    def expected(self) -> dict:
        """What silver and gold must contain after processing exactly the delivered records."""
        per = {t: self.per_topic[t]["kinds"] for t in self.topics}
        fully_paid = [(cur, cents) for oid, (_, status, cur, cents) in self.orders.items()
                      if status != "cancelled" and self.paid_cents[oid] >= cents]
        gmv = sum((Decimal(cents) / 100 * FX_TO_USD[cur] for cur, cents in fully_paid), Decimal(0))
        quarantined = {t: sum(per[t][k] for k in QUARANTINE_KINDS) for t in self.topics}
        return {
            "valid_unique": {t: self.per_topic[t]["sent"] - per[t][DUPLICATE] - quarantined[t] for t in self.topics},
            "duplicates": {t: per[t][DUPLICATE] for t in self.topics},
            "quarantined": quarantined,
            "quarantine_reasons": {t: dict(sorted(self.per_topic[t]["reasons"].items())) for t in self.topics},
            "orders_clean_rows": len(self.orders),
            "payments_clean_rows": self.payment_rows,
            "order_payments_enriched_rows": len(self.orders),
            "quarantine_rows": sum(quarantined.values()),
            "cancelled_orders": sum(1 for _, status, _, _ in self.orders.values() if status == "cancelled"),
            "fully_paid_orders": len(fully_paid),
            "gmv_usd_exact": str(gmv.quantize(Decimal("0.0001"))),
        }

    def to_dict(self, **run: object) -> dict:
        return {
            **self.meta,
            **run,
            "sent": self.sent,
            "kinds": dict(sorted(self.kinds.items())),
            "per_topic": {
                t: {"sent": v["sent"], "kinds": dict(sorted(v["kinds"].items())), "value_digest": f"{v['digest']:064x}"}
                for t, v in self.per_topic.items()
            },
            "expected": self.expected(),
        }


def value_digest(values) -> str:
    """Order-independent digest of a topic's payloads (sum of sha256 mod 2^256), as in `per_topic.value_digest`."""
    total = 0
    for value in values:
        total = (total + int.from_bytes(hashlib.sha256(value).digest(), "big")) % (1 << 256)
    return f"{total:064x}"


def write(manifest: dict, path: str | os.PathLike) -> Path:
    """Write atomically, so a reader never sees half a manifest."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    tmp.replace(target)
    return target
