"""Interleaved timing: the contenders of a comparison alternate call by call, so every ratio is
computed from timings taken seconds apart, not minutes apart.

Timing every repeat of A, then every repeat of B measures the load of the machine as much as the
two contenders: when another process starts between the two series, the ratio moves by the
slow-down it causes (seen: Score-CAM 2.1x faster than pytorch-grad-cam's where a quiet run gave
5.3x). Here each *round* calls every contender once, in an order shuffled with a fixed seed
(A B, B A, A B, ...), and a ratio is the median of the per-round (per-pair) ratios, reported with
their spread (min--max over pairs). A load that changes slowly moves both members of a pair alike
and cancels in their ratio; one that changes within a pair shows up as spread, and a comparison
whose pairs disagree by more than :data:`DISAGREEMENT` is flagged.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable

from ...common import check_int

# A comparison whose per-pair ratios span more than this factor (largest / smallest) is flagged:
# the machine's speed changed within pairs, so even the median is not to be trusted.
DISAGREEMENT = 1.5


def round_orders(names: list[str], rounds: int, seed: int = 0) -> list[list[str]]:
    """The order of the contenders in each round: a permutation per round, drawn with ``seed``."""
    check_int(rounds, "rounds")
    generator = random.Random(check_int(seed, "seed", minimum=0))
    orders = []
    for _ in range(rounds):
        order = list(names)
        generator.shuffle(order)
        orders.append(order)
    return orders


def interleave(contenders: dict[str, Callable[[], object]], rounds: int, seed: int = 0,
               clock: Callable[[], float] = time.perf_counter, synchronize: Callable[[], None] = lambda: None,
               after_call: Callable[[], None] | None = None) -> dict:
    """Time ``rounds`` rounds, each calling every contender once in the order :func:`round_orders` gives.

    ``clock``: seconds (a fake one in tests); ``synchronize``: waits for the device before each
    reading of the clock (CUDA); ``after_call``: run after each timed call, outside its timing
    (the load monitor samples there). Returns ``{"order": [[name, ...] per round], "times_s":
    {name: [seconds of round 1, round 2, ...]}}``; no warm-up is done here.
    """
    if not contenders:
        raise ValueError("interleave needs at least one contender")
    orders = round_orders(list(contenders), rounds, seed)
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for order in orders:
        for name in order:
            synchronize()
            start = clock()
            contenders[name]()
            synchronize()
            times[name].append(clock() - start)
            if after_call is not None:
                after_call()
    return {"order": orders, "times_s": times}


def pair_ratios(numerators: list[float], denominators: list[float]) -> list[float]:
    """``numerators[i] / denominators[i]`` for each round ``i`` (the two timed in the same round)."""
    if len(numerators) != len(denominators) or not numerators:
        raise ValueError(f"pair ratios need two equally long, non-empty series, got {len(numerators)} "
                         f"and {len(denominators)} times")
    if min(denominators) <= 0:
        raise ValueError(f"times must be positive to be divided by, got {denominators}")
    return [a / b for a, b in zip(numerators, denominators)]


def spread_factor(ratios: list[float]) -> float:
    """How far the per-pair ratios disagree: largest / smallest (1.0 when they all agree)."""
    return max(ratios) / min(ratios)


def summarize_ratios(ratios: list[float], disagreement: float = DISAGREEMENT) -> dict:
    """``{"median", "min", "max", "pairs", "disagree"}`` of per-pair ratios; ``disagree`` when their
    :func:`spread_factor` exceeds ``disagreement`` (never with a single pair, which has no spread)."""
    if not ratios or min(ratios) <= 0:
        raise ValueError(f"per-pair ratios must be positive and at least one, got {ratios}")
    if not disagreement >= 1:
        raise ValueError(f"disagreement is a factor >= 1 (largest / smallest ratio), got {disagreement!r}")
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios), "pairs": len(ratios),
            "disagree": len(ratios) > 1 and spread_factor(ratios) > disagreement}


def compare(numerators: list[float], denominators: list[float], disagreement: float = DISAGREEMENT) -> dict:
    """The ratio of two contenders timed in the same rounds: :func:`summarize_ratios` of :func:`pair_ratios`."""
    return summarize_ratios(pair_ratios(numerators, denominators), disagreement)


def rounds_within(repeats: int, time_budget: float | None, warmup_seconds: list[float]) -> int:
    """Rounds to run: ``repeats``, cut so that the slowest contender's timed calls fit ``time_budget``
    seconds (judged by its warm-up call), never below one."""
    check_int(repeats, "repeats")
    slowest = max(warmup_seconds, default=0.0)
    if time_budget is None or slowest <= 0:
        return repeats
    return max(1, min(repeats, int(time_budget // slowest)))
