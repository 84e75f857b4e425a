"""Silver's one-pass cycle (batch/silver/one_pass.py) writes what the Spark jobs write: the same bronze, in the same
increments, through each path into its own lake, gives the same rows in every silver table and the same figures."""

from __future__ import annotations

import dataclasses
import json
import shutil
from datetime import datetime, timezone

import pytest
from deltalake import write_deltalake

from batch.silver.jobs import run_silver
from crashing_engine import CrashingEngine, SimulatedCrash
from ecomlake import tables
from ecomlake.lake import get_engine
from ecomlake.lake.delta_rs import DeltaRsEngine
from generator.events import generate_records
from pipeline.bronze_rows import BronzeRows

START = datetime(2026, 11, 1, tzinfo=timezone.utc)
IGNORED = {"quarantined_ts", "updated_ts"}  # each run's own clock
CRASH_AFTER = (1, 3, 5)  # of a cycle's six commits: mid-orders, between orders and payments, before enrichment


def records(settings):
    """Duplicates, late and early events, cancels, refunds, contract breakers, and a copy of a captured payment with
    another amount (a conflicting duplicate) a few hundred records after the original."""
    stream = [*generate_records("late_and_duplicates", seed=11, start=START, topics=settings.topics, count=1500),
              *generate_records("dirty", seed=12, start=START, topics=settings.topics, count=600)]
    stream.sort(key=lambda r: r.at)
    captured = next(r for r in stream if r.topic == settings.topic_payment_events
                    and json.loads(r.value).get("status") == "captured")
    forged = dict(json.loads(captured.value), amount_cents=1)
    stream.insert(1200, captured._replace(value=json.dumps(forged).encode(), at=stream[1199].at))
    return stream


def silver_rows(lake, settings) -> dict[str, list]:
    found = {}
    for table in tables.in_layer("silver"):
        columns = [c for c in table.columns if c not in IGNORED]
        found[table.name] = sorted(tuple(row) for row in lake.read(table.uri(settings)).select(*columns).collect())
    return found


def test_the_one_pass_cycle_writes_what_the_jobs_write(spark, settings):
    lakes = {"jobs": dataclasses.replace(settings, lakehouse_uri=settings.lakehouse_uri + "-jobs"),
             "one_pass": dataclasses.replace(settings, lakehouse_uri=settings.lakehouse_uri + "-one-pass")}
    engines = {name: get_engine(spark, s) for name, s in lakes.items()}
    writers = {name: BronzeRows(spark, engines[name], s, START) for name, s in lakes.items()}
    stream = records(settings)
    figures = {name: [] for name in lakes}
    for part in range(4):
        increment = stream[part * len(stream) // 4:(part + 1) * len(stream) // 4]
        for name, s in lakes.items():
            writers[name].append(increment)
            if name == "one_pass" and part == 3:
                for after in CRASH_AFTER:
                    shutil.copytree(s.lakehouse_uri, f"{s.lakehouse_uri}-crash-{after}")
            figures[name].append(run_silver(spark, s, lake=engines[name], in_one_pass=name == "one_pass",
                                            compact=part == 1))

    # The first cycle creates the tables (the jobs do that); every later one runs in one pass, also after a
    # compaction (which commits to the tables but changes no data).
    assert [run["orders"]["one_pass"] for run in figures["one_pass"]] == [False, True, True, True]
    assert silver_rows(engines["one_pass"], lakes["one_pass"]) == silver_rows(engines["jobs"], lakes["jobs"])
    counted = ("read", "valid", "duplicates", "quarantined", "written")
    for job in ("orders", "payments"):
        assert [[run[job][k] for k in counted] for run in figures["one_pass"]] == \
            [[run[job][k] for k in counted] for run in figures["jobs"]]
    conflicts = engines["one_pass"].read(tables.QUARANTINE.uri(lakes["one_pass"])).filter(
        "reason = 'conflicting_duplicate:event_id'").count()
    assert conflicts == 1

    # Nothing new: nothing read, nothing committed.
    versions = {t.name: engines["one_pass"].version(t.uri(lakes["one_pass"])) for t in tables.in_layer("silver")}
    again = run_silver(spark, lakes["one_pass"], lake=engines["one_pass"], in_one_pass=True)
    assert again["orders"]["one_pass"] and again["orders"]["read"] == again["payments"]["read"] == 0
    assert versions == {t.name: engines["one_pass"].version(t.uri(lakes["one_pass"]))
                        for t in tables.in_layer("silver")}

    # A compaction with nothing new, then a cycle: enrichment moves past the compaction's commits, in one pass.
    run_silver(spark, lakes["one_pass"], lake=engines["one_pass"], in_one_pass=True, compact=True)
    after = run_silver(spark, lakes["one_pass"], lake=engines["one_pass"], in_one_pass=True)
    assert after["enrich"]["one_pass"] and after["enrich"]["read"] == 0
    assert silver_rows(engines["one_pass"], lakes["one_pass"]) == silver_rows(engines["jobs"], lakes["jobs"])

    # A crash after any commit of a one-pass cycle (with its tables kept open, as the service keeps them), then the
    # next cycle: the jobs complete each target from where it stopped, and silver is what it would have been.
    for after in CRASH_AFTER:
        crashed = dataclasses.replace(lakes["one_pass"],
                                      lakehouse_uri=f"{lakes['one_pass'].lakehouse_uri}-crash-{after}")
        lake = CrashingEngine(spark, crashed, survive=after)
        with lake.kept_open():
            with pytest.raises(SimulatedCrash):
                run_silver(spark, crashed, lake=lake, in_one_pass=True)
            lake.survive = -1
            rerun = run_silver(spark, crashed, lake=lake, in_one_pass=True)
        assert not rerun["orders"]["one_pass"], after
        assert silver_rows(lake, crashed) == silver_rows(engines["jobs"], lakes["jobs"]), after


def test_tables_kept_open_see_other_writers_commits(spark, settings):
    """The continuous service keeps its tables open between cycles; a commit from another process (a compaction by
    `ecomlake maintain`, a batch run) in between is read, and the next write goes on top of it."""
    import pyarrow as pa

    lake = DeltaRsEngine(spark, settings)
    uri = settings.lakehouse_uri + "-kept-open/t"
    rows = lambda *ids: pa.table({"order_id": list(ids), "n": [1] * len(ids)})  # noqa: E731
    lake.merge(rows("a"), uri, ["order_id"])
    with lake.kept_open():
        assert lake.version(uri) == 0
        write_deltalake(uri, rows("b"), mode="append")
        assert lake.version(uri) == 1
        assert lake.rows_matching(uri, {"order_id": pa.array(["b"])})["order_id"].to_pylist() == ["b"]
        lake.merge(rows("b", "c"), uri, ["order_id"], app_id="app", txn_version=7)
        assert lake.append_batch(rows("d"), uri, "app", 7) is False, "the merge's transaction was not seen"
        assert lake.append_batch(rows("d"), uri, "app", 8) is True
    assert sorted(lake.read(uri).toPandas()["order_id"]) == ["a", "b", "c", "d"]
    assert lake.txn_version(uri, "app") == 8


def test_a_backlog_is_taken_a_slice_a_cycle_in_one_pass(spark, settings, monkeypatch):
    """Bronze commits that add more rows than a cycle takes (after a restart, a slow cycle) are worked off in
    one-pass cycles of whole commits, oldest first, the service running the next at once; silver ends as the jobs
    leave it. The jobs' merges read whole tables: on a lake with a day of history a cycle of theirs takes minutes."""
    from batch.silver import one_pass
    from batch.silver.service import SilverService

    lakes = {"jobs": dataclasses.replace(settings, lakehouse_uri=settings.lakehouse_uri + "-backlog-jobs"),
             "sliced": dataclasses.replace(settings, lakehouse_uri=settings.lakehouse_uri + "-backlog-sliced")}
    engines = {name: get_engine(spark, s) for name, s in lakes.items()}
    writers = {name: BronzeRows(spark, engines[name], s, START) for name, s in lakes.items()}
    stream = records(settings)
    parts = [stream[p * len(stream) // 4:(p + 1) * len(stream) // 4] for p in range(4)]
    for name, s in lakes.items():
        writers[name].append(parts[0])
        run_silver(spark, s, lake=engines[name])  # creates the tables
        for part in parts[1:]:
            writers[name].append(part)
    per_job = [[sum(r.topic == topic for r in part) for topic in settings.topics] for part in parts[1:]]
    budget = max(max(counts) for counts in per_job)
    assert all(min(a, b) * 2 > budget for a, b in zip(per_job[0], per_job[1])), "parts too uneven for the test"
    monkeypatch.setattr(one_pass, "MAX_INCREMENT_ROWS", 2 * budget)

    service = SilverService(spark, lakes["sliced"], lake=engines["sliced"])
    cycles, figures = [], []
    service.on_cycle = lambda cycle, f: (cycles.append(cycle), figures.append(f))
    with engines["sliced"].kept_open():
        while service.cycle() is not None:
            assert len(cycles) <= 3, "the backlog was not worked off in three cycles"
    assert len(cycles) == 3
    assert all(f["orders"]["one_pass"] for f in figures)
    assert [f["orders"]["read"] for f in figures] == [counts[0] for counts in per_job]
    assert [f["payments"]["read"] for f in figures] == [counts[1] for counts in per_job]
    run_silver(spark, lakes["jobs"], lake=engines["jobs"])
    assert silver_rows(engines["sliced"], lakes["sliced"]) == silver_rows(engines["jobs"], lakes["jobs"])
