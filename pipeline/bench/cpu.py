"""Where a run's CPU went: this process and its descendants, by part (broker, Spark's JVM, Spark's Python workers,
this Python process), as cores busy on average. Read from /proc, so Linux only; elsewhere the figures are left out.

On a 2-core laptop every part takes from the same two cores, so these tell which part to make cheaper: a
latency run at 1,000 events/s showed the embedded broker's share large and rising (see
generator.publish.producer_config; docs/benchmarks.md#design-measurements).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

PARTS = ("broker", "spark_jvm", "spark_python_workers", "python_driver", "other")


def _part(cmdline: str, pid: int) -> str:
    if pid == os.getpid():
        return "python_driver"
    if "tansu" in cmdline or "kafka.Kafka" in cmdline:
        return "broker"
    if "java" in cmdline.split(" ", 1)[0]:
        return "spark_jvm"
    if "pyspark" in cmdline:
        return "spark_python_workers"
    return "other"


def _descendants(root: int) -> dict[int, tuple[str, float]]:
    """pid -> (part, CPU seconds so far) for `root` and every process under it."""
    return {pid: (part, cpu) for pid, (part, cpu, _) in _tree(root).items()}


def rss_mib(root: int | None = None) -> dict[str, float]:
    """Resident memory (MiB) of `root` (default: this process) and every process under it, by part, and in total."""
    pages = dict.fromkeys(PARTS, 0)
    for part, _, rss in _tree(root or os.getpid()).values():
        pages[part] += rss
    mib = os.sysconf("SC_PAGE_SIZE") / 2**20
    out = {part: round(count * mib, 1) for part, count in pages.items()}
    out["total"] = round(sum(pages.values()) * mib, 1)
    return out


def _tree(root: int) -> dict[int, tuple[str, float, int]]:
    """pid -> (part, CPU seconds so far, resident pages) for `root` and every process under it."""
    ticks = os.sysconf("SC_CLK_TCK")
    parents, seen = {}, {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        parents[int(entry.name)] = int(fields[1])
        seen[int(entry.name)] = (cmdline, (int(fields[11]) + int(fields[12])) / ticks, int(fields[21]))
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    mine, todo = set(), [root]
    while todo:
        pid = todo.pop()
        mine.add(pid)
        todo.extend(children.get(pid, ()))
    return {pid: (_part(seen[pid][0], pid), seen[pid][1], seen[pid][2]) for pid in mine if pid in seen}


class CpuSampler:
    """Samples every `every_s` while running; with `memory_every_s`, also the resident memory by part (`memory`:
    a list of {"t": seconds since the start, part: MiB}). A process there at the start counts from its CPU then, one started
    later from zero; what a process uses after the last sample that saw it (at most `every_s`) is missed."""

    def __init__(self, every_s: float = 2.0, memory_every_s: float | None = None):
        self.every_s, self.memory_every_s = every_s, memory_every_s
        self.memory: list[dict] = []
        self._next_memory = 0.0
        self.available = Path("/proc/self/stat").exists()
        self.first: dict[int, tuple[str, float]] = {}
        self.last: dict[int, tuple[str, float]] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)
        self.started = self.ended = 0.0

    def _sample(self) -> None:
        """A process that was there at the start counts from its CPU then; one started since, from zero."""
        for pid, (part, cpu) in _descendants(os.getpid()).items():
            self.first.setdefault(pid, (part, cpu if not self.started else 0.0))
            self.last[pid] = (part, cpu)
        if self.memory_every_s and time.monotonic() >= self._next_memory:
            t = time.monotonic() - self.started if self.started else 0.0
            self.memory.append({"t": round(t, 1), **rss_mib()})
            self._next_memory = time.monotonic() + self.memory_every_s

    def _run(self) -> None:
        while not self.stop.wait(self.every_s):
            self._sample()

    def __enter__(self) -> "CpuSampler":
        if self.available:
            self._sample()
            self.started = time.monotonic()
            self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.available:
            self.stop.set()
            self.thread.join()
            self._sample()
            self.ended = time.monotonic()

    def cores_busy(self) -> dict[str, float]:
        """Average cores busy per part over the run, and in total."""
        if not self.available or self.ended <= self.started:
            return {}
        seconds = self.ended - self.started
        used = dict.fromkeys(PARTS, 0.0)
        for pid, (part, cpu) in self.last.items():
            used[part] += cpu - self.first[pid][1]
        out = {f"cpu_cores_{part}": round(value / seconds, 2) for part, value in used.items()}
        out["cpu_cores_total"] = round(sum(used.values()) / seconds, 2)
        return out
