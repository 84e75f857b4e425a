"""The real delta-rs engine, made to die like a killed driver part-way through a silver run (the crash tests)."""

from __future__ import annotations

from ecomlake.lake.delta_rs import DeltaRsEngine


class SimulatedCrash(BaseException):
    pass


class CrashingEngine(DeltaRsEngine):
    """Dies at its commit after the `survive`-th successful one (merges and appends; -1: never)."""

    def __init__(self, spark, settings, survive: int):
        super().__init__(spark, settings)
        self.survive = survive

    def _commit(self) -> None:
        if self.survive == 0:
            raise SimulatedCrash()
        self.survive -= 1

    def merge(self, *args, **kwargs):
        self._commit()
        return super().merge(*args, **kwargs)

    def append_batch(self, *args, **kwargs):
        self._commit()
        return super().append_batch(*args, **kwargs)
