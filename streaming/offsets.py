"""Kafka offsets as the sources and the checkpoint keep them: {topic: {"partition": next offset}}, and the
arithmetic on them (parsing the startingOffsets option, splitting a maxOffsetsPerTrigger budget)."""

from __future__ import annotations

import json
from typing import Mapping

EARLIEST, LATEST = -2, -1

Offsets = dict  # {topic: {"partition": offset}}, canonical order: topics sorted, partitions numeric


class KafkaSourceError(RuntimeError):
    """A problem the user must act on (missing records, lost broker data); its message is one line."""


def canonical(offsets: Mapping) -> Offsets:
    """The one serialisation of an offsets dict, so equal positions compare equal as JSON in Spark."""
    return {
        topic: {str(p): int(o) for p, o in sorted(parts.items(), key=lambda kv: int(kv[0]))}
        for topic, parts in sorted(offsets.items())
    }


def flatten(offsets: Mapping) -> dict[tuple[str, int], int]:
    return {(t, int(p)): int(o) for t, parts in offsets.items() for p, o in parts.items()}


def nest(flat: Mapping[tuple[str, int], int]) -> Offsets:
    out: dict = {}
    for (t, p), o in flat.items():
        out.setdefault(t, {})[str(p)] = o
    return canonical(out)


def parse_offsets_option(name: str, value: str) -> dict[tuple[str, int], int] | str:
    value = value.strip()
    if value in ("earliest", "latest"):
        return value
    try:
        data = json.loads(value)
        return flatten(data)
    except (ValueError, AttributeError, TypeError):
        raise KafkaSourceError(
            f"{name}={value!r}: use earliest, latest or JSON like {{\"topic\": {{\"0\": 42}}}}"
        ) from None


def split_budget(backlog: dict[tuple[str, int], int], limit: int) -> dict[tuple[str, int], int]:
    """Records to take from each partition: all of them if they fit in `limit`, else shares proportional to the
    backlog that add up to exactly `limit`."""
    total = sum(backlog.values())
    if total <= limit:
        return dict(backlog)
    take = {tp: (limit * n) // total for tp, n in backlog.items()}
    left = limit - sum(take.values())
    for tp in sorted(backlog, key=lambda tp: backlog[tp] - take[tp], reverse=True):
        if left == 0:
            break
        if take[tp] < backlog[tp]:
            take[tp] += 1
            left -= 1
    return take


def lost_data(tp: tuple[str, int], end: int, position: int, checkpoint: str | None) -> str:
    return (
        f"{tp[0]}/{tp[1]} ends at offset {end} on the broker but the query already read up to {position}: the broker "
        f"lost data or the topic was recreated (the embedded broker keeps data in memory only). To read the new "
        f"broker from its earliest offset and keep the rows already stored, run `ecomlake bronze --reset-source`"
        f"{' (it sets the checkpoint ' + checkpoint + ' aside)' if checkpoint else ''}"
    )
