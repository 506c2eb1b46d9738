"""Does the ranking of methods hold across networks? (survey Section VI.C: "how different networks respond")

The metrics chapter ranks the methods by each metric on one network. This module asks whether
another network gives the same order. Its input is what :func:`camsurvey.lab.evaluation.evaluate`
returns, one per network: per-image scores ``scores[network][method][metric]`` (a
:class:`~camsurvey.metrics.Score`, a tensor, an array or a list; within a network every method
scored on the same images, in the same order). For each metric it gives

* each network's ranking of the methods by their mean score (rank 1 the best, in the metric's
  direction, :data:`camsurvey.metrics.HIGHER_IS_BETTER`; ties share the average rank,
  ``scipy.stats.rankdata``);
* Kendall's tau between the rankings of every pair of networks (``scipy.stats.kendalltau``,
  tau-b, over the methods both networks scored): 1 the same order, -1 the reverse, 0 unrelated;
* a percentile-bootstrap interval for that tau over images: the images are drawn with
  replacement (seeded), every method's mean is recomputed on the draw and tau with it. When the
  networks were scored on the same images (``same_images=True``, the default) one draw serves all
  networks, so the interval reflects which images were chosen, not differences the networks
  never saw; otherwise each network's images are drawn on their own.

The interval is over the images only: the methods, the networks and the metric's own
randomness (none in this book: every metric is deterministic) are held fixed. With few methods
tau takes few values (with 5 methods, steps of 0.2), and so does the interval.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
from scipy import stats

from ..common import check_int
from ..metrics import HIGHER_IS_BETTER

NOT_PER_IMAGE = ("adcc_of_means",)  # one value per method (ADCC of the mean parts): nothing to resample


@dataclass(frozen=True)
class RankAgreement:
    """Kendall's tau between two networks' rankings by one metric, with its bootstrap interval."""

    metric: str
    networks: tuple[str, str]
    tau: float
    p_value: float  # scipy's test of tau = 0 over the methods (not over images)
    low: float
    high: float
    methods: int
    images: tuple[int, int]


@dataclass
class RankingStudy:
    """Every metric's ranking on every network, and the agreement of every pair of networks."""

    rankings: dict  # metric -> network -> method -> rank (1 the best)
    means: dict  # metric -> network -> method -> mean score
    agreements: list = field(default_factory=list)
    confidence: float = 0.95

    def agreement(self, metric: str, a: str, b: str) -> RankAgreement:
        for found in self.agreements:
            if found.metric == metric and set(found.networks) == {a, b}:
                return found
        raise ValueError(f"no agreement of {a!r} and {b!r} by {metric!r}; metrics: {sorted(self.rankings)}")

    def ranking_table(self, metric: str) -> str:
        """Methods by rows, networks by columns: each method's rank by ``metric`` (mean in brackets)."""
        networks = list(self.rankings[metric])
        methods = list(dict.fromkeys(m for n in networks for m in self.rankings[metric][n]))
        width = max(len(m) for m in methods)
        lines = [f"{metric} ({'higher' if HIGHER_IS_BETTER.get(metric, True) else 'lower'} is better): "
                 "rank (mean)", " " * width + "".join(f"  {n:>22}" for n in networks)]
        for method in methods:
            cells = []
            for network in networks:
                rank = self.rankings[metric][network].get(method)
                cells.append("-" if rank is None else f"{rank:g} ({self.means[metric][network][method]:.3f})")
            lines.append(f"{method:<{width}}" + "".join(f"  {c:>22}" for c in cells))
        return "\n".join(lines)

    def agreement_table(self) -> str:
        """One row per metric and pair of networks: Kendall's tau and its bootstrap interval."""
        level = f"{self.confidence:.0%}"
        lines = [f"{'metric':<24} {'networks':<42} {'tau':>6} {level + ' interval':>17} {'methods':>7}"]
        for a in self.agreements:
            pair = f"{a.networks[0]} / {a.networks[1]}"
            lines.append(f"{a.metric:<24} {pair:<42} {a.tau:>6.2f} {f'[{a.low:.2f}, {a.high:.2f}]':>17} "
                         f"{a.methods:>7}")
        return "\n".join(lines)


def per_image_values(score) -> np.ndarray:
    """A metric's per-image values as a 1-D float array (from a Score, a tensor, an array or a list)."""
    values = getattr(score, "per_image", score)
    if hasattr(values, "detach"):
        values = values.detach().cpu().double().numpy()
    values = np.asarray(values, dtype=float).reshape(-1)
    if values.size == 0 or not np.isfinite(values).all():
        raise ValueError("per-image scores must be a non-empty array of finite numbers")
    return values


def rank_methods(means: dict, higher_is_better: bool) -> dict:
    """``{method: rank}``, 1 the best mean; tied means share the average rank."""
    methods = list(means)
    values = np.array([means[m] for m in methods], dtype=float)
    ranks = stats.rankdata(-values if higher_is_better else values, method="average")
    return {method: float(rank) for method, rank in zip(methods, ranks)}


def kendall_tau(x, y) -> tuple[float, float]:
    """Kendall's tau-b of two paired sequences and its p-value (``scipy.stats.kendalltau``);
    NaN when either sequence is constant (tau is undefined then)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns about constant input, which the callers handle
        result = stats.kendalltau(x, y)
    return float(result.statistic), float(result.pvalue)


def score_matrix(by_method: dict, metric: str, methods: list, network: str) -> np.ndarray:
    """(methods, images) per-image scores of ``metric``; every method must be scored on the same images."""
    rows = []
    for method in methods:
        if metric not in by_method[method]:
            raise ValueError(f"network {network!r}, method {method!r} has no {metric!r} score")
        rows.append(per_image_values(by_method[method][metric]))
    lengths = {method: len(row) for method, row in zip(methods, rows)}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"on network {network!r} the methods were scored on different numbers of images for "
                         f"{metric!r} ({lengths}); rank them on the images every method was scored on")
    return np.stack(rows)


def common_metrics(scores: dict) -> list:
    """The metrics every method of every network was scored by (less :data:`NOT_PER_IMAGE`), in first-seen order."""
    entries = [metrics for by_method in scores.values() for metrics in by_method.values()]
    found = list(dict.fromkeys(metric for metrics in entries for metric in metrics))
    return [m for m in found if m not in NOT_PER_IMAGE and all(m in metrics for metrics in entries)]


def check_scores(scores: dict) -> None:
    if not isinstance(scores, dict) or len(scores) < 2:
        raise ValueError("scores must map at least two networks to {method: {metric: per-image scores}}")
    for network, by_method in scores.items():
        if not isinstance(by_method, dict) or len(by_method) < 2:
            raise ValueError(f"network {network!r} needs at least two methods to rank, got "
                             f"{list(by_method) if isinstance(by_method, dict) else by_method!r}")


def ranking_study(scores: dict, metrics=None, *, higher_is_better: dict | None = None, resamples: int = 1000,
                  seed: int = 0, confidence: float = 0.95, same_images: bool = True) -> RankingStudy:
    """Rankings of the methods per metric and network, and Kendall's tau between every pair of networks.

    ``scores``: ``{network: {method: {metric: per-image scores}}}`` (:func:`evaluate`'s output per
    network). ``metrics``: which to rank by (default: those every method of every network has).
    ``higher_is_better``: the direction of metrics not in :data:`camsurvey.metrics.HIGHER_IS_BETTER`.
    ``resamples``, ``seed``, ``confidence``: the bootstrap over images. ``same_images``: the
    networks were scored on the same images in the same order (one draw for all of them).
    """
    check_scores(scores)
    check_int(resamples, "resamples", hint="the number of bootstrap draws, e.g. 1000")
    check_int(seed, "seed", minimum=0, maximum=2**32 - 1)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}")
    directions = {**HIGHER_IS_BETTER, **(higher_is_better or {})}
    metrics = common_metrics(scores) if metrics is None else list(metrics)
    if not metrics:
        raise ValueError("no metric is scored for every method of every network; pass metrics=[...]")
    unknown = [m for m in metrics if m not in directions]
    if unknown:
        raise ValueError(f"the direction of {unknown} is unknown: pass higher_is_better={{{unknown[0]!r}: True}} "
                         "(or False)")
    study = RankingStudy({}, {}, confidence=confidence)
    for metric in metrics:
        matrices = {network: score_matrix(by_method, metric, list(by_method), network)
                    for network, by_method in scores.items()}
        study.means[metric] = {network: dict(zip(scores[network], matrix.mean(axis=1)))
                               for network, matrix in matrices.items()}
        study.rankings[metric] = {network: rank_methods(means, directions[metric])
                                  for network, means in study.means[metric].items()}
        for a, b in combinations(scores, 2):
            study.agreements.append(agreement(metric, scores, matrices, a, b, resamples, seed, confidence,
                                              same_images))
    return study


def agreement(metric, scores, matrices, a, b, resamples, seed, confidence, same_images) -> RankAgreement:
    """Kendall's tau of networks ``a`` and ``b`` by ``metric``, with its percentile-bootstrap interval."""
    methods = [m for m in scores[a] if m in scores[b]]
    if len(methods) < 2:
        raise ValueError(f"networks {a!r} and {b!r} share fewer than two methods ({methods}); nothing to compare")
    x = matrices[a][[list(scores[a]).index(m) for m in methods]]
    y = matrices[b][[list(scores[b]).index(m) for m in methods]]
    if same_images and x.shape[1] != y.shape[1]:
        raise ValueError(f"networks {a!r} and {b!r} were scored on {x.shape[1]} and {y.shape[1]} images; with "
                         "same_images=True they must be the same images in the same order (or pass same_images=False)")
    tau, p_value = kendall_tau(x.mean(axis=1), y.mean(axis=1))
    if not np.isfinite(tau):
        tied = a if np.ptp(x.mean(axis=1)) == 0 else b
        raise ValueError(f"network {tied!r} gives every method the same mean {metric!r}: its ranking is one tie, "
                         "and Kendall's tau with it is undefined; leave this metric out")
    generator = np.random.default_rng(seed)
    draws_x = generator.integers(0, x.shape[1], size=(resamples, x.shape[1]))
    draws_y = draws_x if same_images else generator.integers(0, y.shape[1], size=(resamples, y.shape[1]))
    means_x, means_y = x[:, draws_x].mean(axis=2), y[:, draws_y].mean(axis=2)  # (methods, resamples)
    taus = np.array([kendall_tau(means_x[:, r], means_y[:, r])[0] for r in range(resamples)])
    taus = taus[np.isfinite(taus)]  # a draw where one network ties every method has no tau
    low, high = np.quantile(taus, [(1 - confidence) / 2, (1 + confidence) / 2]) if taus.size else (np.nan, np.nan)
    return RankAgreement(metric, (a, b), tau, p_value, float(low), float(high), len(methods),
                         (x.shape[1], y.shape[1]))
