"""The metrics of survey Section V.B on cases whose answer is known by hand or in closed form."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

import camsurvey as cs
from camsurvey import metrics
from camsurvey.lab import evaluation

SIZE = 32


class MeanPixelModel(nn.Module):
    """Two classes; the softmax probability of class 0 is the image's mean pixel value m.

    Logits ``(log m, log(1 - m))`` give softmax ``(m, 1 - m)``: every faithfulness metric
    then has a closed form. ``dark=True`` swaps the classes (class 0 prefers dark images).
    """

    def __init__(self, dark: bool = False):
        super().__init__()
        self.dark = dark

    def forward(self, images):
        mean = images.mean(dim=(1, 2, 3)).double().clamp(1e-9, 1 - 1e-9)
        logits = torch.stack([mean.log(), (1 - mean).log()], dim=1)
        return logits.flip(1) if self.dark else logits


def left_half_image():
    """One image: the left half white (the object), the right half black."""
    image = torch.zeros(1, 3, SIZE, SIZE)
    image[..., : SIZE // 2] = 1.0
    return image


def box_map(box):
    """The perfect map for ``box``: 1 inside, 0 outside."""
    return cs.box_mask(box, SIZE).float().unsqueeze(0)


BOX = (4, 8, 20, 24)  # 16 x 16 pixels of a 32 x 32 image
BOX_SHARE = 16 * 16 / SIZE**2


# ---------------------------------------------------------------- localisation (eqs. 6, 7)

def test_pointing_game_perfect_empty_and_whole_image_maps():
    assert metrics.energy_pointing_game(box_map(BOX), [BOX]).mean == 1.0
    assert metrics.energy_pointing_game(torch.zeros(1, SIZE, SIZE), [BOX]).mean == 0.0
    assert metrics.energy_pointing_game(torch.ones(1, SIZE, SIZE), [BOX]).mean == pytest.approx(BOX_SHARE)


def test_pointing_game_with_exact_masks_equals_the_same_boxes():
    saliency = torch.rand(2, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    boxes = [BOX, (0, 0, 10, 5)]
    masks = torch.stack([cs.box_mask(b, SIZE) for b in boxes])
    by_box = metrics.energy_pointing_game(saliency, boxes).per_image
    assert torch.allclose(by_box, metrics.energy_pointing_game(saliency, masks).per_image)
    assert 0 < by_box.min() and by_box.max() < 1


def test_iou_perfect_empty_and_whole_image_maps():
    assert metrics.localization_iou(box_map(BOX), [BOX]).mean == 1.0
    assert metrics.localization_iou(torch.zeros(1, SIZE, SIZE), [BOX]).mean == 0.0
    assert metrics.localization_iou(torch.ones(1, SIZE, SIZE), [BOX]).mean == pytest.approx(BOX_SHARE)


def test_iou_box_comes_from_the_largest_connected_component():
    saliency = torch.zeros(1, SIZE, SIZE)
    saliency[0, 8:24, 4:20] = 0.5      # the large component: exactly BOX
    saliency[0, 0:3, 28:31] = 1.0      # a small, brighter one (holds the maximum)
    assert metrics.estimated_box(saliency[0], 0.2) == BOX
    assert metrics.localization_iou(saliency, [BOX], threshold=0.2).mean == 1.0
    # at threshold 1.0 (only the maximum survives) the box is the small square: no overlap
    assert metrics.estimated_box(saliency[0], 1.0) == (28, 0, 31, 3)
    assert metrics.localization_iou(saliency, [BOX], threshold=1.0).mean == 0.0


def test_box_iou_hand_computed():
    assert metrics.box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert metrics.box_iou((0, 0, 10, 10), (10, 10, 20, 20)) == 0.0


# ---------------------------------------------------------------- Average Drop, Increase in Confidence (eqs. 8, 9)

def test_average_drop_and_increase_in_confidence_hand_computed():
    model, image = MeanPixelModel(), left_half_image()            # s = 0.5
    whole, empty, half = torch.ones(1, SIZE, SIZE), torch.zeros(1, SIZE, SIZE), torch.full((1, SIZE, SIZE), 0.5)
    perfect = torch.zeros(1, SIZE, SIZE)
    perfect[..., : SIZE // 2] = 1.0
    assert metrics.average_drop(model, image, whole, 0).mean == pytest.approx(0.0)
    assert metrics.average_drop(model, image, perfect, 0).mean == pytest.approx(0.0)   # x * map = x
    assert metrics.average_drop(model, image, empty, 0).mean == pytest.approx(1.0, abs=1e-6)
    assert metrics.average_drop(model, image, half, 0).mean == pytest.approx(0.5)      # s' = 0.25
    assert metrics.increase_in_confidence(model, image, half, 0).mean == 0.0
    # a class that prefers dark images gains confidence when the map dims the image
    dark = MeanPixelModel(dark=True)
    assert metrics.increase_in_confidence(dark, image, half, 0).mean == 1.0
    assert metrics.average_drop(dark, image, half, 0).mean == 0.0
    assert metrics.increase_in_confidence(dark, image, whole, 0).mean == 0.0          # equal is no increase


def test_average_drop_of_the_all_ones_map_is_zero_on_a_real_model(model):
    images = cs.load_images(["chelsea", "coffee"])
    assert metrics.average_drop(model, images, torch.ones(2, 224, 224)).mean == pytest.approx(0.0, abs=1e-6)


# ---------------------------------------------------------------- insertion and deletion (Petsiuk et al.)

def test_deletion_and_insertion_auc_closed_form():
    """p(fraction f moved) is piecewise linear with a kink at f = 0.5, so the trapezoid rule is exact."""
    model, image = MeanPixelModel(), left_half_image()
    perfect = image[:, 0].clone()               # the white half is the salient half
    reverse = 1 - perfect
    black = torch.zeros(1, 3, 1, 1)
    # deletion of the white half first: p = 0.5 - f until f = 0.5, then 0 -> area 1/8
    assert metrics.deletion_auc(model, image, perfect, 0, steps=16).mean == pytest.approx(0.125, abs=1e-6)
    assert metrics.deletion_auc(model, image, reverse, 0, steps=16).mean == pytest.approx(0.375, abs=1e-6)
    # insertion onto black: p = f until f = 0.5, then 0.5 -> area 3/8
    assert metrics.insertion_auc(model, image, perfect, 0, steps=16, baseline=black).mean == pytest.approx(0.375, abs=1e-6)
    assert metrics.insertion_auc(model, image, reverse, 0, steps=16, baseline=black).mean == pytest.approx(0.125, abs=1e-6)


def test_insertion_is_deterministic_and_starts_from_the_blurred_image():
    model = MeanPixelModel()
    image = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    saliency = torch.rand(2, SIZE, SIZE, generator=torch.Generator().manual_seed(4))
    first = metrics.insertion_auc(model, image, saliency, 0, steps=8).per_image
    assert torch.equal(first, metrics.insertion_auc(model, image, saliency, 0, steps=8).per_image)
    curve = metrics.causal_curve(model, metrics.blurred(image), image, saliency, torch.zeros(2, dtype=torch.long), 4, 8)
    assert torch.allclose(curve[:, 0], metrics.blurred(image).mean(dim=(1, 2, 3)).double(), atol=1e-6)
    assert torch.allclose(curve[:, -1], image.mean(dim=(1, 2, 3)).double(), atol=1e-6)


# ---------------------------------------------------------------- Coherency, Complexity, ADCC (eq. 10)

def test_complexity_perfect_empty_and_whole_image_maps():
    assert metrics.complexity(box_map(BOX)).mean == pytest.approx(BOX_SHARE)
    assert metrics.complexity(torch.zeros(1, SIZE, SIZE)).mean == 0.0
    assert metrics.complexity(torch.ones(1, SIZE, SIZE)).mean == 1.0


def test_coherency_of_identical_opposite_and_constant_maps():
    model, image = MeanPixelModel(), left_half_image()
    saliency = torch.linspace(0, 1, SIZE * SIZE).view(1, SIZE, SIZE)
    assert metrics.coherency(model, image, saliency, lambda x, t: saliency, 0).mean == pytest.approx(1.0)
    assert metrics.coherency(model, image, saliency, lambda x, t: 1 - saliency, 0).mean == pytest.approx(0.0)
    # a constant map has no correlation: we score it 0 (the official code gets NaN from scipy's pearsonr)
    ones = torch.ones(1, SIZE, SIZE)
    assert metrics.coherency(model, image, ones, lambda x, t: ones, 0).mean == 0.0


def brightness_explainer(images, target):
    """A toy method whose map depends on the image: the min-max normalised grey level."""
    grey = images.mean(dim=1)
    low = grey.amin(dim=(-2, -1), keepdim=True)
    return (grey - low) / (grey.amax(dim=(-2, -1), keepdim=True) - low).clamp_min(1e-12)


def official_adcc(model, image, saliency, explainer, target):
    """ADCC of one image written from Poppi et al.'s formulas, with numpy and scipy only."""
    with torch.no_grad():
        s = torch.softmax(model(image), 1)[0, target].item()
        explanation = image * saliency
        s_masked = torch.softmax(model(explanation), 1)[0, target].item()
    average_drop = max(0.0, s - s_masked) / s
    again = explainer(explanation, target)
    r, _ = stats.pearsonr(saliency.flatten().numpy(), again.flatten().numpy())
    coherency = (r + 1) / 2
    complexity = np.abs(saliency.numpy()).sum() / (saliency.shape[-1] * saliency.shape[-2])
    return 3 / (1 / coherency + 1 / (1 - complexity) + 1 / (1 - average_drop)), (coherency, complexity, average_drop)


def test_adcc_matches_an_independent_implementation_of_the_official_formulas():
    model = MeanPixelModel()
    generator = torch.Generator().manual_seed(7)
    images = torch.rand(3, 3, SIZE, SIZE, generator=generator)
    saliency = torch.rand(3, SIZE, SIZE, generator=generator) ** 2
    result = metrics.adcc_score(model, images, saliency, brightness_explainer, target=0)
    for i in range(3):
        expected, (coh, com, ad) = official_adcc(model, images[i:i + 1], saliency[i], brightness_explainer, 0)
        assert result.coherency.per_image[i] == pytest.approx(coh, abs=1e-6)
        assert result.complexity.per_image[i] == pytest.approx(com, abs=1e-6)
        assert result.average_drop.per_image[i] == pytest.approx(ad, abs=1e-6)
        assert result.per_image[i] == pytest.approx(expected, abs=1e-6)
    assert result.mean == pytest.approx(float(result.per_image.mean()))


def test_adcc_is_a_harmonic_mean_and_averaging_parts_first_differs():
    assert float(metrics.adcc(1.0, 0.0, 0.0)) == 1.0
    assert float(metrics.adcc(0.5, 0.5, 0.5)) == pytest.approx(0.5)
    assert float(metrics.adcc(0.9, 1.0, 0.1)) == 0.0       # the whole image as map: Complexity 1
    per_image = metrics.adcc(torch.tensor([1.0, 0.2]), torch.tensor([0.1, 0.1]), torch.tensor([0.0, 0.5]))
    mean_first = float(per_image.mean())
    of_means = float(metrics.adcc(0.6, 0.1, 0.25))
    assert mean_first != pytest.approx(of_means, abs=1e-3)


def test_adcc_with_a_registered_method_on_a_real_model(model):
    image = cs.load_image("coffee")
    saliency = cs.explain("gradcam", model, image, target=967)
    result = metrics.adcc_score(model, image, saliency, "gradcam", target=967)
    assert 0.5 < result.coherency.mean <= 1.0
    assert 0.0 < result.complexity.mean < 0.6
    assert 0.0 < result.mean < 1.0


def test_evaluation_plan_sends_costly_methods_to_the_slow_photos_only(model):
    plan, skipped = evaluation.evaluation_plan(model, ["chelsea", "coffee"], ["gradcam", "scorecam"],
                                            max_full_passes=2, slow_methods=["scorecam"], slow_photos=["coffee"])
    assert plan == {"gradcam": ["chelsea", "coffee"], "scorecam": ["coffee"]} and skipped == []
    plan, skipped = evaluation.evaluation_plan(model, ["chelsea"], ["gradcam", "scorecam"], slow_photos=["chelsea"])
    assert plan == {"gradcam": ["chelsea"]} and skipped == ["scorecam"]
    assert evaluation.passes_per_image("scorecam", model) == 1 + 1280


def scores(**per_image):
    """``{metric: Score}`` from per-image lists, as evaluation.evaluate returns them."""
    return {metric: metrics.as_score(torch.tensor(values, dtype=torch.float64)) for metric, values in per_image.items()}


def test_methods_are_ranked_only_against_methods_scored_on_the_same_photos():
    five = ["a", "b", "c", "d", "e"]
    plan = {"cheap": five, "other": five, "costly": ["c"]}
    results = {"cheap": scores(iou=[0.1, 0.2, 0.5, 0.2, 0.1]), "other": scores(iou=[0.3, 0.3, 0.1, 0.3, 0.3]),
               "costly": scores(iou=[0.9])}
    original = {method: {m: s.per_image.clone() for m, s in row.items()} for method, row in results.items()}
    assert evaluation.best_methods(results, ["iou"]) == {"iou": "costly"}  # what a mixed ranking would say
    sets = evaluation.by_photo_set(results, plan)
    assert list(sets) == [tuple(five), ("c",)]
    assert set(sets[tuple(five)]) == {"cheap", "other"}  # the one-photo method is not ranked on five
    assert evaluation.best_methods(sets[tuple(five)], ["iou"]) == {"iou": "other"}
    on_c = sets[("c",)]
    assert set(on_c) == {"cheap", "other", "costly"}  # and on its photo, everyone is compared
    assert on_c["cheap"]["iou"].per_image.tolist() == [0.5] and on_c["other"]["iou"].mean == pytest.approx(0.1)
    table = evaluation.best_by_photo_set(results, plan, ["iou"])
    assert table.splitlines()[1].split() == ["iou", "other", "costly"]
    assert all(torch.equal(results[method][m].per_image, values) for method, row in original.items()
               for m, values in row.items())  # the caller's results are unchanged


def test_adcc_of_means_is_recomputed_on_the_photos_compared():
    parts = dict(coherency=[0.9, 0.5], complexity=[0.2, 0.6], average_drop=[0.1, 0.7])
    row = scores(**parts)
    row["adcc_of_means"] = metrics.Score(torch.tensor([0.0], dtype=torch.float64), 0.0)  # over both photos
    second = evaluation.on_photos({"m": row}, {"m": ["a", "b"]}, ["b"])["m"]
    expected = 3 / (1 / 0.5 + 1 / (1 - 0.6) + 1 / (1 - 0.7))  # eq. (10) by hand, on photo b alone
    assert second["adcc_of_means"].mean == pytest.approx(expected)


def test_ties_are_named_or_counted_and_a_metric_some_method_lacks_is_not_ranked():
    results = {name: scores(deletion=[0.2], iou=[0.5]) for name in ("a", "b")}
    results["c"] = scores(deletion=[0.2 + 1e-9], iou=[0.4])
    results["d"] = scores(deletion=[0.3])
    assert evaluation.best_methods(results, ["deletion", "iou"]) == {"deletion": "a=b=c", "iou": "-"}
    results["e"] = scores(deletion=[0.2], iou=[0.1])
    assert evaluation.best_methods(results, ["deletion"]) == {"deletion": "4 tied"}


# ---------------------------------------------------------------- clear errors

def test_metrics_reject_maps_and_images_of_mismatched_shape():
    model, image = MeanPixelModel(), left_half_image()
    with pytest.raises(ValueError, match="does not match"):
        metrics.average_drop(model, image, torch.ones(1, SIZE, SIZE + 1), 0)
    with pytest.raises(ValueError, match="does not match"):
        metrics.insertion_auc(model, image, torch.ones(2, SIZE, SIZE), 0)
    with pytest.raises(ValueError, match="masks"):
        metrics.energy_pointing_game(torch.ones(1, SIZE, SIZE), torch.ones(1, SIZE, 8, dtype=torch.bool))
    with pytest.raises(ValueError, match="one box"):
        metrics.localization_iou(torch.ones(2, SIZE, SIZE), [BOX])


def test_metrics_reject_empty_boxes_and_masks():
    with pytest.raises(ValueError, match="empty box"):
        metrics.energy_pointing_game(torch.ones(1, SIZE, SIZE), [(5, 5, 5, 9)])
    with pytest.raises(ValueError, match="empty box"):
        metrics.localization_iou(torch.ones(1, SIZE, SIZE), [(9, 5, 4, 9)])
    with pytest.raises(ValueError, match="empty ground-truth mask"):
        metrics.energy_pointing_game(torch.ones(1, SIZE, SIZE), torch.zeros(1, SIZE, SIZE, dtype=torch.bool))
    with pytest.raises(ValueError, match="outside"):
        metrics.energy_pointing_game(torch.ones(1, SIZE, SIZE), [(0, 0, SIZE + 1, 4)])


def test_metrics_reject_maps_outside_the_unit_range_or_not_finite():
    model, image = MeanPixelModel(), left_half_image()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        metrics.complexity(torch.full((1, SIZE, SIZE), 1.5))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        metrics.average_drop(model, image, -torch.ones(1, SIZE, SIZE), 0)
    with pytest.raises(ValueError, match="NaN"):
        metrics.energy_pointing_game(torch.full((1, SIZE, SIZE), float("nan")), [BOX])
    with pytest.raises(ValueError, match="batch dimension"):
        metrics.complexity(torch.ones(SIZE, SIZE))
    with pytest.raises(TypeError):
        metrics.complexity(np.ones((1, SIZE, SIZE)))


def test_metrics_reject_bad_parameters():
    model, image = MeanPixelModel(), left_half_image()
    with pytest.raises(ValueError, match="threshold"):
        metrics.localization_iou(box_map(BOX), [BOX], threshold=0)
    with pytest.raises(ValueError, match="steps"):
        metrics.deletion_auc(model, image, box_map(BOX), 0, steps=0)
    with pytest.raises(ValueError, match="unknown method"):
        metrics.coherency(model, image, box_map(BOX), "no-such-cam", 0)
    with pytest.raises(TypeError, match="explainer"):
        metrics.coherency(model, image, box_map(BOX), 42, 0)


def test_a_map_correlates_with_itself_exactly_one_never_more():
    """Rounding put the unclamped quotient above 1 for 53 of these 200 maps (max 1 + 4e-16), and a
    Coherency of 1.0000000000000018 made ADCC refuse it as out of [0, 1]."""
    maps = torch.rand(200, 7, 7, generator=torch.Generator().manual_seed(0))
    correlation = metrics.pearson(maps, maps)
    assert (correlation <= 1).all() and (correlation >= 1 - 1e-12).all()
    assert (metrics.pearson(maps, -maps) >= -1).all()
    coherency = metrics.coherency_of_maps(maps, maps)
    assert float(coherency.per_image.max()) <= 1
    assert torch.isfinite(metrics.adcc(coherency.per_image, torch.full((200,), 0.2), torch.full((200,), 0.3))).all()
