"""What the machine was doing while a method was timed: the load average, and the CPU time this
process got against the wall time that passed.

A ratio measured on a busy machine can be wrong even when its pairs agree (another process
slows the contenders unequally: one that uses both cores suffers more than one that waits on
memory), so each method's record says how busy the machine was before, during and after its
timing, and is flagged *busy* when the other processes' load exceeds :data:`BUSY_LOAD`.
"""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable

from ...common import check_int, machine_load

# A method timed while other processes kept more than this many cores' worth of tasks runnable
# (the load average beyond this process's own threads) is flagged busy; `--strict` then fails.
BUSY_LOAD = 0.5


def process_cpu_seconds() -> float:
    """CPU time (user + system) that every thread of this process has had so far (``resource.getrusage``)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def others_load(load: float, threads: int) -> float:
    """The load of other processes: the load average less this process's ``threads``, at least 0.

    The 1-minute load average counts every runnable task, ours included, and this process has at
    most ``threads`` of them, so the difference is what others added, or less (never more: our
    own recent work is never mistaken for another process's).
    """
    return max(0.0, load - threads)


class LoadMonitor:
    """Samples the load average and the process's CPU and wall clocks: ``sample()`` before a method,
    after each timed call, and after its last; :meth:`summary` describes them."""

    def __init__(self, threads: int, busy_load: float = BUSY_LOAD, load: Callable[[], float] | None = None,
                 cpu: Callable[[], float] = process_cpu_seconds, clock: Callable[[], float] = time.perf_counter):
        if not busy_load >= 0:
            raise ValueError(f"busy_load is a number of cores (>= 0), got {busy_load!r}")
        self.threads, self.busy_load = check_int(threads, "threads"), busy_load
        self.load, self.cpu, self.clock = load or machine_load, cpu, clock  # machine_load: the 1-minute load average
        self.samples: list[tuple[float, float, float]] = []  # (wall s, cpu s, load average)

    def sample(self) -> None:
        self.samples.append((self.clock(), self.cpu(), self.load()))

    def summary(self) -> dict:
        """``load_before``, ``load_during`` (median and max), ``load_after``, ``cpu_per_wall`` (CPU
        seconds the process got per wall second: up to ``threads`` when it had the cores it asked
        for), ``others_load`` (the largest :func:`others_load` seen) and ``busy``."""
        if len(self.samples) < 2:
            raise ValueError("a load summary needs a sample before and one after the timed calls")
        (wall_0, cpu_0, before), (wall_1, cpu_1, after) = self.samples[0], self.samples[-1]
        during = [load for _, _, load in self.samples[1:-1]] or [after]
        others = others_load(max(before, after, *during), self.threads)
        return {"threads": self.threads, "load_before": before, "load_during_median": statistics.median(during),
                "load_during_max": max(during), "load_after": after,
                "cpu_per_wall": (cpu_1 - cpu_0) / (wall_1 - wall_0) if wall_1 > wall_0 else None,
                "others_load": others, "busy_load": self.busy_load, "busy": others > self.busy_load,
                "samples": len(self.samples)}
