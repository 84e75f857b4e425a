"""What the long-running commands share (`ecomlake bronze`, `silver --continuous`, `gold --continuous`): one log line
per event on stderr, and a run that Ctrl-C or SIGTERM ends cleanly."""

from __future__ import annotations

import logging
import signal
import sys
from typing import Callable


def log_to_stderr(log: logging.Logger, command: str) -> None:
    """`HH:MM:SS <command>: <message>` lines on stderr, once per logger."""
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(f"%(asctime)s {command}: %(message)s", "%H:%M:%S"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


def _interrupt() -> None:
    raise KeyboardInterrupt


def run_until_stopped(run: Callable[[], None], on_sigterm: Callable[[], None] = _interrupt) -> bool:
    """Run `run` until it returns or Ctrl-C. SIGTERM (Airflow, compose, a supervisor) calls `on_sigterm`: a service
    sets its stop event there; without one, SIGTERM stops `run` as Ctrl-C does. True when Ctrl-C (or that SIGTERM)
    ended it; the previous SIGTERM handler is back when this returns."""
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: on_sigterm())
    try:
        run()
    except KeyboardInterrupt:
        return True
    finally:
        signal.signal(signal.SIGTERM, previous)
    return False
