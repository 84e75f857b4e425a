"""End to end: generator -> embedded broker -> bronze -> silver -> gold (dbt, duckdb target), twice.

The generator's stream is published in two parts with a full pipeline run after each. Gold per minute must equal
tests/reference.py (an independent model of silver and gold computed from the raw messages) to the cent after
each run; the second run is incremental and must restate minutes whose orders a late payment made fully paid.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal

import duckdb
import pytest

import reference
from gold import build as gold
from kafka_io import publish

pytestmark = pytest.mark.slow

EVENTS = 1500
SPLIT = 900
CENT = Decimal("0.01")


def gold_minutes(settings) -> dict[datetime, tuple[Decimal, int]]:
    """Minutes with paid orders: gmv rounded to the cent like the reference (half up), paid_orders."""
    with duckdb.connect(settings.warehouse_path, read_only=True) as con:
        rows = con.execute("select minute_bucket, gmv, paid_orders from gold.fct_sales_minute where paid_orders > 0").fetchall()
    return {m.astimezone(timezone.utc): (g.quantize(CENT, rounding=ROUND_HALF_UP), n) for m, g, n in rows}


def test_gold_matches_reference_across_two_incremental_runs(settings, spark, capsys):
    from batch.silver.jobs import run_silver
    from generator.events import generate_records
    from generator.publish import ensure_topics
    from streaming.bronze import run_available_now

    records = list(generate_records("late_and_duplicates", seed=7, start=datetime.now(timezone.utc) - timedelta(minutes=8),
                                    rate=10, topics=settings.topics, count=EVENTS))
    ensure_topics(settings)
    models, golds = [], []
    for part in (records[:SPLIT], records[SPLIT:]):
        publish(settings, part)
        run_available_now(spark, settings)
        run_silver(spark, settings)
        result = gold.build(settings)
        assert result.success, gold.node_failures(result)
        model = reference.build(reference.from_records(records[:SPLIT] if not models else records),
                                order_topic=settings.topic_order_events, payment_topic=settings.topic_payment_events)
        expected = {m: (row.gmv, row.paid_orders) for m, row in model.gold.items()}
        got = gold_minutes(settings)
        assert got == expected
        models.append(model)
        golds.append(got)

    first, second = models
    late_paid = [oid for oid, row in first.enriched.items() if not row.fully_paid and second.enriched[oid].fully_paid]
    assert late_paid, "the stream should hold late payments completing orders of the first part"
    restated = {second.enriched[oid].order_ts.replace(second=0, microsecond=0) for oid in late_paid}
    assert all(golds[1][m] != golds[0].get(m) for m in restated)
    assert sum(n for _, n in golds[1].values()) > sum(n for _, n in golds[0].values())

    with gold._environ(gold.dbt_env(settings)):
        capsys.readouterr()
        assert gold.freshness_main([]) == 0
        assert capsys.readouterr().out.splitlines()[-1] == "freshness: PASS 3"
        assert gold.freshness_main(["--warn-after", "0"]) == 0
        assert capsys.readouterr().out.splitlines()[-1] == "freshness: WARN 3"
        assert gold.freshness_main(["--warn-after", "0", "--error-after", "0"]) == 1
        assert capsys.readouterr().out.splitlines()[-1] == "freshness: ERROR 3"
