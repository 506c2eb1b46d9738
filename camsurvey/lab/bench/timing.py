"""Wall time and peak memory of a call, on the CPU or CUDA.

:func:`time_call` and :func:`median_time` time one function's repeats one after the other: right
for a single time (the sweeps' slopes), wrong for a ratio of two, which :mod:`.interleave` times.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from typing import Any

import torch


def synchronize(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def time_call(function, repeats: int = 3, warmup: int = 1, device="cpu", clock=time.perf_counter) -> list[float]:
    """Wall times (s) of ``repeats`` calls of ``function()``, one after the other, after ``warmup``
    untimed calls. ``clock``: seconds (a fake one in tests)."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats} and {warmup}")
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = clock()
        function()
        synchronize(device)
        times.append(clock() - start)
    return times


def median_time(function, repeats: int = 3, warmup: int = 1, device="cpu") -> float:
    return statistics.median(time_call(function, repeats, warmup, device))


def _resident_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class PeakMemory:
    """Peak memory of the code in a ``with`` block, in bytes (``.peak``), and how it was measured.

    On CUDA: ``torch.cuda.max_memory_allocated`` above what was allocated before. On the CPU:
    the peak of the process's resident set (sampled every millisecond by a thread, after freed
    heap memory is handed back to the system) above its size before; ``None`` where
    ``/proc`` is missing.
    """

    def __init__(self, device="cpu", interval: float = 0.001):
        self.device, self.interval, self.peak = torch.device(device), interval, None
        self.how = ("torch.cuda.max_memory_allocated" if self.device.type == "cuda"
                    else "peak resident set size above the start (sampled every 1 ms)")

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
            return self
        _trim_heap()
        self._start = _resident_bytes()
        self._highest, self._stop = self._start, threading.Event()
        if self._start is not None:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self._highest = max(self._highest, _resident_bytes() or 0)
            self._stop.wait(self.interval)

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) - self._start
            return False
        if self._start is not None:
            self._stop.set()
            self._thread.join()
            self._highest = max(self._highest, _resident_bytes() or 0)
            self.peak = self._highest - self._start
        return False


def _trim_heap() -> None:
    import gc

    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def warm_up(function, device) -> tuple[Any, float, float | None]:
    """One untimed-for-the-record call: ``(its result, its seconds, its peak memory in MB or None)``."""
    with PeakMemory(device) as memory:
        start = time.perf_counter()
        result = function()
        synchronize(device)
        seconds = time.perf_counter() - start
    return result, seconds, None if memory.peak is None else memory.peak / 2**20


def measure(function, repeats: int, device, time_budget: float | None = None) -> dict:
    """Warm up once (measuring peak memory), then time ``repeats`` calls (fewer if over budget)."""
    with PeakMemory(device) as memory:
        start = time.perf_counter()
        result = function()
        synchronize(device)
        warmup = time.perf_counter() - start
    if time_budget is not None and warmup > 0:
        repeats = max(1, min(repeats, int(time_budget // warmup)))
    times = time_call(function, repeats, 0, device)
    return {"median_s": statistics.median(times), "times_s": times, "repeats": repeats,
            "peak_memory_mb": None if memory.peak is None else memory.peak / 2**20, "result": result}
