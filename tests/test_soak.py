"""The soak's reconciliation must count what Kafka really holds: a user reads its MISMATCH lines as lost or doubled
events, so a miscount there is a false alarm (or a hidden loss)."""

from __future__ import annotations

import os
import random
import time
from collections import Counter

import pytest

from generator import generate
from generator.events import DUPLICATE
from pipeline.kafka_tally import kafka_tally, tally
from pipeline.soak_runs import FAILED, KILLED, OK, STOPPED, Component, describe, kill_plan, last_error_line, run_summary


@pytest.fixture(params=["tansu", "apache-kafka"])
def any_broker(request):
    """Per-test settings on the session's Tansu or Apache Kafka (fresh topics either way)."""
    return request.getfixturevalue("settings" if request.param == "tansu" else "kafka_settings")


def test_kafka_count_is_every_message_the_generator_delivered(any_broker):
    # The generator's own producer (batched on both stacks) and a scenario with redeliveries and dirty records.
    # Summing Tansu's high watermarks gave 6 here (one per partition): the soak's false "MISMATCH in kafka messages".
    result = generate(any_broker, events=1500, scenario="late_and_duplicates", seed=5)
    assert result.failed == 0 and result.manifest["sent"] == 1500
    found = kafka_tally(any_broker.kafka_bootstrap, any_broker.topics)
    assert sum(t.messages for t in found.values()) == 1500
    for topic, sent in result.manifest["per_topic"].items():
        assert found[topic].messages == sent["sent"]
        assert found[topic].digest == sent["value_digest"]
        assert found[topic].repeated == sent["kinds"].get(DUPLICATE, 0) > 0


def test_a_copy_counts_as_repeated_and_changes_the_digest():
    one = tally([("t", b"a"), ("t", b"b")], topics=["t", "empty"])
    two = tally([("t", b"a"), ("t", b"b"), ("t", b"a")])
    assert (one["t"].messages, one["t"].repeated, one["empty"].messages) == (2, 0, 0)
    assert (two["t"].messages, two["t"].repeated) == (3, 1)
    assert one["t"].digest != two["t"].digest
    assert tally([("t", b"b"), ("t", b"a")])["t"].digest == one["t"].digest  # order does not matter


def test_kills_go_round_robin_so_every_victim_is_killed_several_times():
    victims = ["bronze", "silver", "gold", "broker"]
    plan = kill_plan(victims, seconds=180, kill_every=10, rng=random.Random(13))
    counts = Counter(victim for _, victim in plan)
    assert set(counts) == set(victims) and max(counts.values()) - min(counts.values()) <= 1
    assert min(counts.values()) >= 3
    times = [at for at, _ in plan]
    assert times == sorted(times) and 0 < times[0] and times[-1] < 180
    assert plan == kill_plan(victims, seconds=180, kill_every=10, rng=random.Random(13))  # seeded: repeatable


def test_no_kills_without_victims_or_interval():
    assert kill_plan([], 60, 10, random.Random(1)) == []
    assert kill_plan(["gold"], 60, 0, random.Random(1)) == []


def test_the_error_line_of_a_failed_run_is_its_one_line_error():
    log = ("--- soak: gold run 3 ---\n12:00:01  Running with dbt=1.11\n"
           "ecomlake gold: error: silver tables not found under /lake/silver: quarantine\n")
    assert last_error_line(log, "gold").startswith("ecomlake gold: error: silver tables not found")
    assert last_error_line("a\nTraceback\nValueError: bad\n\n", "gold") == "ValueError: bad"
    assert last_error_line("only a line\n", "gold") == "only a line"
    assert last_error_line("", "gold") == ""


def test_each_run_is_explained_killed_by_the_soak_failed_on_its_own_or_stopped(tmp_path, monkeypatch):
    monkeypatch.setattr("pipeline.soak_runs.RETRY_AFTER_FAILURE_S", 0.0)
    monkeypatch.setattr("pipeline.soak_runs.CLI", ["-c"])
    code = ("import os, sys, time\n"
            "runs = len(open(sys.argv[1]).read().split('--- soak')) - 1\n"
            "if runs == 1: time.sleep(60)\n"  # the first run is killed by the soak
            "if runs == 2: sys.exit('ecomlake job: error: silver tables not found')\n"
            "time.sleep(60)\n")  # the third runs until stopped
    part = Component("job", [code, str(tmp_path / "job.log")], {**os.environ}, tmp_path, once=True)
    part.start()
    time.sleep(0.3)
    assert part.kill()
    deadline = time.monotonic() + 20
    while len(part.runs) < 3 and time.monotonic() < deadline:
        part.tick()
        time.sleep(0.05)
    part.stop()
    assert [r.outcome for r in part.runs] == [KILLED, FAILED, STOPPED]
    assert part.runs[1].error == "ecomlake job: error: silver tables not found"
    summary = run_summary(part.runs)
    error = "failed on its own: ecomlake job: error: silver tables not found"
    assert summary["failures"] == [{"count": 1, "error": error}]
    text = describe("job", summary)
    assert "1 killed by the soak" in text and "1x failed on its own: ecomlake job: error: silver tables" in text


def test_gold_waits_for_silver_tables_instead_of_failing_until_then(tmp_path, monkeypatch):
    monkeypatch.setattr("pipeline.soak_runs.CLI", ["-c"])
    tables = tmp_path / "silver-tables"
    silver = Component("silver", [f"import time, pathlib; time.sleep(0.5); pathlib.Path({str(tables)!r}).touch()"],
                       {**os.environ}, tmp_path, once=False)
    gold = Component("gold", ["pass"], {**os.environ}, tmp_path, once=False, wait_for=tables.exists)
    silver.begin()
    gold.begin()
    assert gold.runs == [] and not gold.kill()  # nothing to kill yet
    deadline = time.monotonic() + 20
    while not gold.runs and time.monotonic() < deadline:
        silver.tick()
        gold.tick()
        time.sleep(0.05)
    assert [r.outcome for r in silver.runs] == [OK] and len(gold.runs) == 1
    gold.stop()
    silver.stop()


def test_a_gold_build_interrupted_inside_dbt_ends_as_interrupted_not_as_an_index_error():
    from types import SimpleNamespace

    from gold.build import _check

    with pytest.raises(KeyboardInterrupt):
        _check(SimpleNamespace(exception=KeyboardInterrupt(), result=None))
