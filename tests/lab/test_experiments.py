"""The experiments of survey Section VI (camsurvey.lab.experiments) and EVET's intensity transformations."""

from __future__ import annotations

import pytest
import torch

import camsurvey as cs
from camsurvey.datasets import scenes
from camsurvey.lab import experiments
from camsurvey.methods.helpers import INTENSITY_TRANSFORMS, TRANSFORMS, adaptive_filter, resolve_transforms
from camsurvey.metrics import Score, energy_pointing_game


@pytest.fixture(scope="module")
def random_model():
    """The scene architecture with seeded random weights: the experiments' plumbing needs no training."""
    return cs.load_model("scenes_cnn", weights=None, device="cpu")


@pytest.fixture(scope="module")
def multi():
    return scenes.generate("multi_label", 4, seed=3)


def _score(values) -> Score:
    values = torch.tensor(values, dtype=torch.float64)
    return Score(values, float(values.mean()))


# ---------------------------------------------------------------- VI.A errors

def test_misclassified_finds_exactly_the_images_whose_top1_is_not_the_label(random_model):
    batch = scenes.generate("small", 6, seed=1)
    predicted = cs.predict_labels(random_model, batch.images)
    wrong, top1 = experiments.misclassified(random_model, batch.images, predicted)
    assert len(wrong) == 0 and len(top1) == 0
    labels = predicted.clone()
    labels[[1, 4]] = (labels[[1, 4]] + 1) % len(scenes.CLASSES)
    wrong, top1 = experiments.misclassified(random_model, batch.images, labels)
    assert wrong.tolist() == [1, 4] and torch.equal(top1, predicted[[1, 4]])
    with pytest.raises(ValueError, match="one label per image"):
        experiments.misclassified(random_model, batch.images, labels[:3])


def test_class_maps_explain_each_target_and_energy_table_lies_in_0_1(random_model):
    batch = scenes.generate("large", 3, seed=2)
    other = (batch.labels + 1) % len(scenes.CLASSES)
    maps = experiments.class_maps(random_model, batch.images, {"true": batch.labels, "other": other}, ["gradcam", "cam"])
    assert set(maps) == {"gradcam", "cam"} and set(maps["cam"]) == {"true", "other"}
    assert torch.allclose(maps["cam"]["other"], cs.explain("cam", random_model, batch.images, target=other))
    table = experiments.energy_table(maps, batch.masks)
    for by_target in table.values():
        for score in by_target.values():
            assert score.per_image.shape == (3,) and 0 <= score.per_image.min() and score.per_image.max() <= 1
    with pytest.raises(TypeError, match="targets"):
        experiments.class_maps(random_model, batch.images, batch.labels, ["cam"])
    with pytest.raises(TypeError, match="methods"):
        experiments.class_maps(random_model, batch.images, {"true": batch.labels}, "cam")


def test_energy_shares_over_a_partition_of_the_image_sum_to_one(multi):
    _, _, own, others = experiments.label_targets(multi)
    rest = ~(own | others)
    saliency = torch.rand(own.shape, generator=torch.Generator().manual_seed(0))
    parts = [energy_pointing_game(saliency, mask).per_image for mask in (own, others, rest)]
    assert all(((p >= 0) & (p <= 1)).all() for p in parts)
    assert torch.allclose(sum(parts), torch.ones(len(own), dtype=torch.float64), atol=1e-6)


# ---------------------------------------------------------------- VI.A bias

def test_a_map_concentrated_on_the_cue_region_puts_all_its_energy_there():
    saliency = torch.zeros(2, 64, 64)
    saliency[:, :8, :8] = 0.1 + 0.9 * torch.rand(2, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(energy_pointing_game(saliency, experiments.cue_boxes(2)).per_image, torch.ones(2, dtype=torch.float64))
    saliency[:, 40, 40] = 1.0  # one pixel outside the corner
    assert energy_pointing_game(saliency, experiments.cue_boxes(2)).mean < 1


def test_cue_boxes_must_hold_the_mark():
    assert experiments.cue_boxes(3, 64, 8).tolist() == [[0, 0, 8, 8]] * 3
    with pytest.raises(ValueError, match="hold the mark"):
        experiments.cue_boxes(1, 64, scenes.CUE_SIZE)
    with pytest.raises(ValueError, match="count"):
        experiments.cue_boxes(0)


def test_cue_pairs_are_the_same_scenes_with_and_without_the_mark():
    marked, unmarked = experiments.cue_pairs(12, seed=5, include_cue_class=True)
    assert marked.cue.all() and not unmarked.cue.any()
    assert torch.equal(marked.labels, unmarked.labels) and torch.equal(marked.masks, unmarked.masks)
    corner = 1 + scenes.CUE_SIZE
    assert torch.equal(marked.images[..., corner:, :], unmarked.images[..., corner:, :])
    assert torch.equal(marked.images[..., :, corner:], unmarked.images[..., :, corner:])
    assert not torch.equal(marked.images, unmarked.images)
    # the mark is exactly what the dataset draws on the cue class's own training images
    as_trained = scenes.generate_mixed(("large", "small"), 12, seed=5, cue="class", cue_class=0)
    discs = (as_trained.labels == 0).nonzero().flatten()
    assert len(discs) and torch.equal(marked.images[discs], as_trained.images[discs])
    false_clues, _ = experiments.cue_pairs(12, seed=5)
    assert (false_clues.labels != 0).all() and len(false_clues) == int((marked.labels != 0).sum())


def test_cue_energy_is_a_share_per_run_and_method(random_model):
    marked, unmarked = experiments.cue_pairs(6, seed=1)
    table = experiments.cue_energy({"mark": (random_model, marked), "none": (random_model, unmarked)}, ["cam"])
    assert set(table["cam"]) == {"mark", "none"}
    for score in table["cam"].values():
        assert score.per_image.shape == (len(marked),)
        assert ((score.per_image >= 0) & (score.per_image <= 1)).all()


def test_fooled_by_cue_are_the_pairs_whose_disc_the_mark_alone_decides():
    biased = cs.load_model("scenes_cnn_cue", device="cpu")
    marked, unmarked = experiments.cue_pairs(24, seed=2)
    fooled = experiments.fooled_by_cue(biased, marked, unmarked).tolist()
    with torch.no_grad():
        with_mark, without = biased(marked.images).argmax(1), biased(unmarked.images).argmax(1)
    assert fooled == [i for i in range(len(marked)) if with_mark[i] == 0 and without[i] != 0]
    assert 0 < len(fooled) < len(marked)  # the biased model is fooled on some pairs, not all


# ---------------------------------------------------------------- VI.B intensity transformations

@pytest.mark.parametrize("name", sorted(INTENSITY_TRANSFORMS))
def test_intensity_transforms_keep_shape_and_range_are_deterministic_and_move_no_pixel(name):
    images = scenes.generate("small", 2, seed=4).images
    transform = INTENSITY_TRANSFORMS[name]
    changed = transform.forward(images)
    assert changed.shape == images.shape and changed.dtype == images.dtype
    assert 0 <= changed.min() and changed.max() <= 1 and torch.isfinite(changed).all()
    assert not torch.equal(changed, images)
    assert torch.equal(transform.forward(images), changed)
    maps = torch.rand(2, 64, 64)
    assert torch.equal(transform.inverse(maps), maps)
    flat = transform.forward(torch.full((1, 3, 40, 40), 0.3))
    assert torch.isfinite(flat).all() and 0 <= flat.min() and flat.max() <= 1


def test_intensity_transforms_are_not_among_the_geometric_ones_and_resolve_by_name():
    assert not set(INTENSITY_TRANSFORMS) & set(TRANSFORMS)
    assert [t.name for t in resolve_transforms(["identity", "equalize"])] == ["identity", "equalize"]
    with pytest.raises(ValueError, match="adaptive_filter"):
        resolve_transforms(["sharpen"])


def test_histogram_equalisation_flattens_the_histogram():
    skewed = torch.rand(1, 3, 48, 48, generator=torch.Generator().manual_seed(2)) ** 3
    equalized = INTENSITY_TRANSFORMS["equalize"].forward(skewed).flatten()
    quantiles = torch.quantile(equalized, torch.tensor([0.25, 0.5, 0.75]))
    assert torch.allclose(quantiles, torch.tensor([0.25, 0.5, 0.75]), atol=0.03)


def test_adaptive_filter_smooths_flat_noise_but_keeps_a_step_edge():
    generator = torch.Generator().manual_seed(0)
    step = torch.zeros(1, 3, 32, 32)
    step[..., 16:] = 1.0
    noisy = (step * 0.6 + 0.2 + 0.02 * torch.randn(1, 3, 32, 32, generator=generator)).clamp(0, 1)
    filtered = adaptive_filter(3).forward(noisy)
    assert filtered[..., 2:-2, 2:13].std() < noisy[..., 2:-2, 2:13].std()  # flat region: smoother
    assert (filtered[..., :, 15] - filtered[..., :, 16]).abs().mean() > 0.5  # the edge survives
    constant = torch.full((1, 3, 16, 16), 0.4)
    assert torch.allclose(adaptive_filter(5).forward(constant), constant)
    with pytest.raises(ValueError, match="odd"):
        adaptive_filter(4)


def test_evet_runs_with_intensity_transformations(random_model):
    images = scenes.generate("large", 2, seed=6).images
    saliency = cs.explain("evet", random_model, images, transforms=("identity", "equalize", "adaptive_filter"))
    assert saliency.shape == (2, 64, 64) and 0 <= saliency.min() and saliency.max() <= 1


def test_evet_variants_and_their_evaluation(random_model):
    variants = experiments.evet_variants(intensity=("contrast",))
    assert variants["base"] == ("identity",) and variants["geometric + intensity"][-1] == "contrast"
    with pytest.raises(ValueError, match="intensity"):
        experiments.evet_variants(intensity=("hflip",))
    batch = scenes.generate("large", 2, seed=7)
    results = experiments.evaluate_evet(random_model, batch, "cam", {"base": ("identity",)}, steps=2)
    expected = energy_pointing_game(cs.explain("cam", random_model, batch.images, target=batch.labels), batch.masks)
    assert torch.allclose(results["base"]["pointing_game"].per_image, expected.per_image)


# ---------------------------------------------------------------- VI.C image settings

def test_uniform_pointing_game_is_the_targets_share_of_the_image():
    chance = experiments.uniform_pointing_game(["small"], n=3, seed=0)["small"]
    masks = scenes.generate("small", 3, seed=0).masks
    assert torch.allclose(chance.per_image, masks.flatten(1).double().mean(1), atol=1e-6)


def test_scenario_table_names_the_worst_scenario_and_divides_by_chance():
    results = {"large": {"a": {"pointing_game": _score([0.6]), "deletion": _score([0.1])}},
               "small": {"a": {"pointing_game": _score([0.2]), "deletion": _score([0.3])}}}
    assert experiments.scenario_table(results, "pointing_game")["a"]["worst"] == "small"
    assert experiments.scenario_table(results, "deletion")["a"]["worst"] == "small"  # lower is better
    chance = {"large": _score([0.4]), "small": _score([0.05])}
    lifted = experiments.scenario_table(results, "pointing_game", chance, lift=True)["a"]
    assert lifted["large"] == pytest.approx(1.5) and lifted["small"] == pytest.approx(4.0) and lifted["worst"] == "large"
    assert experiments.scenario_table(results, "pointing_game", chance)["uniform map"]["small"] == pytest.approx(0.05)
    with pytest.raises(ValueError, match="chance"):
        experiments.scenario_table(results, "pointing_game", lift=True)
    with pytest.raises(ValueError, match="unknown metric"):
        experiments.scenario_table(results, "accuracy")


def test_instances_found_counts_the_objects_of_the_target_class_a_map_reaches():
    batch = scenes.generate("same", 6, seed=2, num_objects=2)
    first = batch.object_masks[:, 0].float()
    assert torch.allclose(experiments.instances_found(first, batch).per_image, torch.full((6,), 0.5, dtype=torch.float64))
    assert experiments.instances_found(batch.masks.float(), batch).mean == 1.0
    assert experiments.instances_found(torch.zeros(batch.masks.shape), batch).mean == 0.0
    with pytest.raises(ValueError, match="level"):
        experiments.instances_found(first, batch, level=0)
    with pytest.raises(ValueError, match="does not match"):
        experiments.instances_found(first[:, :32], batch)


# ---------------------------------------------------------------- VI.D multi-label

def test_label_targets_give_one_row_per_label_with_disjoint_masks(multi):
    image_index, classes, own, others = experiments.label_targets(multi)
    assert len(classes) == int(multi.multi_hot.sum())
    assert own.flatten(1).any(1).all() and others.flatten(1).any(1).all()
    assert not (own & others).any()
    assert torch.equal(own | others, multi.object_masks.any(1)[image_index])


def test_label_separation_is_perfect_for_a_map_on_the_own_objects_and_zero_on_the_others(multi):
    _, _, own, others = experiments.label_targets(multi)
    assert experiments.label_separation(own.float(), own, others).mean == 1.0
    assert experiments.label_separation(others.float(), own, others).mean == 0.0
    assert experiments.label_separation(torch.zeros(own.shape), own, others).mean == 0.0
    uniform = experiments.label_separation(torch.ones(own.shape), own, others).per_image
    area = own.flatten(1).sum(1) / (own | others).flatten(1).sum(1)
    assert torch.allclose(uniform, area.double(), atol=1e-6)


def test_separation_table_has_each_method_and_the_uniform_map(random_model, multi):
    table = experiments.separation_table(random_model, multi, ["cam", "eigencam"])
    assert list(table) == ["cam", "eigencam", "uniform map"]
    for row in table.values():
        assert set(row) == {"own", "others", "separation"}
        assert 0 <= row["separation"].mean <= 1


# ---------------------------------------------------------------- statistics

def test_paired_test_of_identical_scores_finds_no_difference():
    a = _score([0.1, 0.5, 0.9, 0.3])
    result = experiments.paired_test(a, a)
    assert result.n == 4 and result.mean_difference == 0 and result.p_value == 1.0
    assert experiments.verdict(result) == "no significant difference"
    nearly = _score((a.per_image + 1e-9).tolist())  # float rounding is a tie
    assert experiments.paired_test(nearly, a).p_value == 1.0


def test_paired_test_sign_test_and_bootstrap_interval():
    b = torch.linspace(0, 0.5, 12)
    a = b + torch.linspace(0.01, 0.1, 12)
    result = experiments.paired_test(a, b, resamples=500, seed=1)
    assert result.p_value == pytest.approx(2 * 0.5 ** 12)
    assert result.low <= result.mean_difference <= result.high and result.low > 0
    assert result == experiments.paired_test(a, b, resamples=500, seed=1)  # seeded: reproducible
    assert experiments.verdict(result) == "better"
    assert experiments.verdict(result, higher_is_better=False) == "worse"
    with pytest.raises(ValueError, match="same images"):
        experiments.paired_test(a, b[:5])
    assert "sign-test p" in experiments.paired_table({"x": result})


# ---------------------------------------------------------------- the Conclusion

def _rows():
    return {"a": {"pointing_game": _score([0.9, 0.8]), "iou": _score([0.1, 0.2]), "adcc": _score([0.5, 0.6]),
                  "deletion": _score([0.3, 0.3]), "cue_reveal": _score([0.1, 0.1]), "separation": _score([0.5, 0.5]),
                  "passes": 2},
            "b": {"pointing_game": _score([0.2, 0.3]), "iou": _score([0.4, 0.5]), "adcc": _score([0.4, 0.5]),
                  "deletion": _score([0.1, 0.2]), "cue_reveal": _score([0.2, 0.2]), "separation": _score([0.5, 0.5]),
                  "passes": 1}}


def test_recommend_picks_the_best_per_purpose_within_the_budget():
    chosen = experiments.recommend(_rows())
    assert chosen["point at the object"][:3] == ("a", (), "b")
    assert chosen["point at the object"].test.mean_difference == pytest.approx(0.6)
    assert chosen["remove the evidence first (Deletion)"].best == "b"  # lower deletion is better
    assert chosen["show what the model uses (ADCC)"].best == "a"
    assert chosen["ADCC at one full pass per image"] == ("b", (), None, None)  # only b costs one pass
    # the same scores on every image: a tie, reported as such, and no runner-up to test against
    assert chosen["explain each label of a multi-label image"] == ("a", ("b",), None, None)
    with pytest.raises(ValueError, match="no method"):
        experiments.recommend(_rows(), {"free": ("adcc", True, 0)})
    assert "passes" in experiments.summary_table(_rows())


def test_summary_has_every_column_for_every_method(random_model):
    rows = experiments.summary(random_model, random_model, ["cam"], n=6, seed=1, steps=2, scenarios=("large",))
    assert set(rows["cam"]) == {*experiments.SUMMARY_COLUMNS, "passes"}
    assert rows["cam"]["passes"] == 1
    assert rows["cam"]["pointing_game"].per_image.shape == (6,)
    assert -1 <= rows["cam"]["cue_reveal"].mean <= 1 and 0 <= rows["cam"]["separation"].mean <= 1


def test_best_of_reports_ties_and_tests_against_the_first_method_that_differs():
    scores = {"b": _score([0.5, 0.7]), "a": _score([0.5, 0.7 + 1e-9]), "c": _score([0.1, 0.2])}
    choice = experiments.best_of(scores)
    assert choice.best == "a" and choice.tied == ("b",) and choice.runner_up == "c"
    assert choice.test.mean_difference == pytest.approx(0.45)
    assert "a = b" in experiments.describe(choice) and "not separable" in experiments.describe(choice)  # 2 images
    assert experiments.best_of(scores, higher_is_better=False).best == "c"
    assert experiments.best_of({"a": scores["a"], "b": scores["b"]}).runner_up is None
    difference = experiments.score_difference(scores["a"], scores["c"])
    assert difference.mean == pytest.approx(0.45)
    with pytest.raises(ValueError, match="at least one"):
        experiments.best_of({})


def test_a_class_agnostic_map_separates_labels_exactly_as_well_as_a_uniform_map(multi):
    image_index, _, own, others = experiments.label_targets(multi)
    per_scene = torch.rand(len(multi), 64, 64, generator=torch.Generator().manual_seed(4))  # one map per scene
    agnostic = experiments.label_separation(per_scene[image_index], own, others).per_image
    uniform = experiments.label_separation(torch.ones(own.shape), own, others).per_image
    for scene in range(len(multi)):  # a scene's separations add up to 1 for both
        rows = image_index == scene
        assert agnostic[rows].sum() == pytest.approx(1.0) and uniform[rows].sum() == pytest.approx(1.0)
