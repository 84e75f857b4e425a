"""The event generator: deterministic order and payment streams (generator.events), their manifest
(generator.manifest) and publishing to Kafka (generator.publish, `ecomlake generate`)."""

from generator.events import Fact, Record, generate_records, parse_start
from generator.scenarios import SCENARIOS, Scenario

__all__ = ["Fact", "Record", "SCENARIOS", "Scenario", "generate", "generate_records", "parse_start"]


def generate(settings, **options):
    """Publish one scenario run (see generator.publish.generate); returns its RunResult (`.manifest` inside)."""
    from generator.publish import generate as _generate

    return _generate(settings, **options)
