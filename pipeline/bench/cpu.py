"""Where a run's CPU went: this process and its descendants, by part (broker, Spark's JVM, Spark's Python workers,
this Python process), as cores busy on average. Read from /proc, so Linux only; elsewhere the figures are left out.

On a 2-core laptop every part takes from the same two cores, so these tell which part to make cheaper: a
latency run at 1,000 events/s showed the embedded broker at over half a core and rising (see
generator.publish.producer_config).
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
        seen[int(entry.name)] = (cmdline, (int(fields[11]) + int(fields[12])) / ticks)
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    mine, todo = set(), [root]
    while todo:
        pid = todo.pop()
        mine.add(pid)
        todo.extend(children.get(pid, ()))
    return {pid: (_part(seen[pid][0], pid), seen[pid][1]) for pid in mine if pid in seen}


class CpuSampler:
    """Samples every `every_s` while running. A process there at the start counts from its CPU then, one started
    later from zero; what a process uses after the last sample that saw it (at most `every_s`) is missed."""

    def __init__(self, every_s: float = 2.0):
        self.every_s = every_s
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
