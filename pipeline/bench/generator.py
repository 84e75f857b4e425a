"""Generator benchmark: publish rate on the broker of `settings` (the embedded one under `ecomlake bench`), and how
fast events are built without publishing, to tell the broker's share from the generator's."""

from __future__ import annotations

import time

from ecomlake.settings import Settings
from generator.events import generate_records
from generator.publish import generate

START = "2026-11-21T10:00:00Z"


def run(settings: Settings, quick: bool = False) -> dict:
    events = 2_000 if quick else 50_000
    started = time.perf_counter()
    built = sum(1 for _ in generate_records("steady", 1, START, 0.0, settings.topics, count=events))
    build_s = time.perf_counter() - started

    result = generate(settings, events=events, scenario="steady", seed=1, start=START)
    if result.failed or result.manifest["sent"] != events:
        raise RuntimeError(f"generator bench: {result.failed} failed deliveries, {result.manifest['sent']}/{events} sent")
    return {
        "generator_events": events,
        "generator_events_per_s": round(result.manifest["events_per_s"], 1),
        "generator_publish_s": round(result.elapsed_s, 2),
        "generator_build_only_events_per_s": round(built / build_s, 1),
    }
