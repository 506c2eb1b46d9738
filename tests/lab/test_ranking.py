"""Does the ranking of methods hold across networks: rankings, Kendall's tau and its bootstrap interval."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest
import torch

from camsurvey.lab import ranking
from camsurvey.metrics import Score, as_score


def kendall_tau_a(x, y) -> float:
    """The oracle: (concordant - discordant) / pairs, for sequences without ties (Kendall 1938)."""
    pairs = list(combinations(range(len(x)), 2))
    sign = [np.sign((x[i] - x[j]) * (y[i] - y[j])) for i, j in pairs]
    return float(sum(sign) / len(pairs))


def synthetic_scores(means_by_network: dict, images: int = 40, noise: float = 0.05, seed: int = 0) -> dict:
    """``{network: {method: {"iou": Score, "deletion": Score}}}`` around the given per-method means."""
    generator = np.random.default_rng(seed)
    shared = generator.normal(0, noise, size=images)  # an image effect every method and network shares
    scores = {}
    for network, means in means_by_network.items():
        scores[network] = {}
        for method, mean in means.items():
            values = mean + shared + generator.normal(0, noise, size=images)
            scores[network][method] = {"iou": as_score(torch.tensor(values)),
                                       "deletion": as_score(torch.tensor(1 - values))}
    return scores


SAME = {"a": 0.9, "b": 0.7, "c": 0.5, "d": 0.3, "e": 0.1}


def test_identical_orders_agree_and_reversed_orders_disagree():
    reversed_means = dict(zip(SAME, reversed(list(SAME.values()))))
    study = ranking.ranking_study(synthetic_scores({"lite0": SAME, "lite1": SAME, "flipped": reversed_means}),
                                  resamples=100)
    assert study.agreement("iou", "lite0", "lite1").tau == pytest.approx(1.0)
    assert study.agreement("iou", "lite0", "flipped").tau == pytest.approx(-1.0)
    assert study.rankings["iou"]["lite0"] == {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0, "e": 5.0}


def test_a_lower_is_better_metric_ranks_the_lowest_mean_first():
    study = ranking.ranking_study(synthetic_scores({"lite0": SAME, "lite1": SAME}), resamples=100)
    assert study.rankings["deletion"]["lite0"]["a"] == 1.0  # 1 - 0.9: the lowest deletion
    assert study.rankings["iou"]["lite0"]["a"] == 1.0


def test_tau_matches_an_independent_count_of_concordant_pairs():
    generator = np.random.default_rng(3)
    for _ in range(20):
        x, y = generator.permutation(6).astype(float), generator.permutation(6).astype(float)
        assert ranking.kendall_tau(x, y)[0] == pytest.approx(kendall_tau_a(x, y))


def test_study_tau_is_kendalls_tau_of_the_mean_scores():
    means = {"lite0": SAME, "lite1": {"a": 0.8, "b": 0.85, "c": 0.2, "d": 0.4, "e": 0.1}}
    scores = synthetic_scores(means, noise=0.01)
    study = ranking.ranking_study(scores, metrics=["iou"], resamples=100)
    measured = [[float(scores[n][m]["iou"].mean) for m in SAME] for n in means]
    assert study.agreement("iou", "lite0", "lite1").tau == pytest.approx(kendall_tau_a(*measured))


def test_ties_share_the_average_rank():
    assert ranking.rank_methods({"a": 0.5, "b": 0.5, "c": 0.1}, higher_is_better=True) == {"a": 1.5, "b": 1.5, "c": 3.0}


def test_clear_orders_give_a_tight_interval_and_noise_a_wide_one():
    clear = ranking.ranking_study(synthetic_scores({"x": SAME, "y": SAME}, noise=0.01), metrics=["iou"],
                                  resamples=300)
    assert clear.agreement("iou", "x", "y").low == pytest.approx(1.0)
    flat = {m: 0.5 for m in SAME}
    noisy = ranking.ranking_study(synthetic_scores({"x": flat, "y": flat}, noise=0.2), metrics=["iou"],
                                  resamples=300)
    found = noisy.agreement("iou", "x", "y")
    assert found.low < 0 < found.high and found.high - found.low > 0.8


def test_shared_images_are_drawn_once_for_every_network():
    scores = synthetic_scores({"x": {m: 0.5 for m in SAME}}, noise=0.2)
    # network y sees exactly the same per-image scores, shifted: every draw of shared images gives tau = 1
    scores["y"] = {m: {"iou": as_score(s["iou"].per_image + 1)} for m, s in scores["x"].items()}
    scores["x"] = {m: {"iou": s["iou"]} for m, s in scores["x"].items()}
    paired = ranking.ranking_study(scores, resamples=200).agreement("iou", "x", "y")
    assert (paired.tau, paired.low, paired.high) == pytest.approx((1.0, 1.0, 1.0))
    independent = ranking.ranking_study(scores, resamples=200, same_images=False).agreement("iou", "x", "y")
    assert independent.low < 0.5  # drawing each network's images on their own loses the pairing


def test_the_bootstrap_is_seeded():
    scores = synthetic_scores({"x": SAME, "y": {m: 0.5 for m in SAME}}, noise=0.2)
    first = ranking.ranking_study(scores, metrics=["iou"], resamples=200, seed=4).agreement("iou", "x", "y")
    again = ranking.ranking_study(scores, metrics=["iou"], resamples=200, seed=4).agreement("iou", "x", "y")
    assert first == again


def test_every_pair_of_networks_and_every_common_metric_is_compared():
    study = ranking.ranking_study(synthetic_scores({"n1": SAME, "n2": SAME, "n3": SAME, "n4": SAME}), resamples=50)
    assert {(a.metric, a.networks) for a in study.agreements} == \
        {(m, pair) for m in ("iou", "deletion") for pair in combinations(["n1", "n2", "n3", "n4"], 2)}
    text = study.agreement_table()
    assert "n1 / n4" in text and "95% interval" in text
    table = study.ranking_table("deletion")
    assert "lower is better" in table and table.count("\n") == 1 + len(SAME)


def test_methods_only_one_network_has_are_left_out_of_its_tau():
    scores = synthetic_scores({"x": SAME, "y": {**SAME, "extra": 0.95}})
    found = ranking.ranking_study(scores, metrics=["iou"], resamples=50).agreement("iou", "x", "y")
    assert found.methods == 5 and found.tau == pytest.approx(1.0)


def test_inputs_that_cannot_be_ranked_get_one_clear_message():
    scores = synthetic_scores({"x": SAME, "y": SAME})
    with pytest.raises(ValueError, match="at least two networks"):
        ranking.ranking_study({"x": scores["x"]})
    uneven = {**scores, "y": {**scores["y"], "a": {"iou": Score(torch.ones(3), 1.0), "deletion": scores["y"]["a"]["deletion"]}}}
    with pytest.raises(ValueError, match="different numbers of images"):
        ranking.ranking_study(uneven, metrics=["iou"])
    with pytest.raises(ValueError, match=r"direction of .*'my_metric'"):
        ranking.ranking_study({n: {m: {"my_metric": [1.0, 2.0]} for m in SAME} for n in "xy"})
    assert ranking.ranking_study({n: {m: {"my_metric": [v, v + 1]} for m, v in SAME.items()} for n in "xy"},
                                 higher_is_better={"my_metric": True}, resamples=20).agreements[0].tau == pytest.approx(1.0)
    tied = {"x": scores["x"], "y": {m: {"iou": [0.5, 0.5]} for m in SAME}}
    with pytest.raises(ValueError, match="same mean"):
        ranking.ranking_study(tied, metrics=["iou"], same_images=False)
    with pytest.raises(ValueError, match="finite"):
        ranking.ranking_study({n: {m: {"iou": [float("nan")]} for m in SAME} for n in "xy"})
    with pytest.raises(ValueError, match="resamples"):
        ranking.ranking_study(scores, resamples=0)


def test_adcc_of_means_is_not_resampled_by_default():
    scores = synthetic_scores({"x": SAME, "y": SAME})
    for network in scores.values():
        for entry in network.values():
            entry["adcc_of_means"] = Score(torch.tensor([0.5], dtype=torch.float64), 0.5)
    assert set(ranking.ranking_study(scores, resamples=20).rankings) == {"iou", "deletion"}
