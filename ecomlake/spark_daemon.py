"""Spark's Python worker daemon (spark.python.daemon.module) for a local master, without Spark's archives on sys.path.

Why: Spark puts pyspark.zip, py4j's zip and the spark-core jar (5,261 entries) ahead of site-packages on its Python
workers' path, and before every task a worker calls `importlib.invalidate_caches()`. On Python 3.11 that makes each
zipimporter, one per package imported from an archive, read its archive's directory again: most of a worker's CPU
in a continuous run went there (docs/benchmarks.md#design-measurements). On a local master the workers run the
driver's interpreter, where pyspark and py4j are installed as packages of the same versions, so this module drops the
archives from sys.path before pyspark is imported, then runs pyspark's own daemon. An archive stays on the path when
the interpreter could not import its package otherwise.
"""

from __future__ import annotations

import importlib.machinery
import sys

ARCHIVES = (".zip", ".jar")
PACKAGES = ("pyspark", "py4j")


def without_archives(path: list[str]) -> list[str]:
    """`path` without its .zip and .jar entries, if every package of PACKAGES is importable without them."""
    kept = [p for p in path if not p.endswith(ARCHIVES)]
    if len(kept) == len(path) or any(importlib.machinery.PathFinder.find_spec(name, kept) is None
                                     for name in PACKAGES):
        return path
    return kept


def main() -> None:
    sys.path[:] = without_archives(sys.path)
    for entry in [e for e in sys.path_importer_cache if e.endswith(ARCHIVES) or ".zip/" in e or ".jar/" in e]:
        del sys.path_importer_cache[entry]
    from pyspark import daemon

    daemon.manager()


if __name__ == "__main__":
    main()
