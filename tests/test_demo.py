"""The one-command demo, end to end in a subprocess (its own Spark, its own broker), as a user runs it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from conftest import REPO, cli_env, free_port
from ecomlake import broker
from ecomlake.settings import Settings
from serving.dashboard import read_last_minutes

pytestmark = pytest.mark.slow


def demo_settings(tmp_path: Path) -> Settings:
    return Settings.from_env({
        "KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "LAKEHOUSE_URI": str(tmp_path / "lakehouse"),
        "ECOMLAKE_RUN_DIR": str(tmp_path / "run"),
        "DASHBOARD_PORT": str(free_port()),
    })


def start_demo(settings: Settings, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "demo", "--no-live", *args],
        cwd=REPO, env=cli_env(settings), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def test_short_demo_reconciles_gold_and_dashboard_with_what_was_published(tmp_path):
    settings = demo_settings(tmp_path)
    proc = start_demo(settings, "--seconds", "12", "--rate", "25", "--scenario", "late_and_duplicates")
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    assert "ecomlake demo — summary" in out and "Traceback" not in out
    assert out.splitlines()[0].startswith(f"dashboard: {settings.dashboard_url}"), out  # the live dashboard, first
    assert "dashboard: not started" not in out

    demo_dir = Path(settings.lakehouse_uri) / "demo"
    summary = json.loads((demo_dir / "summary.json").read_text())
    latency = json.loads((demo_dir / "latency.json").read_text())  # what the live dashboard shows
    assert latency["paid_orders_measured"] > 0 and latency["latency_p95_s"] >= latency["latency_p50_s"]
    manifest = json.loads((demo_dir / "manifest.json").read_text())
    expected = manifest["expected"]
    assert summary["events_produced"] == manifest["sent"] > 0
    assert summary["counts"]["bronze orders"] + summary["counts"]["bronze payments"] == manifest["sent"]
    assert summary["counts"]["silver orders_clean"] == expected["orders_clean_rows"]
    assert summary["counts"]["silver quarantine"] == expected["quarantine_rows"]

    with duckdb.connect(settings.warehouse_path, read_only=True) as con:
        gmv, paid = con.execute("select sum(gmv), sum(paid_orders) from gold.fct_sales_minute").fetchone()
    assert paid == expected["fully_paid_orders"]
    assert Decimal(gmv).quantize(Decimal("0.01")) == Decimal(expected["gmv_usd_exact"]).quantize(Decimal("0.01"))

    latency = summary["latency"]
    assert latency["paid_orders_measured"] == expected["fully_paid_orders"]
    assert 0 <= latency["latency_p50_s"] <= latency["latency_p95_s"] <= latency["latency_max_s"]
    assert set(latency["stages"]) == {"publish_to_bronze", "bronze_to_silver", "silver_to_gold"}, latency
    assert summary["silver_cycles"] and all(c["spark_jobs"] > 0 for c in summary["silver_cycles"] if c["rows_read"])
    assert summary["silver_warm_up_s"] > 0 and "demo: silver warm in" in out  # before publishing: see pipeline.warmup
    assert summary["gold_builds"] and summary["lag"][-1]["bronze_backlog"] == summary["lag"][-1]["silver_backlog"] == 0
    assert "publish → bronze" in out and "silver cycles / gold builds" in out

    html, png = Path(summary["dashboard"]["html"]), Path(summary["dashboard"]["png"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = html.read_text()
    shown = read_last_minutes(settings.warehouse_path)
    assert shown, "the dashboard's window holds the minutes just generated"
    dashboard_gmv = sum((m.gmv for m in shown), Decimal(0))
    assert f"GMV ${dashboard_gmv:,.2f}" in page
    for minute in shown:
        assert f"<td>{minute.minute_bucket:%Y-%m-%d %H:%M}</td><td>{minute.gmv:,.2f}</td><td>{minute.paid_orders}</td>" in page
    assert broker.status(settings) is None, "the demo stops the broker it started"

    again = start_demo(settings, "--seconds", "6", "--rate", "25", "--interval", "3", "--seed", "8")
    out, _ = again.communicate(timeout=600)
    assert again.returncode == 0, out
    assert f"the lake at {settings.lakehouse_uri} was filled from an earlier broker" in out and "starting clean" in out
    summary = json.loads((demo_dir / "summary.json").read_text())
    manifest = json.loads((demo_dir / "manifest.json").read_text())
    assert summary["events_produced"] == manifest["sent"] > 0
    assert summary["counts"]["bronze orders"] + summary["counts"]["bronze payments"] == manifest["sent"]
    assert summary["counts"]["silver orders_clean"] == manifest["expected"]["orders_clean_rows"]
    assert list(tmp_path.glob("lakehouse-previous-*/bronze_raw")), "the first run's lake is kept aside"


def test_ctrl_c_stops_everything_and_still_prints_the_summary(tmp_path):
    settings = demo_settings(tmp_path)
    proc = start_demo(settings, "--seconds", "600", "--rate", "20", "--interval", "3")
    bronze_log = Path(settings.lakehouse_uri) / "bronze_raw" / "orders_raw" / "_delta_log"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not any(bronze_log.glob("*.json")) and proc.poll() is None:
        time.sleep(0.5)
    assert proc.poll() is None, proc.communicate()[0]
    assert any(bronze_log.glob("*.json")), "bronze should be writing before we interrupt"
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 130, out
    assert "summary (interrupted)" in out
    summary = json.loads((Path(settings.lakehouse_uri) / "demo" / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["events_produced"] > 0
    assert broker.status(settings) is None, "Ctrl-C stops the broker too"


def test_the_generator_process_hands_its_error_to_the_demo(tmp_path):
    """The demo publishes from a child process (pipeline.demo._Generator); what stops it there reaches the demo as the
    same one-line error, and the thread waiting for it ends."""
    from ecomlake.errors import EcomlakeError
    from pipeline.demo import _Generator

    generator = _Generator(demo_settings(tmp_path), seconds=5, rate=10, scenario="steady", seed=1)
    generator.start()
    generator.join(timeout=60)
    assert not generator.is_alive()
    assert generator.result is None and generator.delivered == 0
    assert isinstance(generator.error, EcomlakeError)
    assert str(generator.error).startswith("no Kafka broker answered at KAFKA_BOOTSTRAP=127.0.0.1:"), generator.error


def test_a_generator_process_that_dies_is_reported_not_waited_for(tmp_path):
    import os

    from ecomlake.errors import EcomlakeError
    from pipeline.demo import _Generator

    generator = _Generator(demo_settings(tmp_path), seconds=30, rate=10, scenario="steady", seed=1)
    generator.start()
    deadline = time.monotonic() + 30
    while generator._process.pid is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(generator._process.pid, signal.SIGKILL)
    generator.join(timeout=30)
    assert not generator.is_alive()
    assert isinstance(generator.error, EcomlakeError)
    assert str(generator.error) == "the generator process ended without a result (exit code -9)"
