"""Seam 2: the lake engine. One small interface, two engines, both writing standard Delta tables.

- `delta-rs` (embedded default): Spark computes, the `deltalake` package commits (no JVM Delta jars).
- `delta-spark`: Delta Lake for Spark (io.delta jars from SPARK_EXTRA_JARS or SPARK_PACKAGES).

Everything above this seam (bronze, silver, maintain) calls only these methods.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ecomlake.lake.base import LakeEngine

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from ecomlake.settings import Settings

__all__ = ["LakeEngine", "get_engine"]


def get_engine(spark: "SparkSession", settings: "Settings", name: str | None = None) -> LakeEngine:
    name = name or settings.lake_engine
    if name == "delta-rs":
        from ecomlake.lake.delta_rs import DeltaRsEngine

        return DeltaRsEngine(spark, settings)
    if name == "delta-spark":
        from ecomlake.lake.delta_spark import DeltaSparkEngine

        return DeltaSparkEngine(spark, settings)
    raise ValueError(f"unknown lake engine {name!r}")
