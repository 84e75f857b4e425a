"""Gold (dbt) on the duckdb target over real Delta silver tables written by tests/silver_fixtures.py.

One lakehouse is built once for the module and then moved forward (a second, incremental run); dbt runs in
process through gold/build.py, exactly as `ecomlake gold` does.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from ecomlake import contract
from gold import build as gold
from ecomlake.settings import Settings
from pipeline.bench.synthetic_silver import UTC, Order, Payment, SilverLake, fully_paid, minute_of, synthetic
from silver_fixtures import cents, expected_minutes

REPO = Path(__file__).resolve().parent.parent
NOW = minute_of(datetime.now(UTC))
BASE = NOW - timedelta(minutes=90)  # scenario minutes: BASE + n minutes


@pytest.fixture(scope="module", autouse=True)
def wall_clock():
    """Scenario minutes count from when this module starts, not from collection: in a full run that is up to
    40 minutes earlier, which would move "recent" rows out of gold's 60-minute views."""
    global NOW, BASE
    NOW = minute_of(datetime.now(UTC))
    BASE = NOW - timedelta(minutes=90)


def at(minutes: float) -> datetime:
    return BASE + timedelta(minutes=minutes)


def make_settings(root: Path, **env: str) -> Settings:
    return Settings.from_env({
        "LAKEHOUSE_URI": str(root / "lakehouse"),
        "ECOMLAKE_RUN_DIR": str(root / "run"),
        **env,
    })


def scenario_state1() -> tuple[list[Order], list[Payment]]:
    """Hand-made cases around the rules gold relies on; each comment names the case."""
    orders = [
        Order("a1", at(0) + timedelta(seconds=59.999), "USD", Decimal("100.00")),  # last ms of minute 0
        Order("a2", at(1), "EUR", Decimal("50.00")),                               # first ms of minute 1
        Order("late", at(5) + timedelta(seconds=12), "GBP", Decimal("80.00")),     # paid late (state 2)
        Order("split", at(5) + timedelta(seconds=40), "USD", Decimal("30.00")),    # two captures
        Order("refund", at(10), "EUR", Decimal("20.00")),                          # refunded in state 2
        Order("moved", at(20), "USD", Decimal("7.00")),                            # order_ts moves to minute 15
        Order("cancelled", at(30), "USD", Decimal("40.00"), status="cancelled"),   # paid but cancelled
        Order("under", at(30), "USD", Decimal("25.00")),                           # paid 24.99
        Order("fx_mismatch", at(30), "EUR", Decimal("10.00")),                     # paid in USD: not its currency
        Order("recent", NOW - timedelta(minutes=10), "GBP", Decimal("12.34")),     # inside the 60-minute view
    ]
    t = at(40)
    payments = [
        Payment("a1", Decimal("100.00"), t), Payment("a2", Decimal("50.00"), t),
        Payment("split", Decimal("10.00"), t), Payment("split", Decimal("20.00"), t),
        Payment("refund", Decimal("20.00"), t), Payment("moved", Decimal("7.00"), t),
        Payment("cancelled", Decimal("40.00"), t), Payment("under", Decimal("24.99"), t),
        Payment("fx_mismatch", Decimal("10.00"), t, currency="USD"),
        Payment("late", Decimal("80.00"), t, status="failed"),
        Payment("recent", Decimal("12.34"), NOW - timedelta(minutes=9)),
    ]
    background, background_payments = synthetic(200, seed=3, start=BASE - timedelta(minutes=60), span_minutes=55)
    return orders + background, payments + background_payments


def scenario_state2(orders: list[Order], payments: list[Payment]) -> tuple[list[Order], list[Payment]]:
    t = NOW - timedelta(minutes=1)
    orders = [Order("moved", at(15), "USD", Decimal("7.00")) if o.order_id == "moved" else o for o in orders]
    orders.append(Order("new", NOW - timedelta(minutes=3), "EUR", Decimal("9.99")))
    payments = payments + [
        Payment("late", Decimal("80.00"), t),                       # the late payment: old minute 5 restated
        Payment("refund", Decimal("20.00"), t, status="refunded"),  # minute 10 loses its only paid order
        Payment("new", Decimal("9.99"), t),
    ]
    return orders, payments


def fact_rows(settings: Settings) -> dict[datetime, tuple[Decimal, int, datetime]]:
    with duckdb.connect(settings.warehouse_path, read_only=True) as con:
        rows = con.execute("select minute_bucket, gmv, paid_orders, processed_ts from gold.fct_sales_minute").fetchall()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def paid_minutes(rows: dict) -> dict[datetime, tuple[Decimal, int]]:
    return {m: (gmv, n) for m, (gmv, n, _) in rows.items() if n > 0}


def statuses(result) -> dict[str, str]:
    return {f"{r.node.resource_type}.{r.node.name}": str(r.status.value) for r in result.result.results}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Run 1: silver written in two commits (most rows 60 min ago, one more 30 min ago), then `dbt build`."""
    settings = make_settings(tmp_path_factory.mktemp("gold"))
    lake = SilverLake(settings.lakehouse_uri)
    orders, payments = scenario_state1()
    lake.write(orders, payments, now=NOW - timedelta(minutes=60))
    orders.append(Order("tail", at(45), "USD", Decimal("1.00")))
    payments.append(Payment("tail", Decimal("1.00"), at(46)))
    lake.write(orders, payments, now=NOW - timedelta(minutes=30))
    result = gold.build(settings)
    return settings, lake, orders, payments, result, fact_rows(settings)


@pytest.fixture(scope="module")
def restated(built):
    """Run 2 (incremental): a late payment, a refund, an order whose order_ts moved, a new order."""
    settings, lake, orders, payments, _, before = built
    orders, payments = scenario_state2(orders, payments)
    lake.write(orders, payments, now=NOW)
    result = gold.build(settings)
    return settings, orders, payments, result, before, fact_rows(settings)


def test_build_is_green_with_unit_tests_and_reconciliation(built):
    settings, _, _, _, result, _ = built
    assert result.success, gold.node_failures(result)
    status = statuses(result)
    unit_tests = {k for k in status if k.startswith("unit_test.")}
    assert {
        "unit_test.stg_order_payments_enriched_minute_boundary",
        "unit_test.fct_sales_minute_converts_each_currency_before_summing",
        "unit_test.fct_sales_minute_late_payment_restates_old_minute",
        "unit_test.fct_sales_minute_zeroes_a_minute_that_lost_its_paid_orders",
        "unit_test.int_order_sales_remembers_the_minute_an_order_left",
        "unit_test.fct_payments_minute_counts_retries_authorizations_and_refunds",
        "unit_test.fct_payments_minute_late_capture_restates_its_minute",
        "unit_test.fct_sales_currency_minute_zeroes_a_currency_that_lost_its_paid_orders",
    } <= unit_tests
    assert status["test.assert_gmv_reconciles_with_silver"] == "pass"
    assert status["test.assert_breakdowns_reconcile_with_facts"] == "pass"
    for model in ("fct_payments_minute", "fct_sales_currency_minute", "fct_cancellations_minute", "fct_quarantine_minute"):
        assert status[f"model.{model}"] == "success"
    assert status["model.fct_sales_minute"] == "success"
    assert not [k for k, v in status.items() if v not in ("pass", "success", "no-op")]


def test_first_build_matches_python_to_the_cent(built):
    _, _, orders, payments, _, rows = built
    expected = expected_minutes(orders, payments)
    assert paid_minutes(rows) == expected  # exact Decimal equality, so equal to the cent as well
    assert rows[at(0)][:2] == (Decimal("100.00"), 1)                  # 10:00:59.999 stays in its minute
    assert rows[at(1)][:2] == (Decimal("54.00"), 1)                   # EUR 50 at 1.08, next minute
    assert rows[at(5)][:2] == (Decimal("30.00"), 1)                   # split captures; GBP order not paid yet
    assert rows[at(30)][:2] == (Decimal("0"), 0)                      # cancelled, underpaid, wrong currency
    by_order = {o.order_id: [p for p in payments if p.order_id == o.order_id] for o in orders}
    python_total = sum((o.total_amount * contract.FX_TO_USD[o.currency] for o in orders
                        if fully_paid(o, by_order[o.order_id])), Decimal(0))
    gold_total = sum((gmv for gmv, _, _ in rows.values()), Decimal(0))
    assert cents(gold_total) == cents(python_total) and gold_total == python_total


def test_incremental_run_restates_only_affected_minutes(restated):
    settings, orders, payments, result, before, after = restated
    assert result.success, gold.node_failures(result)
    assert paid_minutes(after) == expected_minutes(orders, payments)
    # the late payment restates minute 5 (GBP 80 at 1.27 joins the split order's 30.00)
    assert after[at(5)][:2] == (Decimal("131.60"), 2)
    assert after[at(5)][2] > before[at(5)][2]
    # a minute that lost its only paid order (refund) or its order (moved away) is rewritten to 0
    assert after[at(10)][:2] == (Decimal("0"), 0)
    assert after[at(20)][:2] == (Decimal("0"), 0)
    assert after[at(15)][:2] == (Decimal("7.00"), 1)
    # minutes without changed orders are left alone: the run was incremental, not a rebuild
    assert after[at(1)] == before[at(1)]
    untouched = [m for m in before if m < BASE]
    assert untouched and all(after[m] == before[m] for m in untouched)


def test_view_holds_the_last_60_minutes_in_cents(restated):
    settings, *_, after = restated
    with duckdb.connect(settings.warehouse_path, read_only=True) as con:
        rows = con.execute("select minute_bucket, gmv, paid_orders from gold.vw_sales_last_60min").fetchall()
    minutes = [m for m, _, _ in rows]
    assert minutes and all(m > datetime.now(UTC) - timedelta(minutes=60) for m in minutes)
    assert minute_of(NOW - timedelta(minutes=10)) in minutes and at(5) not in minutes
    assert all((gmv, n) == (cents(after[m][0]), after[m][1]) for m, gmv, n in rows)
    assert (Decimal("15.67"), 1) in [(gmv, n) for _, gmv, n in rows]  # GBP 12.34 * 1.27 = 15.6718


def test_reconciliation_catches_drift_and_full_refresh_repairs_it(restated):
    settings, orders, payments, _, _, after = restated
    minute = next(iter(paid_minutes(after)))
    with duckdb.connect(settings.warehouse_path) as con:
        con.execute("update gold.fct_sales_minute set gmv = gmv + 0.01 where minute_bucket = ?", [minute])
    drifted = gold.invoke(settings, ["test", "--select", "assert_gmv_reconciles_with_silver"])
    assert not drifted.success
    assert statuses(drifted)["test.assert_gmv_reconciles_with_silver"] == "fail"

    rebuilt = gold.build(settings, full_refresh=True)
    assert rebuilt.success, gold.node_failures(rebuilt)
    rows = fact_rows(settings)
    assert paid_minutes(rows) == expected_minutes(orders, payments) == paid_minutes(after)


def test_test_only_run_gold_and_docs(restated, capsys):
    settings, *_ = restated
    env = gold.dbt_env(settings)
    with gold._environ(env):
        assert gold.main(["--test-only"]) == 0
    report = gold.run_gold(settings, tests=False)
    assert report["status"] == "ok" and report["errors"] == [] and report["duration_s"] > 0
    with gold._environ(env):
        assert gold.main(["--docs"]) == 0
    docs = gold.artifacts_dir(settings) / "target" / "static_index.html"
    assert "fct_sales_minute" in docs.read_text() and str(docs) in capsys.readouterr().out


def test_freshness_pass_warn_error(tmp_path, capsys):
    orders, payments = synthetic(20, seed=5)
    codes = {}
    for label, age in (("fresh", 0), ("stale", 30), ("dead", 120)):
        settings = make_settings(tmp_path / label)
        SilverLake(settings.lakehouse_uri).write(orders, payments, now=datetime.now(UTC) - timedelta(minutes=age))
        capsys.readouterr()
        with gold._environ(gold.dbt_env(settings)):
            codes[label] = gold.freshness_main([])
        codes[label + "_out"] = capsys.readouterr().out.splitlines()[-1]
    assert (codes["fresh"], codes["fresh_out"]) == (0, "freshness: PASS 3")
    assert (codes["stale"], codes["stale_out"]) == (0, "freshness: WARN 3")
    assert codes["dead"] == 1 and codes["dead_out"] == "freshness: ERROR 3"


def test_dbt_parse_for_trino_target(tmp_path):
    settings = make_settings(tmp_path, DBT_TARGET="trino")
    result = gold.invoke(settings, ["parse"])
    assert result.success, result.exception
    manifest = result.result
    sources = {s.name: s.relation_name for s in manifest.sources.values()}
    assert sources["order_payments_enriched"] == '"delta"."silver"."order_payments_enriched"'
    raw_sql = " ".join(n.raw_code.lower() for n in manifest.nodes.values() if hasattr(n, "raw_code"))
    assert "qualify" not in raw_sql

    with gold._environ({"TRINO_AUTH": "ldap", "TRINO_PASSWORD": "secret", "TRINO_CATALOG": "lake"}):
        ldap = gold.invoke(settings, ["parse"], quiet=True)
    assert ldap.success, ldap.exception
    assert '"lake"."silver"."orders_clean"' in {s.relation_name for s in ldap.result.sources.values()}


def test_missing_silver_is_a_one_line_error(tmp_path):
    env = {**os.environ, **make_settings(tmp_path).to_env()}
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "gold"], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "silver tables not found" in proc.stderr and "ecomlake silver" in proc.stderr
    assert gold.run_gold(make_settings(tmp_path))["status"] == "waiting"


def test_order_state_lives_beside_the_warehouse_and_an_old_warehouse_gives_it_up(built, tmp_path):
    """Readers copy the warehouse after every build, so the order state (a row per order) must not be in it."""
    settings = built[0]
    with duckdb.connect(settings.warehouse_path, read_only=True) as con:
        assert "int_order_sales" not in {t for (t,) in con.execute("select table_name from duckdb_tables()").fetchall()}
    with duckdb.connect(settings.gold_state_path, read_only=True) as con:
        assert con.execute("select count(*) from gold.int_order_sales").fetchone()[0] > 0

    old = make_settings(tmp_path)
    Path(old.warehouse_path).parent.mkdir(parents=True)
    with duckdb.connect(old.warehouse_path) as con:
        con.execute("create schema gold")
        con.execute("create table gold.fct_sales_minute as select timestamp '2026-01-01 10:00' as minute_bucket, "
                    "12.5::decimal(18, 2) as gmv")
        con.execute("create view gold.vw_sales as select * from gold.fct_sales_minute")
        con.execute("create table gold.int_order_sales as select 'order-' || i as order_id from range(300000) t(i)")
    size = Path(old.warehouse_path).stat().st_size
    assert gold.move_order_state_out_of_warehouse(old)
    assert not gold.move_order_state_out_of_warehouse(old)
    assert Path(old.warehouse_path).stat().st_size < size / 2
    with duckdb.connect(old.warehouse_path, read_only=True) as con:
        assert con.execute("select table_name from duckdb_tables()").fetchall() == [("fct_sales_minute",)]
        assert con.execute("select gmv from gold.vw_sales").fetchall() == [(Decimal("12.50"),)]


def test_delta_extension_installed_offline_into_run_dir(built):
    settings, *_ = built
    ext_dir = Path(settings.run_dir) / "duckdb_extensions"
    installed = list(ext_dir.rglob("delta.duckdb_extension"))
    assert installed, f"no delta extension under {ext_dir}"
    from ecomlake import duckdb_delta

    with duckdb_delta.connect(extension_dir=str(ext_dir)) as con:
        mode, autoinstall = con.execute(
            "select install_mode, current_setting('autoinstall_known_extensions') "
            "from duckdb_extensions() where extension_name = 'delta'").fetchone()
        assert (mode, autoinstall) == ("CUSTOM_PATH", False)
        n = con.execute(f"select count(*) from delta_scan('{settings.lakehouse_uri}/silver/order_payments_enriched')").fetchone()[0]
    assert n > 0


def test_fx_seed_matches_contract():
    with open(REPO / "dbt" / "seeds" / "fx_rates.csv") as fh:
        seed = {row["currency"]: Decimal(row["fx_to_usd"]) for row in csv.DictReader(fh)}
    assert seed == contract.FX_TO_USD
    assert set(seed) == set(contract.CURRENCIES)


def compiled_sql(settings: Settings) -> dict[str, str]:
    root = gold.artifacts_dir(settings) / "target" / "compiled" / "ecom_analytics"
    return {p.relative_to(root).as_posix(): p.read_text() for p in root.rglob("*.sql")}


def test_models_compile_to_trino_sql(tmp_path):
    """No Trino can run here: compile against a Trino-protocol stand-in (metadata answers only), once as a first
    build and once with the incremental tables present, and check every statement with a Trino SQL parser."""
    import sqlglot
    from sqlglot import exp

    from trino_stub import WATERMARK, TrinoStub

    rendered = {}
    incremental = ["int_order_sales", "fct_sales_minute", "fct_payments_minute", "fct_sales_currency_minute"]
    for label, tables in (("first", {}), ("incremental", {"gold": incremental})):
        with TrinoStub(tables=tables) as stub, gold._environ({"TRINO_HOST": "127.0.0.1", "TRINO_PORT": str(stub.port)}):
            settings = make_settings(tmp_path / label, DBT_TARGET="trino")
            result = gold.invoke(settings, ["compile", "--select", "resource_type:model", "resource_type:test"],
                                 quiet=True)
            assert result.success, result.exception
            assert any("information_schema" in s.lower() for s in stub.statements)
        rendered[label] = compiled_sql(settings)
        incremental_statements = stub.statements

    assert 'from "delta"."silver"."order_payments_enriched"' in rendered["first"]["models/staging/stg_order_payments_enriched.sql"]
    incremental_fct = rendered["incremental"]["models/gold/fct_sales_minute.sql"]
    # The watermark is read first, then written into the model's query as a literal that scans can prune by.
    assert any("date_add('minute', -1, max(last_updated_ts))" in s for s in incremental_statements)
    watermark = f"cast('{WATERMARK}' as timestamp(6) with time zone)"
    assert f"order_sales.updated_ts > {watermark}" in incremental_fct
    assert watermark not in rendered["first"]["models/gold/fct_sales_minute.sql"]
    payments = rendered["incremental"]["models/gold/fct_payments_minute.sql"]
    assert f"ingest_ts > {watermark}" in payments and f"payments.payment_ts >= {watermark}" in payments
    for label, files in rendered.items():
        assert len(files) >= 7 + 40
        for path, sql in files.items():
            assert "delta_scan" not in sql and "::" not in sql, path
            tree = sqlglot.parse_one(sql, read="trino", error_level=sqlglot.ErrorLevel.RAISE)  # QUALIFY fails here
            unknown = {f.name for f in tree.find_all(exp.Anonymous)}
            assert not unknown, f"{label} {path}: functions Trino may not have: {unknown}"

