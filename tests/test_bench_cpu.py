"""The latency bench's CPU figures (pipeline.bench.cpu): what each part of a run kept busy, from /proc."""

from __future__ import annotations

import resource
import subprocess
import sys

import pytest

from pipeline.bench.cpu import CpuSampler

BURN = "import time\nend = time.process_time() + {s}\nwhile time.process_time() < end: pass\ntime.sleep({rest})"


@pytest.mark.skipif(not CpuSampler().available, reason="no /proc here")
def test_cpu_of_a_process_started_during_the_run_counts_to_its_part():
    """A child that burns CPU after the sampler started is counted in full (not from the CPU it had when first
    seen), to its part; the run's total includes it."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with CpuSampler(every_s=0.2) as sampler:
        child = subprocess.Popen([sys.executable, "-c", BURN.format(s=0.6, rest=0.6)])
        assert child.wait() == 0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    child_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    part, last = sampler.last[child.pid]
    counted = last - sampler.first[child.pid][1]
    assert child_cpu >= 0.6 and part == "other"
    assert counted == pytest.approx(child_cpu, abs=0.05), (counted, child_cpu)
    cores = sampler.cores_busy()
    assert cores["cpu_cores_other"] * (sampler.ended - sampler.started) >= counted - 0.05, cores
    assert cores["cpu_cores_total"] >= cores["cpu_cores_other"]
