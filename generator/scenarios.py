"""Scenario knobs: how often each anomaly a real stream carries shows up. All probabilities are per order
(or per emitted record for `p_duplicate`, `p_dirty`, `p_extra_fields`, `p_missing_event_id`)."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    # how an order's payment story goes
    p_abandon: float = 0.05  # never captured (maybe authorized)
    p_cancel: float = 0.02  # order_cancelled follows (maybe after an authorization)
    p_authorize_first: float = 0.30  # authorized, then captured under the same payment_id
    p_retry: float = 0.03  # a failed attempt, then a captured one under a new payment_id
    p_split: float = 0.0  # 2-3 captures that sum to the total
    p_refund: float = 0.01  # full or partial refund after capture
    p_delayed_capture: float = 0.0  # the last capture arrives hundreds of events later (restates an old minute)
    # delivery anomalies
    p_early_payment: float = 0.0  # the first payment is published before its order
    p_late: float = 0.0  # event_ts minutes in the past (orders; payments at half the rate)
    p_duplicate: float = 0.0  # an exact byte copy is redelivered a few records later
    # contract breakers and tolerated oddities
    p_dirty: float = 0.0  # a standalone record that breaks the contract (quarantined)
    p_extra_fields: float = 0.0  # unknown extra fields on a valid event (ignored by silver)
    p_missing_event_id: float = 0.0  # a valid payment without event_id (silver derives one)
    # bursts: records [burst_from, burst_to) of every `burst_period` records
    burst_period: int = 0
    burst_from: int = 0
    burst_to: int = 0
    burst_speedup: float = 1.0  # flash_sale: the simulated clock (and paced publishing) runs this much faster
    burst_fraud: float = 0.0  # fraud_burst: share of burst orders whose payments fail 2-5 times

    def in_burst(self, step: int) -> bool:
        return self.burst_period > 0 and self.burst_from <= step % self.burst_period < self.burst_to


_STEADY = Scenario("steady", "a calm mix of orders and payments, mixed currencies, no anomalies beyond everyday ones")

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        _STEADY,
        replace(
            _STEADY, name="flash_sale", description="bursts of orders: the clock runs 6x faster for a quarter of the time",
            burst_period=1000, burst_from=150, burst_to=400, burst_speedup=6.0,
        ),
        replace(
            _STEADY, name="late_and_duplicates",
            description="redelivered duplicates, late event_ts, payments before their order, split/retried/delayed "
            "payments, cancels and refunds",
            p_cancel=0.05, p_retry=0.10, p_split=0.15, p_refund=0.05, p_delayed_capture=0.04,
            p_early_payment=0.10, p_late=0.10, p_duplicate=0.08,
        ),
        replace(
            _STEADY, name="dirty",
            description="malformed JSON, missing fields, wrong types, invalid values (quarantined), unknown extra "
            "fields and payments without event_id (valid)",
            p_dirty=0.15, p_extra_fields=0.08, p_missing_event_id=0.04,
        ),
        replace(
            _STEADY, name="fraud_burst", description="a spike of failed payments: most burst orders fail 2-5 times",
            burst_period=1000, burst_from=150, burst_to=400, burst_fraud=0.7,
        ),
    )
}
