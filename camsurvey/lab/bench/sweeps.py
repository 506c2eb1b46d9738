"""Sweeps for the performance chapter (time against channels, resolution, capacity, batch) and the
interleaved comparison of our methods with each other."""

from __future__ import annotations

import functools
import platform
from collections.abc import Callable

import numpy as np
import torch

from ...methods import explain
from .interleave import interleave
from .timing import median_time, synchronize


def machine(device=None) -> str:
    """Where timings are taken: the device and the number of CPU threads torch uses."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or "cpu")
    return f"{device.type} ({name}), {torch.get_num_threads()} CPU threads"


def time_methods(model, images, methods, layer=None, repeats=1, **params) -> dict:
    """Median seconds of ``explain(name, model, images, layer)`` for each method, after one warm-up call."""
    return {name: median_time(lambda name=name: explain(name, model, images, layer=layer, **params.get(name, {})),
                              repeats, 1, images.device) for name in methods}


def compare_methods(model, images, methods, layer=None, rounds: int = 3, seed: int = 0, **params) -> dict:
    """Seconds of ``explain(name, model, images, layer)`` for each method, timed in interleaved rounds
    after one warm-up call each (``{name: [seconds per round]}``): a ratio of two of them is then
    ``bench.compare(times[a], times[b])``, the median of per-round ratios with its spread."""
    calls: dict[str, Callable[[], object]] = {
        name: functools.partial(explain, name, model, images, layer=layer, **params.get(name, {})) for name in methods}
    for call in calls.values():
        call()
    return interleave(calls, rounds, seed, synchronize=lambda: synchronize(images.device))["times_s"]


def loglog_plot(ax, x, times: dict, xlabel: str, title: str = "") -> dict:
    """Plot ``times[name]`` (one value per x) on log-log axes with fitted slopes; returns the slopes."""
    slopes = {}
    for name, values in times.items():
        pairs = sorted((a, t) for a, t in zip(x, values) if t is not None)  # in x order: a line never doubles back
        slope = fit_loglog_slope(*zip(*pairs)) if len(pairs) > 1 else float("nan")
        slopes[name] = slope
        ax.loglog(*zip(*pairs), "o-", label=f"{name} (slope {slope:.2f})")
    ax.set_xlabel(xlabel), ax.set_ylabel("seconds (measured)"), ax.set_title(title)
    ax.legend(fontsize="small")
    return slopes


def fit_loglog_slope(x, y) -> float:
    """Slope of ``log y`` against ``log x`` (least squares, ``numpy.polyfit``): time ~ x ** slope."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 2 or (x <= 0).any() or (y <= 0).any():
        raise ValueError("fitting a log-log slope needs at least two positive (x, y) pairs")
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])
