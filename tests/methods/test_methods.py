"""The CAM methods of Section II (activation-based, gradient-based, gradient-free).

Each test names the property it proves. Score-CAM runs at the layer "stem" (32 channels)
where it only has to be a Score-CAM, so that it costs 32 forward passes, not 1280; the tests
that hold for any image use a 96 x 96 photo, the equations a 224 x 224 one.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from oracles import pearson

import camsurvey as cs
from camsurvey.methods import activation, gradient, perturbation
from camsurvey.plumbing import forward_activations, forward_and_backward, normalize, upsample

OURS = [name for name, entry in cs.METHODS.items() if entry.function.__module__ in
        (activation.__name__, gradient.__name__, perturbation.__name__)]
FEW_CHANNELS = "stem"  # 32 channels: where the slow methods are cheap
BIB = (Path(__file__).resolve().parents[2] / "references.bib").read_text()


def options(name):
    """Score-CAM on 96 x 96 images runs about 4x faster in batches of 32 than of 4 (measured)."""
    return {"layer": FEW_CHANNELS, "batch_size": 32} if name == "scorecam" else {}


@pytest.fixture(scope="module")
def model():
    return cs.load_model("efficientnet_lite0")


@pytest.fixture(scope="module")
def chelsea():
    return cs.load_images(["chelsea"])


@pytest.fixture(scope="module")
def small():
    return cs.load_images(["chelsea"], size=96)


# --- the registry ---------------------------------------------------------------------------

def test_registry_lists_every_method_with_its_equation():
    assert set(OURS) >= {"cam", "eigencam", "gradcam", "gradcam++", "xgradcam", "layercam",
                         "scorecam", "ablationcam", "reciprocam"}
    for name in OURS:
        entry = cs.METHODS[name]
        assert entry.equation and entry.section.startswith("II"), name
        assert f"{{{entry.reference}," in BIB, f"{name}: {entry.reference} is not in references.bib"
    assert cs.METHODS["cam"].equation == "eq. 1"
    assert re.search(r"eq\. 2.*eq\. 3", cs.METHODS["gradcam"].equation)
    assert cs.METHODS["scorecam"].equation == "eq. 4"
    assert not cs.METHODS["scorecam"].needs_gradients and cs.METHODS["gradcam"].needs_gradients


# --- what every method returns --------------------------------------------------------------

@pytest.mark.parametrize("name", OURS)
def test_every_method_returns_float_maps_of_the_image_size_in_unit_range(name, model, small):
    saliency = cs.explain(name, model, small, **options(name))
    assert saliency.shape == (1, 96, 96) and saliency.dtype == torch.float32
    assert torch.isfinite(saliency).all()
    assert saliency.min() == 0 and saliency.max() == 1  # not a constant (all-zero) map


@pytest.mark.parametrize("name", [n for n in OURS if n != "eigencam"])
def test_target_changes_the_map(name, model, small):
    cat, tench = cs.explain(name, model, torch.cat([small, small]), target=[285, 0], **options(name))
    assert not torch.allclose(cat, tench, atol=1e-3)


def test_eigencam_is_class_agnostic(model, chelsea):
    cat, tench = cs.explain("eigencam", model, torch.cat([chelsea, chelsea]), target=[285, 0])
    assert torch.equal(cat, tench)


@pytest.mark.parametrize("name", OURS)
def test_two_runs_give_identical_maps(name, model, small):
    assert torch.equal(cs.explain(name, model, small, **options(name)), cs.explain(name, model, small, **options(name)))


@pytest.mark.parametrize("name", OURS)
def test_a_black_image_gives_no_nan_map(name, model):
    saliency = cs.explain(name, model, torch.zeros(1, 3, 96, 96), **options(name))
    assert torch.isfinite(saliency).all() and saliency.min() >= 0 and saliency.max() <= 1


# --- the equations --------------------------------------------------------------------------

def test_hirescam_equals_relu_cam_over_z_on_gap_linear_head(model, chelsea):
    """HiResCAM generalises CAM: on GAP + linear every position's gradient is w_n^c / Z."""
    cam_raw, _ = cs.METHODS["cam"].function(model, chelsea, None, None)
    hirescam_raw, _ = cs.METHODS["hirescam"].function(model, chelsea, None, None)
    z = cam_raw.shape[-1] * cam_raw.shape[-2]
    assert torch.allclose(hirescam_raw, torch.relu(cam_raw) / z, rtol=1e-4, atol=1e-6)


def test_gradcam_equals_relu_cam_over_z_on_gap_linear_head(model, chelsea):
    """On GAP + linear, dy^c/dA^n_ij = w_n^c / Z, so eq. (3) gives a_n = w_n^c / Z."""
    cam_raw, target = cs.METHODS["cam"].function(model, chelsea, None, None)
    gradcam_raw, _ = cs.METHODS["gradcam"].function(model, chelsea, None, None)
    z = cam_raw.shape[-1] * cam_raw.shape[-2]
    assert torch.allclose(gradcam_raw, torch.relu(cam_raw) / z, rtol=1e-4, atol=1e-6)
    _activations, gradients, _, _ = forward_and_backward(model, chelsea, None, target)
    assert torch.allclose(gradient.gradcam_weights(gradients), model.fc.weight[target] / z, atol=1e-7)


def test_gradcampp_closed_form_is_the_general_formula_for_an_exponential_score(model, chelsea):
    activations, gradients, scores, target = forward_and_backward(model, chelsea, None, None)
    c, pooled, z = int(target[0]), activations[0].mean(dim=(-2, -1)), activations[0, 0].numel()
    for score, exact in ((lambda a: torch.exp(model.fc(a)[c]), True), (lambda a: torch.softmax(model.fc(a), -1)[c], False)):
        first, second, third = gradient.diagonal_derivatives(score, pooled)  # d^n Y / d pooled^n
        pixel = [d[:, None, None].expand_as(activations[0]) / z**n for n, d in enumerate((first, second, third), 1)]
        general = gradient.gradcampp_weights_from_derivatives(*pixel, activations[0])
        closed = gradient.gradcampp_weights(gradients[0], activations[0]) * torch.exp(scores[0, c])
        if exact:  # Y = exp(S): the closed form is exact, up to the factor exp(S) it drops
            assert torch.allclose(general, closed, rtol=1e-3, atol=1e-3 * closed.abs().max())
        else:  # Y = softmax: the closed form no longer is the formula
            assert not torch.allclose(general / general.abs().max(), closed / closed.abs().max(), atol=1e-2)


def test_xgradcam_satisfies_sensitivity_and_conservation_on_gap_linear_head(model, chelsea):
    activations, gradients, scores, target = forward_and_backward(model, chelsea, None, None)
    c = int(target[0])
    weights = gradient.xgradcam_weights(gradients, activations)[0]
    contributions = weights * activations[0].sum(dim=(-2, -1))  # sum_ij w_n A^n_ij
    _, head = model.split(None)
    drops = scores[0, c] - perturbation.ablated_class_scores(head, activations[0], c)
    assert torch.allclose(contributions, drops, atol=1e-4)  # sensitivity
    assert torch.isclose(contributions.sum(), scores[0, c] - model.fc.bias[c], atol=1e-3)  # conservation


def test_xgradcam_is_closer_to_the_axioms_than_gradcam_at_an_earlier_layer(model, chelsea):
    activations, gradients, scores, target = forward_and_backward(model, chelsea, "block14", None)
    c = int(target[0])
    _, head = model.split("block14")
    drops = scores[0, c] - perturbation.ablated_class_scores(head, activations[0], c)
    sums = activations[0].sum(dim=(-2, -1))
    errors = {}
    for name, weights in (("xgradcam", gradient.xgradcam_weights(gradients, activations)[0]),
                          ("gradcam", gradient.gradcam_weights(gradients)[0])):
        errors[name] = (weights * sums - drops).abs().mean()
    assert errors["xgradcam"] < errors["gradcam"]


def test_scorecam_weights_ignore_the_shift_by_the_unmasked_score():
    masked_scores, valid = torch.tensor([3.0, 1.0, -2.0, 5.0]), torch.tensor([True, True, False, True])
    shifted = perturbation.scorecam_weights(masked_scores, torch.tensor(4.0), valid)
    assert torch.allclose(shifted, perturbation.scorecam_weights(masked_scores, torch.tensor(0.0), valid))
    assert shifted[2] == 0 and torch.isclose(shifted.sum(), torch.tensor(1.0))


def slow_scorecam(model, image, layer):
    """Eq. (4) one channel at a time: mask, score, softmax, weighted sum, ReLU."""
    activations, scores = forward_activations(model, image, layer)
    c = int(scores.argmax())
    increases, kept = [], []
    for n in range(activations.shape[1]):
        upsampled = F.interpolate(activations[:, n : n + 1], size=image.shape[-2:], mode="bilinear", align_corners=False)
        low, high = upsampled.min(), upsampled.max()
        if high - low <= 1e-12:
            continue  # no mask for a constant channel
        with torch.no_grad():
            masked_score = model(image * (upsampled - low) / (high - low))[0, c]
        increases.append(masked_score - scores[0, c])
        kept.append(n)
    weights = torch.softmax(torch.stack(increases), dim=0)
    return torch.relu((weights[:, None, None] * activations[0, kept]).sum(dim=0))


def test_scorecam_matches_a_one_channel_at_a_time_reference(model, small):
    ours, _ = cs.METHODS["scorecam"].function(model, small, None, FEW_CHANNELS, batch_size=32)
    assert pearson(ours[0], slow_scorecam(model, small, FEW_CHANNELS)) >= 0.999


def test_scorecam_batch_size_does_not_change_the_map(model, small):
    one, _ = cs.METHODS["scorecam"].function(model, small, None, FEW_CHANNELS, batch_size=3)
    many, _ = cs.METHODS["scorecam"].function(model, small, None, FEW_CHANNELS, batch_size=32)
    assert torch.allclose(one, many, rtol=1e-4, atol=1e-6)


def slow_gaussian_window(model, image, layer):
    """Our Gaussian-window Recipro-CAM with one head pass per position and a hand-built 3x3 Gaussian
    window over each position's own activations (the authors' kernels: tests/methods/test_faithfulness.py)."""
    _, head = model.split(layer)
    activations, scores = forward_activations(model, image, layer)
    c = int(scores.argmax())
    height, width = activations.shape[-2:]
    saliency = torch.zeros(height, width)
    for i in range(height):
        for j in range(width):
            mask = torch.zeros(height, width)
            for di in (-1, 0, 1):
                for dj in (-1, 0, 1):
                    if 0 <= i + di < height and 0 <= j + dj < width:
                        mask[i + di, j + dj] = {0: 1 / 4, 1: 1 / 8, 2: 1 / 16}[abs(di) + abs(dj)]
            with torch.no_grad():
                saliency[i, j] = torch.softmax(head(activations * mask), dim=1)[0, c]
    return saliency


def test_reciprocam_gaussian_window_matches_one_head_pass_per_position(model, chelsea):
    ours, _ = cs.METHODS["reciprocam"].function(model, chelsea, None, None, kernel="gaussian-window")
    assert torch.allclose(ours[0], slow_gaussian_window(model, chelsea, None), rtol=1e-4, atol=1e-6)


def test_reciprocam_point_masks_keep_a_single_position():
    masks = perturbation.reciprocam_masks(3, 4, "point")
    assert masks.shape == (12, 3, 4) and torch.equal(masks.sum(dim=(1, 2)), torch.ones(12))
    assert torch.equal(perturbation.reciprocam_masks(3, 4), masks)  # the authors' default
    gaussian = perturbation.reciprocam_masks(3, 4, "gaussian")
    assert gaussian[5, 1, 1] == 0.25 and gaussian[5, 0, 1] == 0.125 and gaussian[5, 0, 0] == 0.0625


def test_eigencam_sign_follows_the_activations(model, chelsea):
    activations, _ = forward_activations(model, chelsea, None)
    projection = activation.first_principal_component(activations)
    assert pearson(projection[0], activations[0].sum(dim=0)) > 0


def test_explain_upsamples_then_normalises_the_raw_map(model, chelsea):
    raw, _ = cs.METHODS["gradcam"].function(model, chelsea, None, None)
    assert torch.allclose(cs.explain("gradcam", model, chelsea), normalize(upsample(raw, (224, 224))))


# --- bad input ------------------------------------------------------------------------------

def test_unknown_method_lists_the_valid_ones(model, chelsea):
    with pytest.raises(ValueError, match=re.escape("unknown method 'gradcam+'") + ".*" + re.escape("'gradcam++'")):
        cs.explain("gradcam+", model, chelsea)


def test_unknown_layer_lists_the_valid_ones(model, chelsea):
    with pytest.raises(ValueError, match=r"unknown layer 'conv_tail'.*conv_head"):
        cs.explain("gradcam", model, chelsea, layer="conv_tail")
    with pytest.raises(ValueError, match="choose one of"):
        cs.explain("reciprocam", model, chelsea, layer="conv_head.bn")  # not a split point


def test_cam_refuses_a_layer_not_followed_by_gap_and_linear(model, chelsea):
    with pytest.raises(ValueError, match="global average pooling"):
        cs.explain("cam", model, chelsea, layer="block14")


@pytest.mark.parametrize("target", [1000, -1, [1, 2, 3]])
def test_class_index_out_of_range_or_wrong_count_is_refused(model, chelsea, target):
    with pytest.raises(ValueError, match="target"):
        cs.explain("gradcam", model, chelsea, target=target)


@pytest.mark.parametrize("images, error, message", [
    (torch.rand(3, 224, 224), ValueError, "unsqueeze"),
    (torch.rand(1, 1, 224, 224), ValueError, "RGB"),
    ((torch.rand(1, 3, 224, 224) * 255).to(torch.uint8), TypeError, "255"),
    (torch.rand(1, 3, 224, 224) * 255, ValueError, r"\[0, 1\]"),
    (torch.full((1, 3, 224, 224), float("nan")), ValueError, "NaN"),
    (torch.full((1, 3, 224, 224), float("inf")), ValueError, "Inf"),
    (torch.zeros(0, 3, 224, 224), ValueError, "empty"),
    (torch.rand(1, 3, 224, 224).numpy(), TypeError, "torch.Tensor"),
])
def test_bad_images_are_refused_with_a_clear_message(model, images, error, message):
    for name in ("gradcam", "scorecam", "reciprocam"):
        with pytest.raises(error, match=message):
            cs.explain(name, model, images)


def test_unknown_reciprocam_kernel_is_refused_naming_the_kernels(model, chelsea):
    with pytest.raises(ValueError, match="gaussian-window"):
        cs.explain("reciprocam", model, chelsea, kernel="box")


@pytest.mark.parametrize("name", ["scorecam", "ablationcam", "reciprocam"])
def test_bad_batch_size_is_refused(name, model, chelsea):
    with pytest.raises(ValueError, match="batch_size"):
        cs.explain(name, model, chelsea, batch_size=0)


def test_unknown_parameter_is_refused(model, chelsea):
    with pytest.raises(ValueError, match="no parameter"):
        cs.explain("gradcam", model, chelsea, batch_size=4)
