"""The Metabase provisioner (serving/metabase.py) against a local HTTP stand-in.

The stand-in is NOT Metabase: a small http.server on 127.0.0.1 that implements only the endpoints the provisioner
calls, with the request and response shapes of Metabase v0.56 (the pinned image), keeps their objects in memory
and records every call. It checks what we send (setup token, session header, the Trino database, the SQL of the
questions, the dashboard layout) and that a second run creates and changes nothing. Real Metabase is only run
by the cluster stack (docker compose), which cannot run on these machines.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ecomlake.errors import EcomlakeError
from ecomlake.tables import in_layer
from serving.metabase import DASHBOARD_NAME, DATABASE_NAME, QUESTIONS, MetabaseConfig, provision

REPO = Path(__file__).resolve().parent.parent
SESSION = "session-0001"
SETUP_TOKEN = "setup-token-123"


class MetabaseStandIn:
    """In-memory state of the stand-in; `calls` lists (method, path, body, session header) in order."""

    def __init__(self, healthy_after: int = 0):
        self.calls: list[tuple[str, str, object, str | None]] = []
        self.users: dict[str, str] = {}
        self.databases: list[dict] = []
        self.synced: list[int] = []
        self.cards: list[dict] = []
        self.dashboards: list[dict] = []
        self.health_checks_left = healthy_after
        self.lock = threading.Lock()

    def writes(self) -> list[tuple[str, str]]:
        return [(m, p) for m, p, _, _ in self.calls if m in ("POST", "PUT", "DELETE") and p != "/api/session"
                and not p.endswith("/sync_schema")]

    def handle(self, method: str, path: str, body, session: str | None) -> tuple[int, object]:
        with self.lock:
            self.calls.append((method, path, body, session))
            if path == "/api/health":
                if self.health_checks_left > 0:
                    self.health_checks_left -= 1
                    return 503, {"status": "initializing"}
                return 200, {"status": "ok"}
            if (method, path) == ("GET", "/api/session/properties"):
                set_up = bool(self.users)
                return 200, {"setup-token": None if set_up else SETUP_TOKEN, "has-user-setup": set_up}
            if (method, path) == ("POST", "/api/setup"):
                if self.users or body.get("token") != SETUP_TOKEN:
                    return 403, {"message": "Token does not match the setup token."}
                user = body["user"]
                if not body.get("prefs", {}).get("site_name"):
                    return 400, {"errors": {"site_name": "value must be a non-blank string."}}
                self.users[user["email"]] = user["password"]
                return 200, {"id": SESSION}
            if (method, path) == ("POST", "/api/session"):
                if self.users.get(body.get("username")) != body.get("password"):
                    return 401, {"errors": {"password": "did not match stored password"}}
                return 200, {"id": SESSION}
            if session != SESSION:
                return 401, "Unauthenticated"
            return self.authed(method, path, body)

    def authed(self, method: str, path: str, body) -> tuple[int, object]:
        if (method, path) == ("GET", "/api/database"):
            return 200, {"data": self.databases, "total": len(self.databases)}
        if (method, path) == ("POST", "/api/database"):
            if body.get("engine") != "starburst":
                return 400, {"message": f"unknown engine {body.get('engine')}"}
            db = {"id": len(self.databases) + 1, **body}
            self.databases.append(db)
            return 200, db
        if method == "POST" and (m := re.fullmatch(r"/api/database/(\d+)/sync_schema", path)):
            self.synced.append(int(m.group(1)))
            return 200, {"status": "ok"}
        if (method, path) == ("GET", "/api/card?f=all"):
            return 200, self.cards
        if (method, path) == ("POST", "/api/card"):
            card = {"id": 100 + len(self.cards), "archived": False, **body}
            self.cards.append(card)
            return 200, card
        if method == "PUT" and (m := re.fullmatch(r"/api/card/(\d+)", path)):
            card = next(c for c in self.cards if c["id"] == int(m.group(1)))
            card.update(body)
            return 200, card
        if (method, path) == ("GET", "/api/dashboard/"):
            return 200, [{k: v for k, v in d.items() if k != "dashcards"} for d in self.dashboards]
        if (method, path) == ("POST", "/api/dashboard"):
            dashboard = {"id": 7 + len(self.dashboards), "archived": False, "dashcards": [], **body}
            self.dashboards.append(dashboard)
            return 200, dashboard
        if m := re.fullmatch(r"/api/dashboard/(\d+)", path):
            dashboard = next((d for d in self.dashboards if d["id"] == int(m.group(1))), None)
            if dashboard is None:
                return 404, "Not found."
            if method == "GET":
                return 200, dashboard
            if method == "PUT":
                next_id = 1000 + sum(len(d["dashcards"]) for d in self.dashboards)
                placed = []
                for index, dashcard in enumerate(body["dashcards"]):
                    dashcard = dict(dashcard)
                    if dashcard["id"] < 0:
                        dashcard["id"] = next_id + index
                    placed.append(dashcard)
                dashboard["dashcards"] = placed
                return 200, dashboard
        return 404, f"stand-in has no {method} {path}"


@pytest.fixture
def metabase():
    state = MetabaseStandIn()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            status, payload = state.handle(method, self.path, body, self.headers.get("X-Metabase-Session"))
            data = (json.dumps(payload) if not isinstance(payload, str) else payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json" if not isinstance(payload, str) else "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):  # noqa: N802
            self._serve("GET")

        def do_POST(self):  # noqa: N802
            self._serve("POST")

        def do_PUT(self):  # noqa: N802
            self._serve("PUT")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


def config_for(metabase, **overrides) -> MetabaseConfig:
    values = dict(url=metabase.url, public_url="http://localhost:3000", admin_email="admin@ecomlake.local",
                  admin_password="Secret-Pass-1", trino_host="trino", trino_port=8080, trino_user="metabase",
                  trino_catalog="delta")
    values.update(overrides)
    return MetabaseConfig(**values)


def test_first_run_sets_up_metabase_adds_trino_and_builds_the_dashboard(metabase):
    outcome = provision(config_for(metabase))

    setup = [body for m, p, body, _ in metabase.calls if (m, p) == ("POST", "/api/setup")]
    assert len(setup) == 1 and setup[0]["token"] == SETUP_TOKEN
    assert setup[0]["user"]["email"] == "admin@ecomlake.local" and setup[0]["user"]["password"] == "Secret-Pass-1"

    assert len(metabase.databases) == 1
    db = metabase.databases[0]
    assert db["name"] == DATABASE_NAME and db["engine"] == "starburst"
    assert db["details"] == {"host": "trino", "port": 8080, "catalog": "delta", "user": "metabase", "ssl": False}
    assert metabase.synced == [db["id"]]

    assert [c["name"] for c in metabase.cards] == [q.name for q in QUESTIONS]
    for card in metabase.cards:
        assert card["dataset_query"]["type"] == "native" and card["dataset_query"]["database"] == db["id"]

    (dashboard,) = metabase.dashboards
    assert dashboard["name"] == DASHBOARD_NAME
    placed = {dc["card_id"]: (dc["col"], dc["row"], dc["size_x"], dc["size_y"]) for dc in dashboard["dashcards"]}
    assert placed == {card["id"]: q.layout for card, q in zip(metabase.cards, QUESTIONS)}
    cells = {(c + dx, r + dy) for c, r, w, h in placed.values() for dx in range(w) for dy in range(h)}
    assert len(cells) == sum(w * h for _, _, w, h in placed.values()), "dashboard cards overlap"
    assert all(c + w <= 24 for c, _, w, _ in placed.values())

    assert outcome.dashboard_url == f"http://localhost:3000/dashboard/{dashboard['id']}#refresh=10"
    assert any("created dashboard" in line for line in outcome.changes)


def test_every_authenticated_call_carries_the_session_of_the_admin_login(metabase):
    provision(config_for(metabase))
    open_paths = {"/api/health", "/api/session/properties", "/api/setup", "/api/session"}
    authed = [(m, p, s) for m, p, _, s in metabase.calls if p not in open_paths]
    assert authed and all(s == SESSION for _, _, s in authed)


def test_second_run_creates_and_changes_nothing(metabase):
    first = provision(config_for(metabase))
    calls_before = len(metabase.calls)
    writes_before = metabase.writes()

    second = provision(config_for(metabase))

    assert second.dashboard_url == first.dashboard_url
    assert second.changes == []
    new_writes = metabase.writes()[len(writes_before):]
    assert new_writes == [], f"second run wrote {new_writes}"
    assert ("POST", "/api/setup") not in [(m, p) for m, p, _, _ in metabase.calls[calls_before:]]
    assert len(metabase.databases) == 1 and len(metabase.cards) == len(QUESTIONS) and len(metabase.dashboards) == 1
    assert len(metabase.dashboards[0]["dashcards"]) == len(QUESTIONS)


def test_a_question_edited_in_metabase_is_put_back_and_nothing_is_duplicated(metabase):
    provision(config_for(metabase))
    metabase.cards[0]["dataset_query"]["native"]["query"] = "SELECT 1"
    metabase.cards[0]["display"] = "table"

    outcome = provision(config_for(metabase))

    assert outcome.changes == [f"restored question {QUESTIONS[0].name!r}"]
    assert metabase.cards[0]["dataset_query"]["native"]["query"] == QUESTIONS[0].sql
    assert metabase.cards[0]["display"] == QUESTIONS[0].display
    assert len(metabase.cards) == len(QUESTIONS)


def test_waits_for_metabase_to_become_healthy(metabase):
    metabase.health_checks_left = 2
    outcome = provision(config_for(metabase), wait_s=30)
    assert outcome.dashboard_url.endswith("#refresh=10")
    assert [p for _, p, _, _ in metabase.calls[:3]] == ["/api/health"] * 3


def test_unreachable_metabase_fails_with_one_clear_line():
    with pytest.raises(EcomlakeError, match=r"Metabase at http://127\.0\.0\.1:9 was not healthy within 0s"):
        provision(MetabaseConfig(url="http://127.0.0.1:9"), wait_s=0)


def test_wrong_admin_password_on_a_provisioned_metabase_is_reported(metabase):
    provision(config_for(metabase))
    with pytest.raises(EcomlakeError, match=r"POST /api/session answered 401"):
        provision(config_for(metabase, admin_password="not-the-password"))


def test_questions_read_tables_the_pipeline_creates():
    """The SQL names gold models dbt builds and silver tables Spark writes as <schema>.<table> (catalog: the connection's)."""
    gold_models = {p.stem for p in (REPO / "dbt" / "models" / "gold").glob("*.sql")}
    silver_tables = {t.name for t in in_layer("silver")}
    for question in QUESTIONS:
        tables = re.findall(r"\b(?:FROM|JOIN)\s+(?:delta\.)?(\w+)\.(\w+)", question.sql, re.I)
        assert tables, question.name
        for schema, table in tables:
            assert (schema == "gold" and table in gold_models) or (schema == "silver" and table in silver_tables), \
                (question.name, schema, table)
    sources = " ".join(q.sql for q in QUESTIONS)
    assert "vw_sales_last_60min" in sources and "order_payments_enriched" in sources


def test_cli_prints_the_dashboard_url_with_auto_refresh(metabase):
    env = {"PATH": "/usr/bin:/bin", "MB_URL": metabase.url, "MB_PUBLIC_URL": "http://localhost:3000",
           "MB_ADMIN_EMAIL": "admin@ecomlake.local", "MB_ADMIN_PASSWORD": "Secret-Pass-1"}
    run = subprocess.run([sys.executable, "-m", "pipeline.cli", "metabase", "--wait", "10"], env=env,
                         capture_output=True, text=True, timeout=120, cwd=REPO)
    assert run.returncode == 0, run.stderr
    dashboard_id = metabase.dashboards[0]["id"]
    assert f"http://localhost:3000/dashboard/{dashboard_id}#refresh=10" in run.stdout
    assert "auto-refresh every 10s" in run.stdout

    again = subprocess.run([sys.executable, "-m", "pipeline.cli", "metabase"], env=env,
                           capture_output=True, text=True, timeout=120, cwd=REPO)
    assert again.returncode == 0, again.stderr
    assert "already provisioned: nothing changed" in again.stdout


def test_config_comes_from_the_environment():
    config = MetabaseConfig.from_env({"MB_URL": "http://metabase:3000/", "MB_ADMIN_EMAIL": "a@b.c",
                                      "MB_ADMIN_PASSWORD": "pw", "MB_TRINO_PORT": "8081"})
    assert config.url == "http://metabase:3000" and config.public_url == "http://metabase:3000"
    assert (config.admin_email, config.admin_password, config.trino_port) == ("a@b.c", "pw", 8081)
    with pytest.raises(EcomlakeError, match="MB_TRINO_PORT"):
        MetabaseConfig.from_env({"MB_TRINO_PORT": "eighty"})


def test_the_dashboard_refreshes_as_often_as_configured(metabase):
    """Metabase's #refresh= takes seconds (its menu stops at whole minutes); gold lands builds seconds apart, so the
    default is 10 s and MB_REFRESH_SECONDS changes it."""
    assert MetabaseConfig.from_env({}).refresh_seconds == 10
    config = MetabaseConfig.from_env({"MB_URL": metabase.url, "MB_ADMIN_PASSWORD": "Secret-Pass-1",
                                      "MB_REFRESH_SECONDS": "30"})
    assert provision(config).dashboard_url.endswith("#refresh=30")
    for bad in ("0", "ten"):
        with pytest.raises(EcomlakeError, match=r"^MB_REFRESH_SECONDS="):
            MetabaseConfig.from_env({"MB_REFRESH_SECONDS": bad})
