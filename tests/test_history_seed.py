"""The sustained bench's history (pipeline/bench/history.py): a lake written in bulk that silver and gold take up as
their own. Gold over it holds exactly the history; the first silver cycle after it runs in one pass; and the same
history plus the same new bronze gives the same silver through the jobs and through one pass."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from urllib.parse import unquote

import duckdb

from batch.silver.jobs import run_silver
from ecomlake import tables
from ecomlake.lake import get_engine
from generator.events import generate_records
from gold.build import run_gold
from pipeline.bench.history import uuids, write_history
from pipeline.bronze_rows import BronzeRows

START = datetime(2026, 11, 2, tzinfo=timezone.utc)
ORDERS = 2_500


def test_uuids_are_distinct_version_4_strings():
    import uuid

    import numpy as np

    ids = uuids(np.random.default_rng(1), 1000).to_pylist()
    assert len(set(ids)) == 1000
    assert all(uuid.UUID(i).version == 4 and str(uuid.UUID(i)) == i for i in ids)


def silver_rows(lake, settings) -> dict[str, list]:
    ignored = {"quarantined_ts", "updated_ts"}
    return {t.name: sorted(tuple(r) for r in lake.read(t.uri(settings)).select(
        *[c for c in t.columns if c not in ignored]).collect()) for t in tables.in_layer("silver")}


def test_history_is_taken_up_by_gold_and_by_both_silver_paths(spark, settings):
    lakes = {"jobs": dataclasses.replace(settings, lakehouse_uri=settings.lakehouse_uri + "-jobs"),
             "one_pass": dataclasses.replace(settings, lakehouse_uri=settings.lakehouse_uri + "-one-pass")}
    figures = {name: write_history(spark, s, ORDERS, START - timedelta(hours=1), timedelta(hours=6),
                                   progress=lambda line: None) for name, s in lakes.items()}
    assert figures["jobs"]["history_gmv_usd"] == figures["one_pass"]["history_gmv_usd"], "deterministic"

    gold = lakes["one_pass"]
    assert run_gold(gold, tests=False)["status"] == "ok"
    with duckdb.connect(gold.warehouse_path, read_only=True) as con:
        gmv, paid = con.execute("select sum(gmv), sum(paid_orders) from gold.fct_sales_minute").fetchone()
    assert (paid, Decimal(gmv)) == (ORDERS, Decimal(figures["one_pass"]["history_gmv_usd"]))

    stream = list(generate_records("late_and_duplicates", seed=5, start=START, topics=settings.topics, count=400))
    engines = {name: get_engine(spark, s) for name, s in lakes.items()}
    for name, s in lakes.items():
        BronzeRows(spark, engines[name], s, START).append(stream)
    one_pass = run_silver(spark, lakes["one_pass"], lake=engines["one_pass"], in_one_pass=True)
    jobs = run_silver(spark, lakes["jobs"], lake=engines["jobs"], in_one_pass=False)
    assert one_pass["orders"]["one_pass"], "the history's application transactions let the first cycle run in one pass"
    assert not jobs["orders"]["one_pass"]
    assert one_pass["orders"]["written"] > 0
    assert silver_rows(engines["one_pass"], lakes["one_pass"]) == silver_rows(engines["jobs"], lakes["jobs"])
    enriched = engines["one_pass"].read(tables.ORDER_PAYMENTS_ENRICHED.uri(lakes["one_pass"])).count()
    assert enriched > ORDERS


def _minute_of(file: Path) -> datetime:
    """The published_minute of a data file, from its partition folder."""
    folder = unquote(file.parent.name).removeprefix("published_minute=")
    return datetime.fromisoformat(folder).replace(tzinfo=timezone.utc)


def recent_rows(settings, table, since) -> list:
    """The table's rows in partitions from `since` on, read by partition (the older files are never opened)."""
    import pyarrow.dataset as ds
    from deltalake import DeltaTable

    ignored = {"quarantined_ts", "updated_ts"}
    dataset = DeltaTable(table.uri(settings)).to_pyarrow_dataset()
    rows = dataset.to_table(filter=ds.field("published_minute") >= since,
                            columns=[c for c in table.columns if c not in ignored])
    return sorted(tuple(r.values()) for r in rows.to_pylist())


def test_a_cycle_reads_and_rewrites_only_the_minutes_of_the_orders_it_touches(spark, settings):
    """After the first cycle, the files of the history's minutes are taken away: the later cycles (new orders,
    payments and cancellations of orders from that first cycle, duplicates) never open them, and write what the
    jobs, which read everything, write on a lake that keeps them."""
    from batch.silver import order_minutes

    lakes = {"jobs": dataclasses.replace(settings, lakehouse_uri=settings.lakehouse_uri + "-jobs"),
             "one_pass": dataclasses.replace(settings, lakehouse_uri=settings.lakehouse_uri + "-one-pass")}
    engines = {name: get_engine(spark, s) for name, s in lakes.items()}
    writers = {}
    for name, s in lakes.items():
        write_history(spark, s, ORDERS, START - timedelta(hours=1), timedelta(hours=6), progress=lambda line: None)
        writers[name] = BronzeRows(spark, engines[name], s, START)
    stream = list(generate_records("late_and_duplicates", seed=6, start=START, topics=settings.topics, count=900))
    parts = [stream[:300], stream[300:600], stream[600:]]
    history_files = []
    for i, part in enumerate(parts):
        for name, s in lakes.items():
            writers[name].append(part)
            figures = run_silver(spark, s, lake=engines[name], in_one_pass=name == "one_pass")
            assert figures["orders"]["one_pass"] == (name == "one_pass")
        if i == 0:
            index = order_minutes.for_lake(lakes["one_pass"])
            assert len(index) >= ORDERS, "the first cycle built the index from the tables"
            for table in (tables.ORDER_EVENTS, tables.PAYMENTS_CLEAN, tables.ORDERS_CLEAN,
                          tables.ORDER_PAYMENTS_ENRICHED):
                history_files += [f for f in Path(table.uri(lakes["one_pass"])).rglob("*.parquet")
                                  if _minute_of(f) < START]
            assert len(history_files) > 100
            for file in history_files:
                file.unlink()
    since = START - timedelta(minutes=20)
    for table in (tables.ORDER_EVENTS, tables.PAYMENTS_CLEAN, tables.ORDERS_CLEAN, tables.ORDER_PAYMENTS_ENRICHED):
        assert recent_rows(lakes["one_pass"], table, since) == recent_rows(lakes["jobs"], table, since), table.name
