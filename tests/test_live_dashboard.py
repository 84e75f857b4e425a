"""The live dashboard (`ecomlake dashboard`, serving/live.py) in a real headless Chromium (Debian's `chromium`, driven
by playwright from PyPI), over gold built by dbt-duckdb from silver written with delta-rs.

Silver comes from the generator's own events (generator/events.py: `steady`, then a `fraud_burst`), folded into the
silver tables by pipeline/bench/synthetic_silver.py, so no broker or Spark is needed. The page must show gold's
figures, follow a new gold build within seconds, show the failure rate rising during the fraud burst, say what is
wrong in bad states, and reading must never disturb gold's builds.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
import urllib.request
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from conftest import REPO
from ecomlake.settings import Settings
from fixtures_kafka import skip_or_fail
from generator.events import generate_records
from gold import build as gold
from pipeline.bench.synthetic_silver import UTC, Order, Payment, SilverLake, minute_of
from serving import queries
from serving.live import DashboardServer
from serving.summary import PANELS, SummaryReader

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
NOW = minute_of(datetime.now(UTC))


@pytest.fixture(scope="module", autouse=True)
def wall_clock():
    """Scenario minutes count from when this module starts, not from collection: in a full run that is up to
    40 minutes earlier, which would move "recent" rows out of gold's 60-minute views."""
    global NOW
    NOW = minute_of(datetime.now(UTC))


def make_settings(root: Path) -> Settings:
    return Settings.from_env({"LAKEHOUSE_URI": str(root / "lakehouse"), "ECOMLAKE_RUN_DIR": str(root / "run")})


def generated(scenario: str, seed: int, start: datetime, count: int) -> tuple[list[Order], list[Payment]]:
    """The generator's valid first-seen events of a run, as the orders and payments silver would hold."""
    orders: dict[str, Order] = {}
    payments: list[Payment] = []
    for record in generate_records(scenario, seed=seed, start=start, count=count):
        if record.fact is None:
            continue
        event = json.loads(record.value)
        ts = datetime.fromisoformat(event["event_ts"].replace("Z", "+00:00"))
        if record.fact.entity == "order":
            known = orders.get(event["order_id"])
            order_ts = known.order_ts if known and event["status"] == "cancelled" else ts
            orders[event["order_id"]] = Order(event["order_id"], order_ts, event["currency"],
                                              Decimal(str(event["total_amount"])).quantize(Decimal("0.01")),
                                              event["status"], event["user_id"])
        else:
            payments.append(Payment(event["order_id"], Decimal(event["amount_cents"]) / 100, ts, event["status"],
                                    event["currency"], event["method"], event["event_id"]))
    return list(orders.values()), payments


def gold_figures(settings: Settings) -> dict[str, Decimal | int]:
    """The last hour's headline figures computed straight from gold's tables (not through trino/queries)."""
    since = datetime.now(UTC) - timedelta(minutes=60)
    with duckdb.connect(settings.warehouse_path, read_only=True) as con:
        gmv, paid = con.execute("select sum(round(gmv, 2)), sum(paid_orders) from gold.fct_sales_minute "
                                "where minute_bucket > ?", [since]).fetchone()
        attempts, failures = con.execute("select sum(attempts), sum(failures) from gold.fct_payments_minute "
                                         "where minute_bucket > ?", [since]).fetchone()
    return {"gmv": Decimal(gmv), "paid_orders": int(paid), "attempts": int(attempts), "failures": int(failures),
            "failure_rate": (Decimal(100 * failures) / attempts).quantize(Decimal("0.01"))}


def number(text: str) -> Decimal:
    return Decimal(text.replace("$", "").replace(",", "").replace("%", "").strip())


def api_summary(url: str) -> dict:
    with urllib.request.urlopen(url + "api/summary", timeout=10) as response:
        assert response.status == 200
        return json.loads(response.read())


@pytest.fixture(scope="module")
def browser():
    """Headless Debian chromium through playwright; one line (skip, or failure under CI=true) when either is missing."""
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        skip_or_fail("the live dashboard test needs Debian's chromium (`make test-deps` installs it as root)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_or_fail("the live dashboard test needs playwright (`pip install -e '.[dev]'`)")
    with sync_playwright() as playwright:
        # playwright gives every launch a fresh temporary profile (the --user-data-dir).
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1700})
    tab = context.new_page()
    tab.route(lambda url: not url.startswith("http://127.0.0.1"), lambda route: route.abort())  # 127.0.0.1 only
    yield tab
    context.close()


def kpis(page) -> dict[str, str]:
    return {name: page.inner_text(f"#kpi-{name}") for name in ("gmv", "paid-orders", "attempts", "failures",
                                                                 "failure-rate")}


def wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout_s}s: {what}")


def test_page_shows_gold_follows_new_builds_and_the_fraud_burst(tmp_path, page):
    settings = make_settings(tmp_path)
    lake = SilverLake(settings.lakehouse_uri)
    orders, payments = generated("steady", seed=1, start=NOW - timedelta(minutes=40), count=1500)
    lake.write(orders, payments)
    assert gold.build(settings, quiet=True).success
    assert Path(settings.warehouse_read_path).exists()
    server = DashboardServer(settings, port=0, refresh_s=1.0).start()
    try:
        page.goto(server.url)
        page.wait_for_function("document.querySelector('#kpi-gmv') && "
                               "document.querySelector('#kpi-gmv').innerText.startsWith('$')", timeout=30_000)
        expected = gold_figures(settings)
        shown = kpis(page)
        assert number(shown["gmv"]) == expected["gmv"] > 0
        assert number(shown["paid-orders"]) == expected["paid_orders"]
        assert number(shown["attempts"]) == expected["attempts"]
        assert number(shown["failure-rate"]) == expected["failure_rate"] < 10
        assert "Live" in page.inner_text("#status")
        api = api_summary(server.url)
        row = dict(zip(api["questions"]["kpis_last_60min"]["columns"], api["questions"]["kpis_last_60min"]["rows"][0]))
        assert Decimal(str(row["gmv_usd"])) == expected["gmv"] and row["failures"] == expected["failures"]
        assert api["freshness"]["silver"]["lag_s"] is not None and api["freshness"]["gold"]["lag_s"] is not None
        assert page.locator("#graph-payments .trace").count() >= 3  # attempts, failures, failure rate

        # A fraud burst lands in silver and gold builds: the page follows within a few seconds.
        burst_orders, burst_payments = generated("fraud_burst", seed=2, start=NOW - timedelta(minutes=8), count=1500)
        lake.write(orders + burst_orders, payments + burst_payments)
        assert gold.build(settings, quiet=True).success
        published = time.monotonic()
        after = gold_figures(settings)
        wait_for(lambda: number(page.inner_text("#kpi-failure-rate")) == after["failure_rate"], 6,
                 f"the failure rate to show {after['failure_rate']}")
        assert time.monotonic() - published < 6
        shown = kpis(page)
        assert after["failure_rate"] > 2 * expected["failure_rate"]
        assert number(shown["failures"]) == after["failures"] and number(shown["gmv"]) == after["gmv"]
        rates = page.evaluate("document.querySelector('#graph-payments .js-plotly-plot').data[2].y")
        assert max(rates) > 30, rates  # the burst minutes spike on the failure-rate line
        time.sleep(1.5)  # let the charts finish drawing
        shot = tmp_path / "live-dashboard.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 20_000
        print(f"screenshot: {shot}")
    finally:
        server.stop()


def test_bad_states_are_one_clear_message_on_the_page(tmp_path, page):
    settings = make_settings(tmp_path)
    server = DashboardServer(settings, port=0, refresh_s=1.0).start()

    def shows(text: str) -> None:
        wait_for(lambda: text in page.inner_text("#status"), 8, f"the status to say {text!r}")
        body = page.inner_text("body")
        assert "Traceback" not in body and "Error:" not in page.inner_text("#kpi-gmv")

    try:
        page.goto(server.url)
        shows("No lake yet")
        lake = SilverLake(settings.lakehouse_uri)
        old = NOW - timedelta(hours=3)
        lake.write([Order("o1", old, "USD", Decimal("5.00"))], [Payment("o1", Decimal("5.00"), old)])
        shows("Gold is not built yet")
        Path(settings.warehouse_read_path).write_bytes(b"not a duckdb file" * 1000)
        shows("The gold warehouse is busy")
        assert api_summary(server.url)["status"] == "busy"
        assert gold.build(settings, quiet=True).success  # publishes a good snapshot over the bad one
        shows("Nothing in the last 60 minutes")
        assert page.inner_text("#kpi-gmv") == "$0.00"
    finally:
        server.stop()


def test_reading_never_disturbs_gold_building_in_a_loop(tmp_path):
    """Gold builds six times in a row (silver moving on each time) while two readers poll: the HTTP API and the
    summary reader directly, as fast as they can. Every build succeeds; every read is a whole, consistent build."""
    settings = make_settings(tmp_path)
    lake = SilverLake(settings.lakehouse_uri)
    orders, payments = generated("steady", seed=3, start=NOW - timedelta(minutes=30), count=600)
    lake.write(orders, payments)
    assert gold.build(settings, quiet=True).success
    server = DashboardServer(settings, port=0, refresh_s=1.0).start()
    reader = SummaryReader(settings, ttl_s=0)
    results, reads, stop = [], [], threading.Event()

    def builder():
        try:
            for round_ in range(6):
                more_orders, more_payments = generated("fraud_burst", seed=10 + round_,
                                                       start=NOW - timedelta(minutes=20 - 2 * round_), count=300)
                orders.extend(more_orders)
                payments.extend(more_payments)
                lake.write(orders, payments)
                result = gold.build(settings, quiet=True)
                results.append((result.success, gold.node_failures(result)))
        finally:
            stop.set()

    def poll(read):
        while not stop.is_set():
            reads.append(read())

    threads = [threading.Thread(target=builder), threading.Thread(target=poll, args=(reader.read,)),
               threading.Thread(target=poll, args=(lambda: api_summary(server.url),))]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
    finally:
        server.stop()
    assert [ok for ok, _ in results] == [True] * 6, results
    assert len(reads) > 20
    assert {r["status"] for r in reads} == {"ok"}, {r["message"] for r in reads}
    paid_seen = []
    for summary in reads:  # within one read, the headline equals the sum of its per-minute rows: one snapshot
        q = summary["questions"]
        head = dict(zip(q["kpis_last_60min"]["columns"], q["kpis_last_60min"]["rows"][0]))
        per_minute = q["recent_sales"]["columns"].index("paid_orders")
        assert head["paid_orders"] == sum(row[per_minute] for row in q["recent_sales"]["rows"])
        paid_seen.append(head["paid_orders"])
    assert len(set(paid_seen)) >= 3  # the readers saw the builds move gold on


def test_every_panel_is_a_trino_query_metabase_also_runs():
    """One source for the questions: the page's panels are files of trino/queries, and Metabase's cards run them."""
    from serving.metabase import QUESTIONS

    assert set(PANELS) <= set(queries.names())
    metabase_sql = {q.sql for q in QUESTIONS}
    shown_in_metabase = {name for name in PANELS if queries.load(name).sql in metabase_sql}
    assert shown_in_metabase == set(PANELS) - {"gold_freshness"}, shown_in_metabase


def test_the_readme_shows_a_committed_screenshot():
    shot = REPO / "docs" / "live-dashboard.png"
    assert shot.exists() and shot.stat().st_size > 20_000
    assert "docs/live-dashboard.png" in (REPO / "README.md").read_text()


def test_a_port_in_use_is_one_line(tmp_path):
    from ecomlake.errors import EcomlakeError

    settings = make_settings(tmp_path)
    first = DashboardServer(settings, port=0).start()
    try:
        with pytest.raises(EcomlakeError, match=rf"^cannot serve the dashboard on 127.0.0.1:{first.port} .*DASHBOARD_PORT"):
            DashboardServer(settings, port=first.port)
    finally:
        first.stop()
