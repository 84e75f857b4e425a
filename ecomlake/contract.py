"""The data contract: one source of truth for the generator, the silver jobs, dbt seeds and the tests.

Order event (JSON, UTF-8, Kafka key = order_id):
  event_id (uuid str), event_type (order_created | order_cancelled), order_id, user_id,
  items [{sku, qty (int), unit_price (number)}], currency (ISO code), total_amount (number, 2 decimals),
  status (created | cancelled), event_ts (ISO-8601 UTC, e.g. 2026-11-21T10:00:00.123Z)
Payment event (JSON, Kafka key = order_id):
  event_id, payment_id, order_id, amount_cents (int >= 0), currency, status (authorized | captured | failed |
  refunded), method (card | paypal | apple_pay | bank_transfer), event_ts

Unknown extra fields are tolerated. A missing or mistyped required field, an unknown enum value or currency, a
negative amount or an unparseable timestamp breaks the contract (the row goes to silver.quarantine).
"""

from __future__ import annotations

from decimal import Decimal

ORDER_EVENT_TYPES = ("order_created", "order_cancelled")
ORDER_STATUSES = ("created", "cancelled")
PAYMENT_STATUSES = ("authorized", "captured", "failed", "refunded")
PAYMENT_METHODS = ("card", "paypal", "apple_pay", "bank_transfer")
CURRENCIES = ("USD", "EUR", "GBP")
REPORTING_CURRENCY = "USD"

ORDER_REQUIRED = ("event_id", "event_type", "order_id", "user_id", "items", "currency", "total_amount", "status", "event_ts")
PAYMENT_REQUIRED = ("event_id", "payment_id", "order_id", "amount_cents", "currency", "status", "method", "event_ts")
# A payment may arrive without event_id (silver then derives a deterministic one from its source coordinates).
PAYMENT_OPTIONAL_ID = True

MONEY_PRECISION, MONEY_SCALE = 18, 2
MONEY_TYPE = f"decimal({MONEY_PRECISION},{MONEY_SCALE})"

# Spark DDL schemas of the JSON payloads (parsing is permissive; validation happens in silver).
ORDER_EVENT_DDL = (
    "event_id string, event_type string, order_id string, user_id string, "
    f"items array<struct<sku:string,qty:int,unit_price:{MONEY_TYPE}>>, currency string, "
    f"total_amount {MONEY_TYPE}, status string, event_ts string"
)
PAYMENT_EVENT_DDL = (
    "event_id string, payment_id string, order_id string, amount_cents bigint, currency string, "
    "status string, method string, event_ts string"
)

# Tables: `<schema>.<table>` lives at ${LAKEHOUSE_URI}/<schema>/<table>.
BRONZE_SCHEMA = "bronze_raw"
BRONZE_ORDERS = "orders_raw"
BRONZE_PAYMENTS = "payments_raw"
SILVER_SCHEMA = "silver"
SILVER_ORDERS = "orders_clean"
SILVER_PAYMENTS = "payments_clean"
SILVER_ENRICHED = "order_payments_enriched"
SILVER_QUARANTINE = "quarantine"
# Every distinct valid order event (deduplicated on event_id): the history orders_clean is folded from.
SILVER_ORDER_EVENTS = "order_events"
GOLD_SCHEMA = "gold"

# Each table's columns, keys and partitioning: ecomlake/tables.py (the table registry).

# FX to the reporting currency (USD). The dbt seed dbt/seeds/fx_rates.csv holds the same rates; a test checks that.
FX_TO_USD = {"USD": Decimal("1.0000"), "EUR": Decimal("1.0800"), "GBP": Decimal("1.2700")}
