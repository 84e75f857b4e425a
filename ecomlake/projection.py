"""Column lists as SQL text, projected in one step.

A continuous silver service builds its DataFrames anew every cycle, and PySpark pays a round trip to the JVM for every
Column object it makes (each F.col, alias, cast, comparison): the silver jobs made thousands of them per cycle, most in
projections of 15-column tables, which cost about as much as the cycle's Spark jobs on an idle table
(docs/benchmarks.md#design-measurements). A projection written as SQL expressions costs three calls, whatever its width.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def quoted(name: str) -> str:
    """A column name as a SQL identifier."""
    return "`" + name.replace("`", "``") + "`"


def string_literal(value: str | None) -> str:
    """A SQL string literal (Spark's default escaping: backslash), or a typed NULL."""
    if value is None:
        return "CAST(NULL AS STRING)"
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def timestamp_literal(value: datetime) -> str:
    """An aware datetime as an exact SQL timestamp (microseconds since the epoch)."""
    return f"timestamp_micros({(value - EPOCH) // timedelta(microseconds=1)})"


def project(df: "DataFrame", expressions: Iterable[str]) -> "DataFrame":
    """`df.select` of SQL expressions, each a column name or `<expr> AS <name>`, in this order. They are packed in one
    struct and unpacked again, which the optimizer removes: the plan is the plain projection's."""
    from pyspark.sql import functions as F

    return df.select(F.expr(f"struct({', '.join(expressions)}) AS __projected")).select("__projected.*")
