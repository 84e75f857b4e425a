"""The soak's reconciliation must count what Kafka really holds: a user reads its MISMATCH lines as lost or doubled
events, so a miscount there is a false alarm (or a hidden loss)."""

from __future__ import annotations

import pytest

from generator import generate
from pipeline.soak import kafka_messages


@pytest.fixture(params=["tansu", "apache-kafka"])
def any_broker(request):
    """Per-test settings on the session's Tansu or Apache Kafka (fresh topics either way)."""
    return request.getfixturevalue("settings" if request.param == "tansu" else "kafka_settings")


def test_kafka_count_is_every_message_the_generator_delivered(any_broker):
    # The generator's own producer (batched on both stacks) and a scenario with redeliveries and dirty records.
    result = generate(any_broker, events=1500, scenario="late_and_duplicates", seed=5)
    assert result.failed == 0 and result.manifest["sent"] == 1500
    assert kafka_messages(any_broker) == 1500
