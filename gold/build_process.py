"""Gold's dbt builds in a child process of their own, for a GoldService that shares its process with silver.

dbt is mostly Python: a build held the GIL for much of each silver cycle, and each of the thousands of Py4J calls in
silver's cycle waited for it; with the builds here, silver's cycle is shorter (docs/benchmarks.md#design-measurements).
The child parses the project once and answers one build per request, so a build is the same `run_gold` either way.
"""

from __future__ import annotations

import multiprocessing
import threading

from ecomlake.errors import EcomlakeError
from ecomlake.settings import Settings


class BuildProcess:
    """`build(setup, sales, others)` runs `run_gold(settings, tests=False, ...)` in the child and returns its
    result."""

    def __init__(self, settings: Settings):
        context = multiprocessing.get_context("spawn")
        self._requests, child_end = context.Pipe()
        self._process = context.Process(target=_serve, args=(settings, child_end), name="ecomlake-gold-build",
                                        daemon=True)
        self._process.start()
        child_end.close()  # the child holds the only other end: if it dies, recv() ends instead of waiting
        self._lock = threading.Lock()

    def build(self, setup: bool, sales: bool = True, others: bool = True) -> dict:
        with self._lock:
            try:
                self._requests.send((setup, sales, others))
                outcome, error = self._requests.recv()
            except (EOFError, BrokenPipeError, ConnectionResetError):
                self._process.join(5)
                raise EcomlakeError(f"gold's build process ended during a build (exit code "
                                    f"{self._process.exitcode})") from None
        if error is not None:
            raise EcomlakeError(f"gold build failed: {error}")
        return outcome

    def close(self, timeout_s: float = 30.0) -> None:
        """Ask the child to exit once the build under way (if any) is done; kill it if that takes over `timeout_s`."""
        if self._lock.acquire(timeout=timeout_s):
            try:
                self._requests.send(None)
            except (BrokenPipeError, OSError):
                pass
            finally:
                self._lock.release()
            self._process.join(timeout_s)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._requests.close()


def _serve(settings: Settings, requests) -> None:
    from gold.build import warehouse_kept_open

    with warehouse_kept_open():
        _answer(settings, requests)


def _answer(settings: Settings, requests) -> None:
    from gold.build import invoke, run_gold

    parsed = invoke(settings, ["parse"], quiet=True)
    manifest = parsed.result if parsed.success else None
    while True:
        try:
            request = requests.recv()
        except EOFError:
            return
        if request is None:
            return
        setup, sales, others = request
        try:
            outcome = (run_gold(settings, tests=False, setup=setup, manifest=manifest, sales=sales, others=others),
                       None)
        except Exception as err:  # the parent raises it as one line
            outcome = (None, f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
        requests.send(outcome)
