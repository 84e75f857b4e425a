"""`ecomlake metabase`: the cluster stack's Metabase, provisioned as code through its REST API.

Completes the first-run setup (admin from MB_ADMIN_EMAIL / MB_ADMIN_PASSWORD), logs in, adds Trino as a
database (engine "starburst": the Starburst/Trino driver Metabase ships since 0.54), asks it to sync, creates the
questions and the dashboard, and prints the dashboard URL with Metabase's auto-refresh fragment (#refresh=N: every N
seconds, MB_REFRESH_SECONDS, default 10, so each build of the continuous gold service shows within seconds).
Everything is found by name before anything is created, and a question whose SQL or chart drifted from the
definition here is put back, so a rerun on a provisioned Metabase creates and changes nothing.
Written against Metabase v0.56 (docker-compose.yml pins the image).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from typing import Any, Sequence

from ecomlake.errors import EcomlakeError
from ecomlake.settings import MetabaseConfig
from serving import queries

DATABASE_NAME = "ecomlake (Trino)"
DASHBOARD_NAME = "ecomlake: live sales"
DASHBOARD_DESCRIPTION = ("The last hour from gold: GMV (USD), paid orders and average order value per minute, payment "
                         "attempts and failure rate, cancellations and refunds, GMV by currency and payments by "
                         "method, quarantine by reason; the share of fully paid orders, from silver. The same "
                         "questions as the embedded stack's live dashboard. Open it with the #refresh=N fragment the "
                         "provisioner prints to have it refresh itself every N seconds.")


@dataclass(frozen=True)
class Question:
    name: str
    description: str
    sql: str
    display: str
    visualization_settings: dict
    # Position on the dashboard's 24-column grid: col, row, size_x, size_y.
    layout: tuple[int, int, int, int]


QUESTIONS: tuple[Question, ...] = (
    # The same trino/queries files as the live dashboard (serving/summary.py PANELS), so both show the same numbers.
    Question(
        name="Headline figures (last 60 min)",
        description="GMV (USD), paid orders, average order value, payment attempts, failures, failure rate, refunds "
                    "and cancellations over the last hour.",
        sql=queries.load("kpis_last_60min").sql,
        display="table",
        visualization_settings={},
        layout=(0, 0, 24, 3),
    ),
    Question(
        name="GMV per minute (USD, last 60 min)",
        description="Sum of fully paid orders' totals converted to USD, per UTC minute of order time.",
        sql=queries.load("recent_sales").sql,
        display="line",
        visualization_settings={"graph.dimensions": ["minute_bucket"], "graph.metrics": ["gmv_usd"]},
        layout=(0, 3, 16, 6),
    ),
    Question(
        name="Fully paid ratio (last 60 min)",
        description="Share of the last hour's orders whose captured minus refunded payments cover the total.",
        sql=queries.load("fully_paid_ratio").sql,
        display="scalar",
        visualization_settings={"scalar.field": "fully_paid_pct",
                                "column_settings": {'["name","fully_paid_pct"]': {"suffix": " %"}}},
        layout=(16, 3, 8, 6),
    ),
    Question(
        name="Paid orders per minute (last 60 min)",
        description="Number of fully paid orders per UTC minute of order time.",
        sql=queries.load("recent_sales").sql,
        display="bar",
        visualization_settings={"graph.dimensions": ["minute_bucket"], "graph.metrics": ["paid_orders"]},
        layout=(0, 9, 12, 6),
    ),
    Question(
        name="Average order value per minute (USD, last 60 min)",
        description="GMV divided by paid orders, per UTC minute of order time.",
        sql=queries.load("recent_sales").sql,
        display="line",
        visualization_settings={"graph.dimensions": ["minute_bucket"], "graph.metrics": ["aov_usd"]},
        layout=(12, 9, 12, 6),
    ),
    Question(
        name="Payment failure rate per minute (last 60 min)",
        description="Failed / (captured + failed) payment events per UTC minute of payment time; a fraud burst "
                    "spikes here.",
        sql=queries.load("payments_per_minute").sql,
        display="combo",
        visualization_settings={"graph.dimensions": ["minute_bucket"],
                                "graph.metrics": ["attempts", "failures", "failure_rate_pct"]},
        layout=(0, 15, 16, 6),
    ),
    Question(
        name="Quarantine by reason (last 60 min)",
        description="Events that broke the data contract, per reason code.",
        sql=queries.load("quarantine_by_reason").sql,
        display="bar",
        visualization_settings={"graph.dimensions": ["reason_code"], "graph.metrics": ["events"]},
        layout=(16, 15, 8, 6),
    ),
    Question(
        name="Cancellations and refunds per minute (last 60 min)",
        description="Orders cancelled (minute of cancellation) and refund events (minute of payment time).",
        sql=queries.load("cancellations_refunds_per_minute").sql,
        display="bar",
        visualization_settings={"graph.dimensions": ["minute_bucket"],
                                "graph.metrics": ["cancelled_orders", "refunds"]},
        layout=(0, 21, 8, 6),
    ),
    Question(
        name="GMV by currency (USD, last 60 min)",
        description="Fully paid orders' GMV per order currency, converted to USD with the fx_rates seed.",
        sql=queries.load("gmv_by_currency").sql,
        display="bar",
        visualization_settings={"graph.dimensions": ["currency"], "graph.metrics": ["gmv_usd"]},
        layout=(8, 21, 8, 6),
    ),
    Question(
        name="Captured payments by method (USD, last 60 min)",
        description="Captured and refunded amounts in USD per payment method.",
        sql=queries.load("payments_by_method").sql,
        display="bar",
        visualization_settings={"graph.dimensions": ["payment_method"],
                                "graph.metrics": ["captured_usd", "refunded_usd"]},
        layout=(16, 21, 8, 6),
    ),
)



class MetabaseClient:
    """Thin JSON client: one line per failure, naming the call and Metabase's answer."""

    def __init__(self, base_url: str, timeout: float = 30.0):
        import requests

        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.http = requests.Session()

    def call(self, method: str, path: str, body: Any = None) -> Any:
        import requests

        try:
            response = self.http.request(method, self.base_url + path, json=body, timeout=self.timeout)
        except requests.RequestException as err:
            raise EcomlakeError(f"Metabase {method} {path}: {err.__class__.__name__}: {err}") from None
        if not response.ok:
            raise EcomlakeError(f"Metabase {method} {path} answered {response.status_code}: {response.text[:300]}")
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            return response.text

    def healthy(self) -> bool:
        import requests

        try:
            response = self.http.get(self.base_url + "/api/health", timeout=5)
        except requests.RequestException:
            return False
        return response.ok

    def login(self, email: str, password: str) -> None:
        session = self.call("POST", "/api/session", {"username": email, "password": password})
        self.http.headers["X-Metabase-Session"] = session["id"]


def _items(payload: Any) -> list[dict]:
    """Metabase list endpoints answer a bare list or {"data": [...]}, depending on the endpoint and version."""
    if isinstance(payload, dict):
        payload = payload.get("data", [])
    return list(payload or [])


def _find(items: list[dict], name: str) -> dict | None:
    return next((item for item in items if item.get("name") == name and not item.get("archived")), None)


def wait_until_healthy(client: MetabaseClient, wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    while not client.healthy():
        if time.monotonic() >= deadline:
            raise EcomlakeError(f"Metabase at {client.base_url} was not healthy within {wait_s:.0f}s")
        print(f"waiting for Metabase at {client.base_url} ...", file=sys.stderr, flush=True)
        time.sleep(min(1.0, max(0.1, deadline - time.monotonic())))


def ensure_setup(client: MetabaseClient, config: MetabaseConfig) -> bool:
    """Create the admin on a fresh Metabase. True if the setup ran now."""
    properties = client.call("GET", "/api/session/properties")
    token = properties.get("setup-token")
    if properties.get("has-user-setup") or not token:
        return False
    client.call("POST", "/api/setup", {
        "token": token,
        "user": {"email": config.admin_email, "password": config.admin_password,
                 "first_name": "ecomlake", "last_name": "admin", "site_name": config.site_name},
        "prefs": {"site_name": config.site_name, "site_locale": "en", "allow_tracking": False},
    })
    return True


def database_details(config: MetabaseConfig) -> dict:
    return {"host": config.trino_host, "port": config.trino_port, "catalog": config.trino_catalog,
            "user": config.trino_user, "ssl": False}


def ensure_database(client: MetabaseClient, config: MetabaseConfig) -> tuple[int, bool]:
    existing = _find(_items(client.call("GET", "/api/database")), DATABASE_NAME)
    if existing:
        return existing["id"], False
    created = client.call("POST", "/api/database", {
        "name": DATABASE_NAME, "engine": "starburst", "details": database_details(config),
        "is_full_sync": True, "auto_run_queries": True,
    })
    return created["id"], True


def card_body(question: Question, database_id: int) -> dict:
    return {
        "name": question.name,
        "description": question.description,
        "type": "question",
        "display": question.display,
        "dataset_query": {"type": "native", "database": database_id,
                          "native": {"query": question.sql, "template-tags": {}}},
        "visualization_settings": question.visualization_settings,
        "collection_id": None,
    }


def _card_matches(card: dict, question: Question, database_id: int) -> bool:
    query = card.get("dataset_query") or {}
    return (query.get("database") == database_id
            and (query.get("native") or {}).get("query") == question.sql
            and card.get("display") == question.display
            and (card.get("visualization_settings") or {}) == question.visualization_settings)


def ensure_cards(client: MetabaseClient, database_id: int) -> tuple[dict[str, int], list[str], list[str]]:
    """Question name -> card id, plus the names created and the names put back to their definition."""
    cards = _items(client.call("GET", "/api/card?f=all"))
    ids: dict[str, int] = {}
    created: list[str] = []
    updated: list[str] = []
    for question in QUESTIONS:
        card = _find(cards, question.name)
        if card is None:
            card = client.call("POST", "/api/card", card_body(question, database_id))
            created.append(question.name)
        elif not _card_matches(card, question, database_id):
            client.call("PUT", f"/api/card/{card['id']}", card_body(question, database_id))
            updated.append(question.name)
        ids[question.name] = card["id"]
    return ids, created, updated


def ensure_dashboard(client: MetabaseClient, card_ids: dict[str, int]) -> tuple[int, bool, bool]:
    """Dashboard id, whether it was created, whether its cards were (re)laid out."""
    dashboard = _find(_items(client.call("GET", "/api/dashboard/")), DASHBOARD_NAME)
    created = dashboard is None
    if dashboard is None:
        dashboard = client.call("POST", "/api/dashboard", {
            "name": DASHBOARD_NAME, "description": DASHBOARD_DESCRIPTION, "collection_id": None})
    dashboard_id = dashboard["id"]
    current = client.call("GET", f"/api/dashboard/{dashboard_id}")
    dashcards = list(current.get("dashcards") or current.get("ordered_cards") or [])
    by_card = {dc.get("card_id"): dc for dc in dashcards}
    ours = set(card_ids.values())
    wanted: list[dict] = [dc for dc in dashcards if dc.get("card_id") not in ours]
    changed = False
    for index, question in enumerate(QUESTIONS, start=1):
        col, row, size_x, size_y = question.layout
        card_id = card_ids[question.name]
        existing = by_card.get(card_id)
        placed = {"col": col, "row": row, "size_x": size_x, "size_y": size_y}
        if existing is None:
            wanted.append({"id": -index, "card_id": card_id, **placed, "series": [],
                           "parameter_mappings": [], "visualization_settings": {}})
            changed = True
        else:
            if any(existing.get(key) != value for key, value in placed.items()):
                changed = True
            wanted.append({**existing, **placed})
    if changed:
        client.call("PUT", f"/api/dashboard/{dashboard_id}", {"dashcards": wanted})
    return dashboard_id, created, changed


@dataclass
class Outcome:
    dashboard_url: str
    changes: list[str]


def provision(config: MetabaseConfig, wait_s: float = 0.0) -> Outcome:
    client = MetabaseClient(config.url)
    wait_until_healthy(client, wait_s)
    changes: list[str] = []
    if ensure_setup(client, config):
        changes.append(f"completed setup, admin {config.admin_email}")
    client.login(config.admin_email, config.admin_password)
    database_id, created = ensure_database(client, config)
    if created:
        changes.append(f"added database {DATABASE_NAME!r} (starburst -> {config.trino_host}:{config.trino_port}, "
                       f"catalog {config.trino_catalog})")
    client.call("POST", f"/api/database/{database_id}/sync_schema")
    card_ids, cards_created, cards_updated = ensure_cards(client, database_id)
    changes += [f"created question {name!r}" for name in cards_created]
    changes += [f"restored question {name!r}" for name in cards_updated]
    dashboard_id, dashboard_created, laid_out = ensure_dashboard(client, card_ids)
    if dashboard_created:
        changes.append(f"created dashboard {DASHBOARD_NAME!r}")
    if laid_out:
        changes.append(f"placed {len(QUESTIONS)} questions on the dashboard")
    url = f"{config.public_url}/dashboard/{dashboard_id}#refresh={config.refresh_seconds}"
    return Outcome(dashboard_url=url, changes=changes)


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="ecomlake metabase",
        description="Provision Metabase (MB_URL) idempotently: setup, the Trino database, the questions and an "
        "auto-refreshing dashboard; prints the dashboard URL.")
    parser.add_argument("--wait", type=float, default=0.0, metavar="S",
                        help="wait up to S seconds for Metabase to become healthy (default: fail at once)")
    args = parser.parse_args(argv)
    config = MetabaseConfig.from_env()
    outcome = provision(config, wait_s=args.wait)
    for line in outcome.changes or ["already provisioned: nothing changed"]:
        print(line)
    print(f"dashboard (auto-refresh every {config.refresh_seconds}s): {outcome.dashboard_url}")
    return 0
