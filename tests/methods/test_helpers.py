"""EVET and SESS (survey Section IV): wrappers around any base method of the registry."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch

import camsurvey as cs
from camsurvey.methods.helpers import (
    TRANSFORMS,
    Transform,
    contrast,
    evet_fusion,
    gaussian_smoothing,
    resize_shorter_side,
    sess_channel_weights,
    sess_kept,
    sess_patch_count,
    sess_pre_filter,
    sess_spatial_average,
    sess_windows,
    window_starts,
)
from camsurvey.plumbing import normalize, upsample

SMALL_SESS = dict(scales=(224, 256), window=224, step=224, pre_filter=0.6)  # 1 + 4 patches, 2 kept


@pytest.fixture(scope="module")
def chelsea():
    return cs.load_image("chelsea")


# --- transformations -------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_transform_then_inverse_returns_the_map(name):
    maps = torch.rand(2, 12, 20, generator=torch.Generator().manual_seed(1))
    transform = TRANSFORMS[name]
    assert torch.equal(transform.inverse(transform.forward(maps)), maps)


def test_transforms_move_the_pixels_they_should():
    image = torch.zeros(1, 3, 4, 6)
    image[..., 0, 0] = 1  # top-left pixel
    assert TRANSFORMS["hflip"].forward(image)[0, 0, 0, 5] == 1
    assert TRANSFORMS["vflip"].forward(image)[0, 0, 3, 0] == 1
    rotated = TRANSFORMS["rot90"].forward(image)
    assert rotated.shape[-2:] == (6, 4) and rotated[0, 0, 5, 0] == 1  # counter-clockwise: top-left -> bottom-left


def test_contrast_changes_the_image_but_not_the_map_grid():
    image = cs.load_image("coffee")
    transform = contrast(0.5)
    changed = transform.forward(image)
    assert changed.shape == image.shape and not torch.allclose(changed, image)
    assert 0 <= changed.min() and changed.max() <= 1
    maps = torch.rand(1, 224, 224)
    assert torch.equal(transform.inverse(maps), maps)
    with pytest.raises(ValueError, match="positive"):
        contrast(0)


def test_evet_fusion_is_the_mean_over_transformations():
    maps = torch.stack([torch.ones(1, 2, 2), torch.zeros(1, 2, 2)])
    assert torch.equal(evet_fusion(maps), torch.full((1, 2, 2), 0.5))


# --- EVET ------------------------------------------------------------------------------------

@pytest.mark.parametrize("base", ["gradcam", "layercam"])
def test_evet_with_only_the_identity_equals_its_base_method(model, chelsea, base):
    expected = cs.explain(base, model, chelsea)
    assert torch.equal(cs.explain("evet", model, chelsea, base=base, transforms=("identity",)), expected)


def test_evet_carries_the_map_back_by_the_inverse_transformation(model, chelsea):
    target = 285  # Egyptian cat
    flipped_back = cs.explain("gradcam", model, chelsea.flip(-1), target=target).flip(-1)
    enhanced = cs.explain("evet", model, chelsea, target=target, transforms=("hflip",))
    assert torch.allclose(enhanced, flipped_back, atol=1e-6)
    assert not torch.allclose(enhanced, cs.explain("gradcam", model, chelsea, target=target), atol=1e-3)


def test_evet_keeps_a_non_square_input_shape_through_rotations(model, chelsea):
    wide = chelsea[..., :, :192]
    saliency = cs.explain("evet", model, wide, transforms=("rot90",))
    assert saliency.shape == (1, 224, 192) and torch.isfinite(saliency).all()


def test_evet_accepts_a_custom_transform(model, chelsea):
    saliency = cs.explain("evet", model, chelsea, transforms=(contrast(1.5),))
    assert saliency.shape == (1, 224, 224) and saliency.max() == 1


def test_evet_is_deterministic(model, chelsea):
    params = dict(base="gradcam++", transforms=("identity", "hflip"))
    first = cs.explain("evet", model, chelsea, **params)
    assert torch.equal(first, cs.explain("evet", model, chelsea, **params))


# --- SESS ------------------------------------------------------------------------------------

def test_sliding_window_covers_the_image_and_ends_at_the_border():
    assert window_starts(224, 224, 224) == [0]
    assert window_starts(480, 224, 224) == [0, 224, 256]
    corners = sess_windows(288, 300, 224, 224)
    assert len(corners) == 4 and (64, 76) in corners
    assert sess_patch_count((224, 256), 224, 224) == 5
    assert sess_patch_count(cs.METHODS["sess"].params["scales"], 224, 224) == 122  # the authors' 12 scales


def test_pre_filter_keeps_the_most_probable_patches():
    probabilities = torch.tensor([0.1, 0.7, 0.3, 0.7, 0.05])
    assert sess_pre_filter(probabilities, 0.5).tolist() == [1, 3, 2]
    assert sess_pre_filter(probabilities, 0.0).tolist() == [1, 3, 2, 0, 4]
    assert sess_kept(1, 0.99) == 1


def test_channel_weights_give_the_best_patch_one():
    weights = sess_channel_weights(torch.tensor([0.2, 0.8, 0.4]))
    assert torch.allclose(weights, torch.tensor([0.25, 1.0, 0.5]))


def test_spatial_average_ignores_maps_without_saliency_at_a_pixel():
    total, count = torch.tensor([[0.8, 0.0, 1.2]]), torch.tensor([[1.0, 0.0, 2.0]])
    assert torch.allclose(sess_spatial_average(total, count), torch.tensor([[0.8, 0.0, 0.6]]))


def test_gaussian_smoothing_keeps_a_constant_map():
    maps = torch.full((1, 30, 40), 0.3)
    assert torch.allclose(gaussian_smoothing(maps), maps)


@pytest.mark.parametrize("base", ["gradcam", "gradcam++"])
def test_sess_with_one_scale_and_one_window_equals_its_base_method(model, chelsea, base):
    expected = cs.explain(base, model, chelsea)
    single = cs.explain("sess", model, chelsea, base=base, scales=(224,), smooth=False)
    assert torch.allclose(single, expected, atol=1e-6)


def test_sess_with_one_window_on_a_larger_image_equals_the_base_map_up_to_resizing(model):
    large = cs.load_image("chelsea", size=256)
    target = 285  # Egyptian cat
    resized = resize_shorter_side(large, 224)
    expected = normalize(upsample(cs.explain("gradcam", model, resized, target=target), (256, 256)))
    single = cs.explain("sess", model, large, target=target, scales=(224,), smooth=False)
    assert torch.allclose(single, expected, atol=1e-5)


def test_sess_is_deterministic_and_independent_of_the_batch_size(model, chelsea):
    first = cs.explain("sess", model, chelsea, batch_size=1, **SMALL_SESS)
    batched = cs.explain("sess", model, chelsea, batch_size=16, **SMALL_SESS)
    assert first.shape == (1, 224, 224) and torch.isfinite(first).all() and first.max() == 1
    assert torch.allclose(first, batched, atol=1e-5)
    assert torch.equal(first, cs.explain("sess", model, chelsea, batch_size=1, **SMALL_SESS))


# --- errors ----------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["evet", "sess"])
def test_unknown_or_helper_base_method_is_a_clear_error(model, chelsea, method):
    with pytest.raises(ValueError, match="unknown base method 'nocam'"):
        cs.explain(method, model, chelsea, base="nocam")
    with pytest.raises(ValueError, match="itself a helper"):
        cs.explain(method, model, chelsea, base="evet")
    with pytest.raises(ValueError, match="has no parameter"):
        cs.explain(method, model, chelsea, base_params={"alpha": 1})
    with pytest.raises(TypeError, match="base_params must be a dict"):
        cs.explain(method, model, chelsea, base_params=[1])


@pytest.mark.parametrize("params, message", [
    (dict(pre_filter=1.0), "pre_filter"),
    (dict(pre_filter=-0.1), "pre_filter"),
    (dict(scales=(160,)), "smaller than the window"),
    (dict(scales=()), "scales"),
    (dict(step=0), "step"),
    (dict(window=224.0), "window"),
    (dict(threshold=1.5), "threshold"),
    (dict(batch_size=0), "batch_size"),
])
def test_sess_parameters_out_of_range_are_clear_errors(model, chelsea, params, message):
    with pytest.raises(ValueError, match=message):
        cs.explain("sess", model, chelsea, **params)


def test_evet_bad_transforms_are_clear_errors(model, chelsea):
    with pytest.raises(ValueError, match="empty"):
        cs.explain("evet", model, chelsea, transforms=())
    with pytest.raises(ValueError, match="unknown transform 'shear'"):
        cs.explain("evet", model, chelsea, transforms=("identity", "shear"))
    with pytest.raises(TypeError, match="list or tuple"):
        cs.explain("evet", model, chelsea, transforms="hflip")
    broken = Transform("crop", lambda images: images, lambda maps: maps[..., :100])
    with pytest.raises(ValueError, match="inverse returned maps of shape"):
        cs.explain("evet", model, chelsea, transforms=(broken,))


# --- cost ------------------------------------------------------------------------------------

@contextmanager
def count_passes(model):
    """Images through the whole model (forward) and through the scores' backward pass."""
    counts = {"forward": 0, "backward": 0}

    def on_backward(grad):
        counts["backward"] += grad.shape[0]

    def on_forward(_module, inputs, output):
        counts["forward"] += inputs[0].shape[0]
        if output.requires_grad:
            output.register_hook(on_backward)

    handle = model.register_forward_hook(on_forward)
    try:
        yield counts
    finally:
        handle.remove()


@pytest.mark.parametrize("method, params", [
    ("evet", dict(base="gradcam")),
    ("evet", dict(base="layercam", transforms=("identity", "vflip"))),
    ("sess", dict(base="gradcam", **SMALL_SESS)),
])
def test_cost_in_passes_matches_the_passes_run(model, chelsea, method, params):
    entry = cs.METHODS[method]
    with count_passes(model) as counts:
        cs.explain(method, model, chelsea, **params)
    expected = entry.count_passes(112, 49, **params)
    assert counts == {"forward": expected["forward"], "backward": expected["backward"]}
    assert expected["head"] == 0


def test_registry_lists_the_helpers_in_section_iv():
    for name in ("evet", "sess"):
        entry = cs.METHODS[name]
        assert entry.family == "helper" and entry.section == "IV" and "base" in entry.params
    default = cs.METHODS["sess"].count_passes(112, 49)
    assert default == {"forward": 1 + 122 + 61, "backward": 61, "head": 0}
