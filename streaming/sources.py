"""Seam 1: the Kafka source of a bronze query, chosen from KAFKA_SOURCE in one place.

Both sources yield Spark's Kafka columns and take Spark's option names; they differ in how a run that should stop
at the current end of the topics ("available now") is driven.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from streaming import kafka_source
from streaming.offsets import nest

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from ecomlake.settings import Settings


@dataclass(frozen=True)
class KafkaSource:
    name: str
    # Spark's Trigger.AvailableNow honours maxOffsetsPerTrigger for this source (pyspark 4.0's Python sources
    # plan one uncapped batch instead, so bronze drives those with ending offsets of its own).
    native_available_now: bool

    def stream(self, spark: "SparkSession", settings: "Settings", topic: str, checkpoint: str,
               max_offsets: int | None, ending: dict[tuple[str, int], int] | None = None) -> "DataFrame":
        """The topic from its earliest offset as a stream, capped at `max_offsets` per batch and `ending`."""
        if self.name == "python":
            kafka_source.register(spark)
            reader = spark.readStream.format(kafka_source.SOURCE_NAME).option("ecomlake.checkpointLocation", checkpoint)
            if ending is not None:
                reader = reader.option("ecomlake.endingOffsets", json.dumps(nest(ending)))
        else:
            reader = spark.readStream.format("kafka").option("failOnDataLoss", "true")
        reader = (
            reader.option("kafka.bootstrap.servers", settings.kafka_bootstrap)
            .option("subscribe", topic)
            .option("startingOffsets", "earliest")
        )
        if max_offsets:
            reader = reader.option("maxOffsetsPerTrigger", str(max_offsets))
        return reader.load()


SOURCES = {
    "python": KafkaSource("python", native_available_now=False),
    "spark-kafka": KafkaSource("spark-kafka", native_available_now=True),
}


def source_for(settings: "Settings") -> KafkaSource:
    return SOURCES[settings.kafka_source]
