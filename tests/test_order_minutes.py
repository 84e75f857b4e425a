"""Silver's order index (batch/silver/order_minutes.py): per order id, the publication minutes its rows are in,
following the event tables' Delta logs whoever writes them, and starting again when it cannot follow."""

from __future__ import annotations

import dataclasses
import shutil
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest
from deltalake import write_deltalake

from batch.silver import order_minutes
from batch.silver.order_minutes import OrderMinutes
from ecomlake.lake.delta_rs import DeltaRsEngine
from ecomlake.settings import Settings
from ecomlake.tables import ORDER_EVENTS, PAYMENTS_CLEAN

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
TS = pa.timestamp("us", "UTC")


def write(settings, table, rows: list[tuple[str, int]], mode: str = "append") -> None:
    """Rows (order id, minutes after T0) into a table laid out like silver's event tables."""
    write_deltalake(table.uri(settings), pa.table({
        "order_id": pa.array([o for o, _ in rows]),
        "published_minute": pa.array([T0 + timedelta(minutes=m) for _, m in rows], TS)}),
        mode=mode, partition_by=["published_minute"])


def new_lake(tmp_path) -> tuple[Settings, DeltaRsEngine]:
    settings = dataclasses.replace(Settings.from_env(), lakehouse_uri=str(tmp_path / "lake"))
    return settings, DeltaRsEngine(None, settings)


def minutes(index, *order_ids) -> dict:
    known, lo, hi = index.ranges(pa.array(order_ids))
    return {o: (int(a) - int(T0.timestamp() // 60), int(b) - int(T0.timestamp() // 60))
            for o, k, a, b in zip(order_ids, known, lo, hi) if k}


@pytest.mark.parametrize("merge_at", [1, 10**9], ids=["merged", "kept-aside"])
def test_the_index_follows_both_event_tables_and_widens_an_orders_range(tmp_path, monkeypatch, merge_at):
    monkeypatch.setattr(order_minutes, "MERGE_AT", merge_at)
    settings, lake = new_lake(tmp_path)
    write(settings, ORDER_EVENTS, [("a", 0), ("b", 1)])
    index = OrderMinutes(settings)
    index.follow(lake)
    assert minutes(index, "a", "b", "new") == {"a": (0, 0), "b": (1, 1)}, "an unknown order is not looked up"

    write(settings, PAYMENTS_CLEAN, [("a", 3), ("c", 2)])
    write(settings, ORDER_EVENTS, [("a", 1)])
    index.follow(lake)
    assert minutes(index, "a", "b", "c") == {"a": (0, 3), "b": (1, 1), "c": (2, 2)}
    ids, parts = index.minutes(pa.array(["a", "new"]))
    assert ids.to_pylist() == ["a"]
    assert [p - T0 for p in parts.to_pylist()] == [timedelta(minutes=m) for m in range(4)]


def test_a_table_replaced_at_the_same_place_is_read_again(tmp_path):
    settings, lake = new_lake(tmp_path)
    write(settings, ORDER_EVENTS, [("a", 0)])
    write(settings, ORDER_EVENTS, [("b", 0)])
    index = OrderMinutes(settings)
    index.follow(lake)
    shutil.rmtree(ORDER_EVENTS.uri(settings))
    write(settings, ORDER_EVENTS, [("z", 5)])  # a new lake at the same place: version 0 again
    index.follow(lake)
    assert minutes(index, "a", "b", "z") == {"z": (5, 5)}


@pytest.mark.parametrize("merge_at", [1, 10**9], ids=["merged", "kept-aside"])
def test_a_new_process_starts_from_the_saved_index_and_follows_the_commits_since(tmp_path, monkeypatch, merge_at):
    monkeypatch.setattr(order_minutes, "MERGE_AT", merge_at)
    settings, lake = new_lake(tmp_path)
    write(settings, ORDER_EVENTS, [("a", 0), ("b", 1)])
    write(settings, PAYMENTS_CLEAN, [("a", 2)])
    first = OrderMinutes(settings)
    first.follow(lake)
    first.follow(lake)
    assert first.save() == (2 if merge_at == 1 else 3), "every order, in the sorted part and those kept aside"

    write(settings, ORDER_EVENTS, [("b", 4), ("c", 5)])  # committed while no process followed
    restarted = OrderMinutes(settings)
    restarted.follow(lake)
    assert restarted.loaded
    assert minutes(restarted, "a", "b", "c", "new") == {"a": (0, 2), "b": (1, 4), "c": (5, 5)}


def test_a_save_that_does_not_match_the_tables_is_ignored(tmp_path):
    settings, lake = new_lake(tmp_path)
    write(settings, ORDER_EVENTS, [("a", 0)])
    write(settings, PAYMENTS_CLEAN, [("a", 1)])
    saved = OrderMinutes(settings)
    saved.follow(lake)
    saved.save()

    shutil.rmtree(ORDER_EVENTS.uri(settings))
    write(settings, ORDER_EVENTS, [("z", 5)])  # another table at the same place
    replaced = OrderMinutes(settings)
    replaced.follow(lake)
    assert not replaced.loaded
    assert minutes(replaced, "a", "z") == {"a": (1, 1), "z": (5, 5)}

    with open(saved.saved_uri, "wb") as damaged:
        damaged.write(b"not an Arrow file")
    unreadable = OrderMinutes(settings)
    unreadable.follow(lake)
    assert not unreadable.loaded
    assert minutes(unreadable, "a", "z") == {"a": (1, 1), "z": (5, 5)}
