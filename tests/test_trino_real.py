"""The cluster stack's SQL side for real: Trino 476 (tests/fixtures_trino.py), `ecomlake register-tables`, dbt-trino
(build with unit and data tests, source freshness) and the queries in trino/queries, over one small silver lake.

Silver is written locally by delta-rs (pipeline/bench/synthetic_silver.py) and read in place by both engines: Trino
through the registered file:// tables, DuckDB through delta_scan. Gold built by Trino (on S3, see fixtures_trino)
must equal gold built by DuckDB to the cent, on the first build and after an incremental run in which a late payment
restates an old minute.
"""

from __future__ import annotations

import contextlib
import io
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from ecomlake.settings import Settings
from gold import build as gold
from pipeline.bench.synthetic_silver import UTC, Order, Payment, SilverLake, minute_of, synthetic
from serving import trino_tables
from silver_fixtures import cents, expected_minutes

QUERIES = Path(__file__).resolve().parent.parent / "trino" / "queries"
NOW = minute_of(datetime.now(UTC))
BASE = NOW - timedelta(minutes=90)


@pytest.fixture(scope="module", autouse=True)
def wall_clock():
    """Scenario minutes count from when this module starts, not from collection: in a full run that is up to
    40 minutes earlier, which would move "recent" rows out of gold's 60-minute views."""
    global NOW, BASE
    NOW = minute_of(datetime.now(UTC))
    BASE = NOW - timedelta(minutes=90)
GOLD_LOCATION = "s3://lakehouse/gold"  # Trino 476 writes Delta on object storage only


def at(minutes: float) -> datetime:
    return BASE + timedelta(minutes=minutes)


def state1() -> tuple[list[Order], list[Payment]]:
    orders = [
        Order("a1", at(0) + timedelta(seconds=59.999), "USD", Decimal("100.00")),
        Order("a2", at(1), "EUR", Decimal("50.00")),
        Order("late", at(5) + timedelta(seconds=12), "GBP", Decimal("80.00")),   # paid late, in state 2
        Order("split", at(5) + timedelta(seconds=40), "USD", Decimal("30.00")),  # two captures
        Order("refund", at(10), "EUR", Decimal("20.00")),                         # refunded in state 2
        Order("recent", NOW - timedelta(minutes=10), "GBP", Decimal("12.34")),   # inside the 60-minute view
    ]
    t = at(20)
    payments = [
        Payment("a1", Decimal("100.00"), t), Payment("a2", Decimal("50.00"), t),
        Payment("late", Decimal("80.00"), t, status="failed"),
        Payment("split", Decimal("10.00"), t), Payment("split", Decimal("20.00"), t),
        Payment("refund", Decimal("20.00"), t), Payment("recent", Decimal("12.34"), NOW - timedelta(minutes=9)),
    ]
    background, background_payments = synthetic(40, seed=11, start=BASE - timedelta(minutes=60), span_minutes=55)
    return orders + background, payments + background_payments


def state2(orders: list[Order], payments: list[Payment]) -> tuple[list[Order], list[Payment]]:
    t = NOW - timedelta(minutes=1)
    return orders + [Order("new", NOW - timedelta(minutes=3), "EUR", Decimal("9.99"))], payments + [
        Payment("late", Decimal("80.00"), t),                       # the late payment: minute 5 is restated
        Payment("refund", Decimal("20.00"), t, status="refunded"),  # minute 10 loses its only paid order
        Payment("new", Decimal("9.99"), t),
    ]


def utc_minutes(rows) -> dict[datetime, tuple]:
    return {m.astimezone(timezone.utc): tuple(rest) for m, *rest in rows}


def paid(facts: dict[datetime, tuple]) -> dict[datetime, tuple[Decimal, int]]:
    return {m: (gmv, n) for m, (gmv, n, *_) in facts.items() if n > 0}


class Stack:
    """One lake, read by both engines; dbt artifacts per target (their own run dirs)."""

    def __init__(self, root: Path, server):
        self.server = server
        self.lake = SilverLake(str(root / "lakehouse"))
        env = {"LAKEHOUSE_URI": str(root / "lakehouse")}
        self.trino = Settings.from_env({**env, "ECOMLAKE_RUN_DIR": str(root / "run-trino"), "DBT_TARGET": "trino"})
        self.duckdb = Settings.from_env({**env, "ECOMLAKE_RUN_DIR": str(root / "run-duckdb"), "DBT_TARGET": "duckdb"})
        self.trino_env = {"TRINO_HOST": "127.0.0.1", "TRINO_PORT": str(server.port), "TRINO_USER": "ecomlake",
                          "TRINO_CATALOG": "delta", **self.trino.to_env()}

    def register_tables(self) -> list[str]:
        """`ecomlake register-tables` (its main, in process), as the trino-init service runs it."""
        out = io.StringIO()
        with gold._environ(self.trino_env), contextlib.redirect_stdout(out):
            assert trino_tables.main(["--wait", "60"]) == 0
        return out.getvalue().splitlines()

    def build(self, settings: Settings):
        with gold._environ(self.trino_env):
            result = gold.build(settings, quiet=True)
        assert result.success, gold.node_failures(result)
        return result

    def trino_facts(self) -> dict[datetime, tuple]:
        return utc_minutes(self.server.query(
            "SELECT minute_bucket, gmv, paid_orders, processed_ts FROM delta.gold.fct_sales_minute"))

    def duckdb_facts(self) -> dict[datetime, tuple]:
        with duckdb.connect(self.duckdb.warehouse_path, read_only=True) as con:
            return utc_minutes(con.execute(
                "SELECT minute_bucket, gmv, paid_orders, processed_ts FROM gold.fct_sales_minute").fetchall())


@pytest.fixture(scope="module")
def first(trino_server, tmp_path_factory):
    """Silver state 1, registered in Trino; gold built on Trino and on DuckDB."""
    stack = Stack(tmp_path_factory.mktemp("trino-real"), trino_server)
    orders, payments = state1()
    stack.lake.write(orders, payments, now=NOW - timedelta(minutes=60))
    # A second silver commit 30 minutes later (one more order): gold's watermark is then newer than the first
    # commit's rows by more than the lookback, so the incremental run below leaves their minutes alone.
    orders.append(Order("tail", at(45), "USD", Decimal("1.00")))
    payments.append(Payment("tail", Decimal("1.00"), at(46)))
    stack.lake.write(orders, payments, now=NOW - timedelta(minutes=30))
    trino_server.query(f"CREATE SCHEMA IF NOT EXISTS delta.gold WITH (location = '{GOLD_LOCATION}')")
    registered = stack.register_tables()
    trino_result = stack.build(stack.trino)
    stack.build(stack.duckdb)
    return stack, orders, payments, registered, trino_result, stack.trino_facts(), stack.duckdb_facts()


@pytest.fixture(scope="module")
def second(first):
    """Silver state 2 (late payment, refund, new order), then incremental builds on both engines."""
    stack, orders, payments, *_, trino_before, duckdb_before = first
    orders, payments = state2(orders, payments)
    stack.lake.write(orders, payments, now=NOW)
    stack.build(stack.trino)
    stack.build(stack.duckdb)
    return stack, orders, payments, (trino_before, duckdb_before), stack.trino_facts(), stack.duckdb_facts()


def test_register_tables_for_real(first):
    stack, *_, registered, _, _, _ = first
    silver = {"orders_clean", "payments_clean", "order_payments_enriched", "quarantine"}
    assert {f"registered silver.{t}" for t in silver} <= set(registered), registered
    assert {row[0] for row in stack.server.query("SHOW TABLES FROM delta.silver")} >= silver
    assert stack.server.query("SELECT count(*) FROM delta.silver.order_payments_enriched")[0][0] == 47
    again = stack.register_tables()  # idempotent: nothing new, nothing failed
    assert not [line for line in again if line.startswith(("registered", "created"))], again
    assert any("already registered" in line and "silver.order_payments_enriched" in line for line in again)


def test_dbt_build_on_trino_runs_unit_and_data_tests(first):
    *_, trino_result, _, _ = first
    status = {f"{r.node.resource_type}.{r.node.name}": str(r.status.value) for r in trino_result.result.results}
    assert {k for k in status if k.startswith("unit_test.")} >= {
        "unit_test.fct_sales_minute_late_payment_restates_old_minute",
        "unit_test.fct_payments_minute_counts_retries_authorizations_and_refunds",
        "unit_test.fct_payments_minute_late_capture_restates_its_minute",
        "unit_test.fct_sales_currency_minute_zeroes_a_currency_that_lost_its_paid_orders",
        "unit_test.int_order_sales_remembers_the_minute_an_order_left",
        "unit_test.stg_order_payments_enriched_minute_boundary",
    }
    assert status["test.assert_gmv_reconciles_with_silver"] == "pass"
    assert status["test.assert_breakdowns_reconcile_with_facts"] == "pass"
    for model in ("fct_payments_minute", "fct_sales_currency_minute", "fct_cancellations_minute", "fct_quarantine_minute"):
        assert status[f"model.{model}"] == "success"
    assert sum(k.startswith("test.") for k in status) >= 40
    assert not [k for k, v in status.items() if v not in ("pass", "success", "no-op")]


def test_first_build_trino_equals_duckdb_to_the_cent(first):
    _, orders, payments, _, _, trino, duck = first
    assert paid(trino) == paid(duck) == expected_minutes(orders, payments)
    assert {m: v[:2] for m, v in trino.items()} == {m: v[:2] for m, v in duck.items()}  # zero minutes too
    assert trino[at(5)][:2] == (Decimal("30.00"), 1)


def test_incremental_run_restates_the_late_minute_on_both_engines(second):
    _, orders, payments, (trino_before, duck_before), trino, duck = second
    assert paid(trino) == paid(duck) == expected_minutes(orders, payments)
    assert {m: v[:2] for m, v in trino.items()} == {m: v[:2] for m, v in duck.items()}
    assert trino[at(5)][:2] == (Decimal("131.600000"), 2) and trino[at(5)][2] > trino_before[at(5)][2]
    assert trino[at(10)][:2] == (Decimal("0"), 0)
    untouched = [m for m in trino_before if m < BASE]  # background minutes: no order changed, not recomputed
    changed = {m: (before[m], now[m]) for before, now in ((trino_before, trino), (duck_before, duck))
               for m in untouched if now[m] != before[m]}
    assert untouched and not changed


def test_source_freshness_on_trino(second):
    """Thresholds relative to the data written at the start of the session (the suite runs for many minutes)."""
    stack, *_ = second
    day = 24 * 60
    for warn, error, status in ((day, 2 * day, "pass"), (0, day, "warn"), (0, 0, "error")):
        with gold._environ(stack.trino_env):
            result = gold.freshness(stack.trino, warn_after=warn, error_after=error, quiet=True)
        counts, lines = gold.freshness_summary(result)
        assert counts == {status: 3}, (status, lines)


def _statements(path: Path) -> str:
    lines = [line for line in path.read_text().splitlines() if not line.lstrip().startswith("--")]
    return "\n".join(lines).strip().rstrip(";")


def test_every_trino_query_runs(second):
    stack, *_, trino, _ = second
    files = sorted(QUERIES.glob("*.sql"))
    assert files
    results = {path.stem: stack.server.query(_statements(path)) for path in files}
    recent = results.get("recent_sales")
    if recent is not None:  # the dashboard's view: the last hour's minutes in cents
        assert recent and all(cents(trino[m.astimezone(timezone.utc)][0]) == gmv for m, gmv, *_ in recent)
    tables = results.get("tables")
    if tables is not None:
        assert {"fct_sales_minute", "vw_sales_last_60min", "order_payments_enriched"} <= {r[1] for r in tables}


def test_catalogs_differ_from_the_project_files_only_in_metastore_and_local_fs(tmp_path):
    """The local catalogs are trino/catalog/*.properties with the documented overrides, nothing else."""
    from ecomlake.jvm.trino_server import CATALOG_DIR, CATALOGS, catalog_properties

    for name in CATALOGS:
        original = set((CATALOG_DIR / f"{name}.properties").read_text().splitlines())
        for uri, s3 in (("thrift://127.0.0.1:9999", True), (None, False)):
            local = set(catalog_properties(name, tmp_path, uri, s3=s3).splitlines())
            removed = {line.split("=")[0] for line in original - local}
            added = {line.split("=")[0] for line in local - original}
            s3_keys = {k for k in removed if k.startswith(("fs.native-s3", "s3."))}
            assert removed - s3_keys == {"hive.metastore.uri"} and (s3 or s3_keys), (name, removed)
            assert added - {"hive.metastore.uri"} == (
                {"fs.native-local.enabled", "local.location"} if uri else
                {"fs.native-local.enabled", "local.location", "hive.metastore", "hive.metastore.catalog.dir",
                 "hive.metastore.disable-location-checks"}), (name, added)


def _same(value):
    """A cell as both engines can agree on it: numbers to the cent, timestamps in UTC."""
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc)
    if isinstance(value, (Decimal, float, int)) and not isinstance(value, bool):
        return Decimal(str(value)).quantize(Decimal("0.01"))
    return value


def test_dashboard_questions_answer_the_same_on_trino_and_duckdb(second):
    """The live page (DuckDB, gold's read snapshot) and Metabase (Trino) run the same trino/queries files over
    gold built by each engine: the same rows, to the cent. Only the build times differ (processed_ts, and
    gold_freshness, which is each engine's own build)."""
    from serving.summary import PANELS, run_questions

    stack, *_ = second
    duck = run_questions(stack.duckdb.warehouse_read_path)
    for name in PANELS:
        if name == "gold_freshness":
            continue
        keep = [i for i, column in enumerate(duck[name]["columns"]) if column != "processed_ts"]
        trino_rows = [[_same(row[i]) for i in keep]
                      for row in stack.server.query(_statements(QUERIES / f"{name}.sql"))]
        duck_rows = [[_same(datetime.fromisoformat(row[i]) if i == 0 and "minute" in duck[name]["columns"][0]
                            else row[i]) for i in keep] for row in duck[name]["rows"]]
        assert trino_rows == duck_rows, name
    kpis = duck["kpis_last_60min"]["rows"][0]
    assert kpis[0] > 0 and kpis[3] > 0  # GMV and payment attempts in the window: the comparison saw data


def test_gold_service_on_trino_registers_tables_then_builds_each_silver_commit(second):
    """`ecomlake gold --continuous` on the trino target, as the compose `gold` service runs it (pipeline/services.py):
    the Trino registration runs before its first build and not again while the lake's tables stay the same; the
    build from its parsed project follows the next silver commit only, and gold on Trino then equals gold on DuckDB
    with the new order in its minute. Last in the module: it moves the lake on."""
    from gold.service import continuous_service
    from pipeline.services import register_in_trino

    stack, orders, payments, *_ = second
    registrations = []

    def register(settings: Settings) -> None:
        registrations.append(settings.dbt_target)
        register_in_trino(settings)

    with gold._environ(stack.trino_env):
        service = continuous_service(stack.trino, register)
        first_build = service.cycle()
        assert first_build is not None and first_build.status == "ok"
        assert service.cycle() is None, "no silver commit, no build"
        orders = orders + [Order("service", NOW - timedelta(minutes=2), "USD", Decimal("42.00"))]
        payments = payments + [Payment("service", Decimal("42.00"), NOW - timedelta(minutes=1))]
        stack.lake.write(orders, payments, now=NOW + timedelta(seconds=30))
        second_build = service.cycle()
    assert second_build is not None and second_build.status == "ok"
    assert registrations == ["trino"], "registered once: the lake's tables did not change"
    stack.build(stack.duckdb)
    trino, duckdb_facts = paid(stack.trino_facts()), paid(stack.duckdb_facts())
    assert trino == duckdb_facts
    minute = minute_of(NOW - timedelta(minutes=2))
    assert trino[minute][0] >= Decimal("42.00"), trino.get(minute)
