"""What a failed bronze query tells its caller: the one-line error carried through Spark and Py4J, read in one place."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ecomlake.errors import EcomlakeError

if TYPE_CHECKING:
    from pyspark.sql.streaming import StreamingQuery


class BatchFailed(Exception):
    """A micro-batch's write failed; its message is batch_failure's one line."""


# Spark (4.0) tells a query stopped mid-batch from a failed one by matching this text followed by
# `(.|\r\n|\r|\n)*` and the exception's class against the message of the foreachBatch function's error. That
# pattern recurses once per character: a Py4JJavaError's text, with the JVM stack trace in it, overflowed the
# stream thread's stack, and the JVM printed a thousand lines of regex frames before our one-line error.
_CAUSES = (re.compile(r"KafkaSourceError: (.+)"), re.compile(r"EcomlakeError: (.+)"))
_PY4J_ERROR = "py4j.protocol.Py4JJavaError: An error occurred while calling"
_INTERRUPTIONS = ("java.lang.InterruptedException", "java.nio.channels.ClosedByInterruptException",
                  "java.io.InterruptedIOException", "java.io.UncheckedIOException")


def _cause(text: str) -> re.Match | None:
    """Our own error (the Kafka source's or an EcomlakeError) inside the text Spark and Py4J wrapped around it."""
    for cause in _CAUSES:
        found = cause.search(text)
        if found:
            return found
    return None


def batch_failure(err: Exception) -> str:
    """A one-line text for a failed batch that keeps what the query's caller reads back (raise_failure's causes)
    and, for an interrupted batch, the form by which Spark recognises a stop."""
    text = f"EcomlakeError: {err}" if isinstance(err, EcomlakeError) else str(err)
    found = _cause(text)
    if found:
        return found.group(0)
    # A Py4JJavaError reads "An error occurred while calling oN.method.\n: <the JVM's exception>\n\tat ...".
    lines = text.split("\n: ", 1)[-1].strip().splitlines()
    first = lines[0][:500] if lines else type(err).__name__
    interruption = next((name for name in _INTERRUPTIONS if name in text), None)
    return f"{first} ({_PY4J_ERROR} append_batch: {interruption})" if interruption else first


def raise_failure(query: "StreamingQuery") -> None:
    """Re-raise what stopped `query`: our one-line error when it carries one, else Spark's exception."""
    error = query.exception()
    if error is None:
        return
    found = _cause(str(error))
    if found:
        raise EcomlakeError(found.group(1).strip())
    raise error
