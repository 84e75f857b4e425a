"""The demo's helpers that run beside the pipeline: the generator (a child process), the live dashboard (a child
process) and a service's loop (a thread)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

from ecomlake.errors import EcomlakeError
from ecomlake.settings import Settings


class _Generator(threading.Thread):
    """The generator in a child process of its own, as a producer is in any deployment; this thread waits for its
    result. In the demo's process its publishing loop held the GIL in bursts that each of silver's Py4J calls
    (thousands per cycle) waited for (see docs/architecture.md)."""

    def __init__(self, settings: Settings, seconds: float, rate: float, scenario: str, seed: int):
        import multiprocessing

        super().__init__(name="ecomlake-generator", daemon=True)
        context = multiprocessing.get_context("spawn")
        self.stop_event = context.Event()
        self._delivered = context.Value("q", 0, lock=False)
        self._results, self._sender = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_publish, name="ecomlake-generator", daemon=True,
            args=(settings, seconds, rate, scenario, seed, self.stop_event, self._delivered, self._sender),
        )
        self.result = None
        self.error: BaseException | None = None

    @property
    def delivered(self) -> int:
        """Events the broker confirmed so far."""
        return self._delivered.value

    def run(self) -> None:
        self._process.start()
        self._sender.close()  # the child holds the only sending end now: if it dies without a result, recv() ends
        try:
            self.result, self.error = self._results.recv()
        except EOFError:
            pass
        self._process.join()
        if self.result is None and self.error is None:
            self.error = EcomlakeError(f"the generator process ended without a result (exit code "
                                       f"{self._process.exitcode})")

    def halt(self, timeout: float = 30) -> None:
        """Stop publishing and wait for the result, if it was started."""
        self.stop_event.set()
        if self.ident is not None:
            self.join(timeout=timeout)


def _publish(settings: Settings, seconds: float, rate: float, scenario: str, seed: int, stop, delivered,
             results) -> None:
    """The generator process: publish, keep `delivered` current, send back (RunResult, None) or (None, error)."""
    import pickle

    from generator import generate
    from generator.publish import RunResult

    live = RunResult(manifest={})
    done = threading.Event()

    def report() -> None:
        while not done.wait(0.2):
            delivered.value = live.delivered

    reporter = threading.Thread(target=report, daemon=True)
    reporter.start()
    outcome: tuple[object, BaseException | None]
    try:
        outcome = (generate(settings, duration_s=seconds, rate=rate, scenario=scenario, seed=seed, stop=stop,
                            live=live), None)
    except BaseException as err:  # reported by the demo's main thread
        try:
            pickle.dumps(err)
        except Exception:
            err = EcomlakeError(f"{type(err).__name__}: {err}")
        outcome = (None, err)
    done.set()
    reporter.join()
    delivered.value = live.delivered
    results.send(outcome)


class _Dashboard:
    """`ecomlake dashboard` as a child process for the demo's lifetime: a failure to start is one line, not fatal."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.url = settings.dashboard_url
        self.proc: subprocess.Popen | None = None

    def start(self, wait_s: float = 30.0) -> None:
        import urllib.request

        print(f"dashboard: {self.url}  (live, refreshes every few seconds; JSON at {self.url}api/summary)", flush=True)
        self.proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "dashboard"],
                                     env={**os.environ, **self.settings.to_env()}, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                with urllib.request.urlopen(self.url + "api/summary", timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        if self.proc.poll() is not None:
            assert self.proc.stderr is not None  # stderr=PIPE
            error = (self.proc.stderr.read().strip().splitlines() or ["exited"])[-1]
            print(f"dashboard: not started ({error}); the demo goes on without it", flush=True)
            self.proc = None

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


class _Loop(threading.Thread):
    """A service's run() in the background; what failed in it is re-raised by finish()."""

    def __init__(self, service, name: str):
        super().__init__(name=name, daemon=True)
        self.service = service
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.service.run()
        except BaseException as err:
            if not self.service.stop.is_set():
                self.error = err

    def halt(self, timeout: float = 120) -> None:
        """Stop after the cycle under way, if it was started; what failed is left to finish()."""
        self.service.stop.set()
        if self.ident is not None:
            self.join(timeout)

    def finish(self, timeout: float = 300) -> None:
        """Stop after the cycle under way (if any) and re-raise what failed in it."""
        self.service.stop.set()
        self.join(timeout)
        if self.error:
            raise self.error
