"""The continuous services (#11): silver cycles on every bronze commit and gold builds on every silver commit, with a
warm Spark session and a parsed dbt project, and the tables they leave equal what the batch commands build."""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta

import duckdb
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from batch.silver.jobs import run_silver
from batch.silver.order_minutes import OrderMinutes
from batch.silver.service import SilverService
from conftest import REPO, cli_env
from ecomlake import tables
from ecomlake.errors import EcomlakeError
from ecomlake.lake import get_engine
from ecomlake.lake.delta_rs import DeltaRsEngine
from gold.build import run_gold, warehouse_kept_open
from gold.build_process import BuildProcess
from gold.service import GoldService
from silver_rows import T0, Msg, bronze_df, order, payment

later = lambda seconds: T0 + timedelta(seconds=seconds)  # noqa: E731


def append(spark, settings, orders, payments, batch_id):
    lake = get_engine(spark, settings)
    for table, topic, msgs in ((tables.ORDERS_RAW, settings.topic_order_events, orders),
                               (tables.PAYMENTS_RAW, settings.topic_payment_events, payments)):
        if msgs:
            lake.append_batch(bronze_df(spark, topic, msgs), table.uri(settings), "test-bronze", batch_id)


def silver_rows(settings) -> dict:
    return {t.name: sorted(map(str, DeltaTable(t.uri(settings)).to_pyarrow_table(
        columns=[c for c in t.columns if c not in ("ingest_ts", "updated_ts", "quarantined_ts")]).to_pylist()))
        for t in tables.in_layer("silver") if DeltaTable.is_deltatable(t.uri(settings))}


def gold_minutes(settings, path: str | None = None) -> list:
    with duckdb.connect(path or settings.warehouse_path, read_only=True) as con:
        return con.execute("select minute_bucket, gmv, paid_orders from gold.fct_sales_minute order by 1").fetchall()


BATCHES = [
    ([Msg(order("o1", total_amount=20.50), 0, published=later(0)), Msg(order("o2", total_amount=5), 1)],
     [Msg(payment("o1", 2050), 0, published=later(1))]),
    ([Msg(order("o3", total_amount=7, at=later(70)), 2)],
     [Msg(payment("o2", 500, at=later(65)), 1), Msg("{broken", 2), Msg(payment("o3", 700, at=later(71)), 3)]),
]


def test_services_follow_each_commit_and_build_what_the_batch_commands_build(spark, settings, tmp_path):
    silver_cycles, gold_builds = [], []
    silver = SilverService(spark, settings, on_cycle=lambda cycle, figures: silver_cycles.append(cycle))
    gold = GoldService(settings, after_build=lambda cycle, result, context: gold_builds.append(result["status"]))
    assert silver.cycle() is None and gold.cycle() is None, "nothing to do before bronze and silver exist"

    append(spark, settings, *BATCHES[0], 0)
    first = silver.cycle()
    assert first is not None and first.rows_read == 3 and first.spark_jobs > 0
    assert silver.cycle() is None, "no new bronze commit, no cycle"
    assert gold.cycle() is not None and gold_builds == ["ok"]
    assert gold.cycle() is None, "no new silver commit, no build"

    threads = [threading.Thread(target=s.run, daemon=True) for s in (silver, gold)]
    for thread in threads:
        thread.start()
    try:
        append(spark, settings, *BATCHES[1], 1)
        deadline = time.monotonic() + 180

        def caught_up() -> bool:
            worked = [c for c in silver_cycles if c.rows_read]
            return silver.rows_read == 7 and bool(gold.cycles) and gold.cycles[-1].finished_at > worked[-1].finished_at

        while not caught_up() and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        silver.stop.set()
        gold.stop.set()
        for thread in threads:
            thread.join(120)
    assert caught_up(), (silver_cycles, gold.cycles)
    assert sum(c.rows_read for c in silver_cycles) == 7, "each bronze row is read once"
    restarted = OrderMinutes(settings)
    restarted.follow(DeltaRsEngine(None, settings))
    assert restarted.loaded, "the next process starts from the order index the service saved when it stopped"
    assert restarted.ranges(pa.array(["o1", "o2", "o3", "none"]))[0].tolist() == [True, True, True, False]
    assert set(gold_builds) == {"ok"}
    continuous = (silver_rows(settings), gold_minutes(settings))

    batch = dataclasses.replace(settings, lakehouse_uri=str(tmp_path / "batch-lake"), run_dir=str(tmp_path / "run-b"))
    for i, (orders, payments) in enumerate(BATCHES):
        append(spark, batch, orders, payments, i)
    run_silver(spark, batch)
    assert run_gold(batch, tests=False)["status"] == "ok"
    assert continuous == (silver_rows(batch), gold_minutes(batch))
    assert [m[2] for m in continuous[1]] == [2, 1], "o1 and o2 (paid later) in their order minute; o3 in the next"


def test_continuous_builds_publish_the_sales_fact_before_the_other_facts(spark, settings, monkeypatch):
    """A continuous build (setup=False) publishes gold's read snapshot twice: first with fct_sales_minute built on
    the new silver and the other facts as they were, then with everything; `sales_visible_at` is the first."""
    import gold.build as gold_build

    append(spark, settings, *BATCHES[0], 0)
    run_silver(spark, settings)
    assert run_gold(settings, tests=False)["status"] == "ok"
    append(spark, settings, *BATCHES[1], 1)
    run_silver(spark, settings)

    published, publish = [], gold_build.publish_read_snapshot

    def recording(s):
        path = publish(s)
        with duckdb.connect(str(path), read_only=True) as con:
            published.append((time.time(), *(con.execute(sql).fetchone()[0] for sql in (
                "select sum(paid_orders) from gold.fct_sales_minute",
                "select sum(attempts) from gold.fct_payments_minute",
                "select count(*) from gold.fct_quarantine_minute"))))
        return path

    monkeypatch.setattr(gold_build, "publish_read_snapshot", recording)
    result = run_gold(settings, tests=False, setup=False)
    assert result["status"] == "ok", result
    assert [p[1:] for p in published] == [(3, 1, 0), (3, 3, 1)], "sales first, then the payments and quarantine facts"
    assert published[0][0] <= result["sales_visible_at"] <= published[1][0]


def test_the_service_builds_the_other_facts_at_most_every_interval_and_catches_up(spark, settings):
    """GOLD_OTHER_FACTS_EVERY_SECONDS: a silver commit inside the interval builds fct_sales_minute only; once the
    interval has passed the other facts catch up, without a new silver commit."""
    def facts() -> tuple:
        with duckdb.connect(settings.warehouse_read_path, read_only=True) as con:
            return tuple(con.execute(sql).fetchone()[0] for sql in (
                "select sum(paid_orders) from gold.fct_sales_minute",
                "select sum(attempts) from gold.fct_payments_minute",
                "select count(*) from gold.fct_quarantine_minute"))

    gold = GoldService(dataclasses.replace(settings, gold_other_facts_every_s=3600))
    append(spark, settings, *BATCHES[0], 0)
    run_silver(spark, settings)
    first = gold.cycle()
    assert (first.built, facts()) == ("all", (1, 1, 0))
    append(spark, settings, *BATCHES[1], 1)
    run_silver(spark, settings)
    sales = gold.cycle()
    assert sales.built == "sales" and sales.sales_visible_at is not None
    assert facts() == (3, 1, 0), "the sales fact follows silver; the others wait for their interval"
    assert gold.cycle() is None and not gold.others_due()

    gold.settings = dataclasses.replace(gold.settings, gold_other_facts_every_s=0)
    assert gold.others_due()
    others = gold.cycle()
    assert others.built == "others" and others.sales_visible_at is None
    assert facts() == (3, 3, 1)
    assert gold.cycle() is None, "all caught up: nothing to build"


def test_gold_builds_in_its_child_process_and_a_dead_child_is_one_line(spark, settings):
    """The demo's gold service builds in a child process: the same gold, the child ends with the service, and a
    child that died fails the next build with one line instead of a hang."""
    for i, batch in enumerate(BATCHES):
        append(spark, settings, *batch, i)
    run_silver(spark, settings)
    builds = BuildProcess(settings)
    gold = GoldService(settings, build_process=builds)
    try:
        done = gold.cycle()
        assert done is not None and done.status == "ok"
        read = gold_minutes(settings, settings.warehouse_read_path)  # the child holds the warehouse between builds
        assert [(float(gmv), paid) for _, gmv, paid in read] == [(25.5, 2), (7.0, 1)]
        assert gold.cycle() is None, "no new silver commit, no build"
    finally:
        gold.close()
    assert builds._process.exitcode == 0
    assert gold_minutes(settings) == read, "the child let the warehouse go when it ended"

    dead = BuildProcess(settings)
    dead._process.kill()
    dead._process.join()
    gold = GoldService(settings, build_process=dead)
    with pytest.raises(EcomlakeError, match=r"^gold's build process ended during a build \(exit code -9\)$"):
        gold.cycle(force=True)
    gold.close()


def test_builds_keep_the_warehouse_open_publish_each_build_and_release_it_at_the_end(spark, settings):
    """Gold's build process keeps dbt-duckdb's database open from one build to the next (gold.build.
    warehouse_kept_open): every build still reaches the read snapshot, the warehouse stays held by this process
    between builds, and another process can open it once the builds end."""
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    def paid_orders_read() -> int:
        with duckdb.connect(settings.warehouse_read_path, read_only=True) as con:
            return con.execute("select sum(paid_orders) from gold.fct_sales_minute").fetchone()[0]

    def opens_elsewhere() -> bool:
        code = f"import duckdb; duckdb.connect({settings.warehouse_path!r}).close()"
        return subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0

    append(spark, settings, *BATCHES[0], 0)
    run_silver(spark, settings)
    with warehouse_kept_open():
        assert run_gold(settings, tests=False)["status"] == "ok"
        kept = DuckDBConnectionManager._ENV.conn
        assert kept is not None and paid_orders_read() == 1
        assert not opens_elsewhere(), "between builds the warehouse is still held open"
        append(spark, settings, *BATCHES[1], 1)
        run_silver(spark, settings)
        assert run_gold(settings, tests=False, setup=False)["status"] == "ok"
        assert DuckDBConnectionManager._ENV.conn is kept, "the second build ran on the database kept open"
        assert paid_orders_read() == 3 and not opens_elsewhere()
    assert DuckDBConnectionManager._ENV is None and opens_elsewhere()
    assert [(float(gmv), paid) for _, gmv, paid in gold_minutes(settings)] == [(25.5, 2), (7.0, 1)]


def test_silver_continuous_command_cycles_on_new_bronze_and_stops_cleanly_on_sigterm(spark, settings):
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "silver", "--continuous"], cwd=REPO,
                            env=cli_env(settings), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "Ctrl-C to stop" in line:
                break
        append(spark, settings, *BATCHES[0], 0)
        for line in proc.stdout:
            lines.append(line)
            if "cycle 1:" in line:
                break
        assert "read 3 bronze rows" in lines[-1] and "Spark jobs" in lines[-1], lines
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, "".join(lines) + rest
    assert "stopped after 1 cycles" in rest and "Traceback" not in "".join(lines) + rest
    assert DeltaTable(tables.ORDER_PAYMENTS_ENRICHED.uri(settings)).to_pyarrow_table().num_rows == 2


def test_silver_service_compacts_every_nth_cycle_and_reads_no_row_twice(spark, settings, tmp_path):
    """SILVER_COMPACT_EVERY=2: the second cycle leaves one file per table partition; the third reads only its own
    bronze rows and recomputes only the orders they touch (a compaction is no data change), and silver equals what
    the batch command builds from the same bronze."""
    compacting = dataclasses.replace(settings, silver_compact_every=2)
    batches = [*BATCHES, ([Msg(order("o4", total_amount=3, at=later(130)), 3)],
                          [Msg(payment("o4", 300, at=later(131)), 4)])]
    figures = []
    silver = SilverService(spark, compacting, on_cycle=lambda cycle, by_job: figures.append(by_job))
    cycles = []
    for i, (orders, payments) in enumerate(batches):
        append(spark, compacting, orders, payments, i)
        cycles.append(silver.cycle())
        if i == 1:
            for table in tables.in_layer("silver"):
                files = pa.table(DeltaTable(table.uri(compacting)).get_add_actions(flatten=True)).to_pylist()
                partitions = {f.get("partition.event_date") for f in files}
                assert len(files) == len(partitions), (table.name, files)
    assert [c.compacted for c in cycles] == [False, True, False]
    assert [c.rows_read for c in cycles] == [3, 4, 2]
    assert figures[-1]["enrich"]["read"] == 1, "only o4 is recomputed after the compaction"

    batch = dataclasses.replace(settings, lakehouse_uri=str(tmp_path / "batch-lake"), run_dir=str(tmp_path / "run-b"))
    for i, (orders, payments) in enumerate(batches):
        append(spark, batch, orders, payments, i)
    run_silver(spark, batch)
    assert silver_rows(compacting) == silver_rows(batch)
