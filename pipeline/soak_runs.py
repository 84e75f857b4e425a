"""The soak's processes, their kills and the story of every run: a failed run is only trustworthy noise when the
report says why it failed (killed by the soak, or failed on its own and with which error).

Kills go round-robin over the victims (in a seeded order), at jittered intervals, so in a run of N kill intervals
every victim is killed about N / len(victims) times; a purely random pick killed silver once in 10 kills.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

RETRY_AFTER_FAILURE_S = 1.0
CLI = ["-m", "pipeline.cli"]  # what a component runs with this Python, before its args

# how a run ended
OK, KILLED, FAILED, SIGNALLED = "ok", "killed by the soak", "failed on its own", "ended by a signal not the soak's"
STOPPED, STOP_FAILED = "stopped at the end", "failed when stopped at the end"
PROBLEMS = (FAILED, SIGNALLED, STOP_FAILED)  # endings whose error line the report shows


@dataclass
class Run:
    """One life of a component's process."""

    number: int
    started_s: float
    log_offset: int
    ended_s: float | None = None
    outcome: str | None = None
    exit_code: int | None = None
    error: str = ""


def kill_plan(victims: list[str], seconds: float, kill_every: float, rng: random.Random,
              first_after_s: float = 0.0) -> list[tuple[float, str]]:
    """(seconds into the run, victim) of every kill: round-robin over `victims` in an order shuffled once, at
    intervals of kill_every +-50%, all before `seconds`."""
    if not victims or kill_every <= 0:
        return []
    order = list(victims)
    rng.shuffle(order)
    plan: list[tuple[float, str]] = []
    at = first_after_s
    while True:
        at += kill_every * rng.uniform(0.5, 1.5)
        if at >= seconds:
            return plan
        plan.append((round(at, 3), order[len(plan) % len(order)]))


def last_error_line(log_text: str, name: str) -> str:
    """The line that says why a run failed: its `ecomlake <name>: error:` line, else the last line naming an
    error, else the last line; "" for an empty log."""
    lines = [line.strip() for line in log_text.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith(f"ecomlake {name}: "):
            return line
    for line in reversed(lines):
        if "error" in line.lower() or "exception" in line.lower():
            return line
    return lines[-1] if lines else ""


def outcome_of(exit_code: int, killed_by_soak: bool, stopping: bool) -> str:
    if killed_by_soak:
        return KILLED
    if exit_code == 0:
        return OK
    if stopping:
        return STOPPED if exit_code in (130, -signal.SIGINT, -signal.SIGKILL) else STOP_FAILED
    if exit_code < 0:
        return SIGNALLED
    return FAILED


def run_summary(runs: list[Run]) -> dict:
    """Counts per outcome, and the failed runs grouped by their error line (most frequent first)."""
    outcomes = Counter(r.outcome for r in runs if r.outcome)
    failed = Counter(f"{r.outcome}: {r.error or f'exit code {r.exit_code}'}" for r in runs if r.outcome in PROBLEMS)
    return {"runs": len(runs), "outcomes": dict(outcomes),
            "failures": [{"count": n, "error": error} for error, n in failed.most_common()]}


def describe(name: str, summary: dict) -> str:
    """One line per component for the console: its runs by outcome, then each distinct failure."""
    outcomes = ", ".join(f"{n} {what}" for what, n in summary["outcomes"].items())
    head = f"  {name}: {summary['runs']} runs ({outcomes or 'none ended'})"
    return "\n".join([head] + [f"    {f['count']}x {f['error']}" for f in summary["failures"]])


class Component:
    """One restartable `ecomlake <command>` process, started again when it fails (after RETRY_AFTER_FAILURE_S), as
    a service manager would; `once` ones also when they succeed. Every run is kept with how it ended and its last
    error line."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path, once: bool,
                 wait_for: Callable[[], bool] | None = None, clock=time.monotonic):
        self.name, self.args, self.env, self.once, self.clock = name, args, env, once, clock
        self.wait_for = wait_for
        self.log_path = log_dir / f"{name}.log"
        self.log = open(self.log_path, "ab")
        self.started = clock()
        self.proc: subprocess.Popen | None = None
        self.runs: list[Run] = []
        self.restart_at: float | None = None

    @property
    def ready(self) -> bool:
        """Whether its first run may start: `wait_for` holds it back, as gold waits until silver has written its
        tables (an orchestrator orders them so; started at once, every gold run failed on "silver tables not
        found" until then)."""
        return self.wait_for is None or self.runs != [] or self.wait_for()

    def begin(self) -> None:
        """Start now, or at the first tick that finds it ready."""
        self.restart_at = self.clock()
        if self.ready:
            self.start()

    @property
    def running(self) -> bool:
        return self._running() is not None

    def _running(self) -> subprocess.Popen | None:
        """The process of the current run while it runs."""
        return self.proc if self.proc is not None and self.proc.poll() is None else None

    def start(self) -> None:
        self.log.flush()
        self.runs.append(Run(len(self.runs) + 1, round(self.clock() - self.started, 1), self.log_path.stat().st_size))
        self.log.write(f"--- soak: {self.name} run {len(self.runs)} ---\n".encode())
        self.log.flush()
        self.proc = subprocess.Popen([sys.executable, *CLI, *self.args], env=self.env,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.restart_at = None

    def _ended(self, killed_by_soak: bool = False, stopping: bool = False) -> None:
        assert self.proc is not None  # a run that ended was started
        run = self.runs[-1]
        run.ended_s, run.exit_code = round(self.clock() - self.started, 1), self.proc.returncode
        run.outcome = outcome_of(run.exit_code, killed_by_soak, stopping)
        if run.outcome in PROBLEMS:
            with open(self.log_path, "rb") as log:
                log.seek(run.log_offset)
                run.error = last_error_line(log.read().decode(errors="replace"), self.name)

    def tick(self) -> None:
        """Record a run that ended by itself; start it again (a failed one after a pause)."""
        if self.proc is not None and self.proc.returncode is None and self.proc.poll() is not None:
            self._ended()
            if self.once or self.proc.returncode:
                self.restart_at = self.clock() + (RETRY_AFTER_FAILURE_S if self.proc.returncode else 0.0)
        if self.restart_at is not None and self.clock() >= self.restart_at and self.ready:
            self.start()

    def kill(self) -> bool:
        """kill -9 the running process and start it again; False when nothing was running."""
        proc = self._running()
        if proc is None:
            return False
        proc.kill()
        proc.wait()
        self._ended(killed_by_soak=True)
        self.start()
        return True

    def stop(self, timeout_s: float = 60.0) -> None:
        self.restart_at = None
        proc = self._running()
        if proc is not None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            self._ended(stopping=True)
        self.log.close()
