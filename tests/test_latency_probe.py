"""The latency probe (pipeline.latency): which silver orders a gold build made visible, and their figures."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import pyarrow as pa
from deltalake import write_deltalake

from ecomlake.settings import Settings
from ecomlake.tables import ORDER_PAYMENTS_ENRICHED
from pipeline.latency import LatencyProbe

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
SCHEMA = pa.schema([("order_id", pa.string()), ("fully_paid", pa.bool_()),
                    ("last_published_ts", pa.timestamp("us", "UTC")), ("updated_ts", pa.timestamp("us", "UTC"))])


def _enriched(settings: Settings, rows: list[tuple], mode: str = "append") -> None:
    columns = list(zip(*rows))
    write_deltalake(ORDER_PAYMENTS_ENRICHED.uri(settings), pa.table(
        [pa.array(list(c), f.type) for c, f in zip(columns, SCHEMA)], schema=SCHEMA), mode=mode)


def test_the_figures_cover_the_orders_paid_now_each_measured_once_from_its_last_publication(tmp_path):
    settings = dataclasses.replace(Settings.from_env(), lakehouse_uri=str(tmp_path / "lake"))
    probe = LatencyProbe(started=T0)
    assert probe.snapshot(settings) == {}

    _enriched(settings, [("o1", True, T0, T0), ("o2", False, T0, T0), ("o3", True, None, T0), ("o4", None, T0, T0)])
    pending = probe.snapshot(settings)
    assert set(pending) == {"o1"}
    probe.visible(pending, T0.timestamp() + 4.0)
    assert probe.snapshot(settings) == {}, "a measured order is not measured again"

    later = T0 + timedelta(seconds=10)
    _enriched(settings, [("o1", True, later, later), ("o2", True, later, later), ("o3", True, later, later),
                         ("o4", False, T0, T0), ("o5", True, later, later)], mode="overwrite")
    pending = probe.snapshot(settings)
    assert set(pending) == {"o2", "o3", "o5"}, "orders paid since the last build, not o1 again"
    assert pending["o5"] == (later, later)
    probe.visible(pending, later.timestamp() + 2.5)
    assert probe.snapshot(settings) == {}

    figures = probe.figures()
    assert figures["paid_orders_measured"] == 4
    assert (figures["latency_p50_s"], figures["latency_max_s"]) == (2.5, 4.0)

    refunded = later + timedelta(seconds=30)
    _enriched(settings, [("o1", True, later, later), ("o2", False, refunded, refunded), ("o3", True, later, later),
                         ("o4", False, T0, T0), ("o5", True, later, later)], mode="overwrite")
    assert probe.snapshot(settings) == {}
    assert probe.figures()["paid_orders_measured"] == 3, "o2 is no longer paid: it leaves the figures, as gold"

    paid_again = refunded + timedelta(seconds=30)
    _enriched(settings, [("o1", True, later, later), ("o2", True, paid_again, paid_again), ("o3", True, later, later),
                         ("o4", False, T0, T0), ("o5", True, later, later)], mode="overwrite")
    pending = probe.snapshot(settings)
    assert pending == {"o2": (paid_again, paid_again)}, "paid again: measured again, from its new publication"
    probe.visible(pending, paid_again.timestamp() + 7.0)
    figures = probe.figures()
    assert figures["paid_orders_measured"] == 4
    assert figures["latency_max_s"] == 7.0


def test_a_build_is_credited_with_the_orders_of_the_version_it_started_on_not_later_ones(tmp_path):
    """The demo notes the enriched table's version when a build starts and reads that version while the build runs:
    an order silver commits during the build is measured at the next build, never before gold could show it."""
    settings = dataclasses.replace(Settings.from_env(), lakehouse_uri=str(tmp_path / "lake"))
    probe = LatencyProbe(started=T0)
    _enriched(settings, [("o1", True, T0, T0)])
    _enriched(settings, [("o2", True, T0, T0)])
    pending = probe.snapshot(settings, version=0)
    assert set(pending) == {"o1"}
    probe.visible(pending, T0.timestamp() + 3.0)
    assert set(probe.snapshot(settings)) == {"o2"}


def test_history_before_the_probe_is_not_measured_and_later_reads_take_only_new_files(tmp_path):
    """On a lake with a day of history the probe must neither credit old orders to this run nor read the whole table
    at every build: it counts rows updated since it began and, after its first read, reads only the files added."""
    settings = dataclasses.replace(Settings.from_env(), lakehouse_uri=str(tmp_path / "lake"))
    yesterday = T0 - timedelta(days=1)
    _enriched(settings, [(f"h{i}", True, yesterday, yesterday) for i in range(50)])
    probe = LatencyProbe(started=T0)
    _enriched(settings, [("o1", True, T0, T0)])
    assert set(probe.snapshot(settings)) == {"o1"}, "history rows are older than the probe"

    read_already = list((tmp_path / "lake").rglob("*.parquet"))
    for file in read_already:  # a second read of these now fails loudly
        file.unlink()
    _enriched(settings, [("o2", True, T0, T0)])
    assert set(probe.snapshot(settings)) == {"o1", "o2"}, "o1 was not made visible yet: it stays pending"


def test_an_order_whose_build_failed_is_measured_at_the_next_build(tmp_path):
    settings = dataclasses.replace(Settings.from_env(), lakehouse_uri=str(tmp_path / "lake"))
    probe = LatencyProbe(started=T0)
    _enriched(settings, [("o1", True, T0, T0)])
    assert set(probe.snapshot(settings)) == {"o1"}  # the build that follows fails: visible() is not called
    _enriched(settings, [("o2", True, T0, T0)])
    pending = probe.snapshot(settings)
    assert set(pending) == {"o1", "o2"}
    probe.visible(pending, T0.timestamp() + 5.0)
    assert probe.snapshot(settings) == {}
    assert probe.figures()["paid_orders_measured"] == 2


def test_windows_give_the_figures_per_minute_of_publication(tmp_path):
    settings = dataclasses.replace(Settings.from_env(), lakehouse_uri=str(tmp_path / "lake"))
    probe = LatencyProbe(started=T0)
    rows = [(f"a{i}", True, T0 + timedelta(seconds=i), T0) for i in range(10)]  # first minute: latency 2 s
    rows += [(f"b{i}", True, T0 + timedelta(seconds=61 + i), T0) for i in range(10)]  # second: 8 s
    _enriched(settings, rows)
    pending = probe.snapshot(settings)
    for order_id, (published, updated) in pending.items():
        probe.visible({order_id: (published, updated)}, published.timestamp() + (2.0 if order_id < "b" else 8.0))
    minutes = probe.figures()["windows"]["60s"]
    assert [(w["from_s"], w["orders"], w["p95_s"]) for w in minutes] == [(0, 10, 2.0), (60, 10, 8.0)]
    assert probe.figures()["windows"]["180s"][0]["orders"] == 20

    _enriched(settings, [("b0", False, T0, T0)])  # refunded: it leaves its window too
    probe.snapshot(settings)
    assert [w["orders"] for w in probe.figures()["windows"]["60s"]] == [10, 9]


def test_later_reads_find_new_files_of_a_table_partitioned_by_minute(tmp_path):
    """order_payments_enriched is partitioned by published_minute: its files sit in folders whose names the Delta
    log spells percent-encoded."""
    settings = dataclasses.replace(Settings.from_env(), lakehouse_uri=str(tmp_path / "lake"))
    schema = SCHEMA.append(pa.field("published_minute", pa.timestamp("us", "UTC")))
    uri = ORDER_PAYMENTS_ENRICHED.uri(settings)

    def write(order_id: str, at: datetime) -> None:
        write_deltalake(uri, pa.table([pa.array([v], f.type) for v, f in zip(
            (order_id, True, at, at, at.replace(second=0)), schema)], schema=schema), mode="append",
            partition_by=["published_minute"])

    probe = LatencyProbe(started=T0)
    write("o1", T0)
    assert set(probe.snapshot(settings)) == {"o1"}
    probe.visible(probe.snapshot(settings), T0.timestamp() + 1.0)
    write("o2", T0 + timedelta(minutes=1))
    assert set(probe.snapshot(settings)) == {"o2"}
