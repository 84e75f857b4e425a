"""Synthetic silver for the gold tests (pipeline/bench/synthetic_silver.py), and what gold must then hold:
`expected_minutes` is an independent Python (Decimal) computation of gold.fct_sales_minute for the same input."""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Sequence

from ecomlake.contract import FX_TO_USD
from pipeline.bench.synthetic_silver import CENT, Order, Payment, fully_paid, minute_of, payments_by_order


def expected_minutes(orders: Sequence[Order], payments: Sequence[Payment]) -> dict[datetime, tuple[Decimal, int]]:
    """gmv (USD, exact) and paid_orders per UTC minute of order_ts, over fully paid orders only."""
    by_order = payments_by_order(payments)
    result: dict[datetime, tuple[Decimal, int]] = {}
    for order in orders:
        if fully_paid(order, by_order[order.order_id]):
            gmv, count = result.get(minute_of(order.order_ts), (Decimal("0"), 0))
            result[minute_of(order.order_ts)] = (gmv + order.total_amount * FX_TO_USD[order.currency], count + 1)
    return result


def cents(value: Decimal) -> Decimal:
    return Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)
