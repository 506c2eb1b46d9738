"""The shared plumbing: hooks always removed, normalisation never NaN, input checks."""

from __future__ import annotations

import pytest
import torch

import camsurvey as cs
from camsurvey.plumbing import capture, check_images, normalize, resolve_target, upsample


def _hook_count(model):
    return sum(len(m._forward_hooks) + len(m._backward_hooks) for m in model.modules())


def test_capture_removes_its_hooks_even_when_the_call_raises(model):
    before = _hook_count(model)
    with pytest.raises(RuntimeError):
        with capture(model.layer()):
            raise RuntimeError("boom")
    assert _hook_count(model) == before
    with pytest.raises(ValueError):
        cs.explain("gradcam", model, cs.load_image("chelsea"), target=5000)
    assert _hook_count(model) == before


def test_capture_records_activations_and_gradients(model):
    with capture(model.layer("conv_head")) as record, torch.enable_grad():
        scores = model(cs.load_image("coffee"))
        scores[0, 967].backward()
    assert record.activations.shape == (1, 1280, 7, 7)
    assert record.gradients.shape == record.activations.shape
    assert record.gradients.abs().sum() > 0


def test_normalize_maps_to_unit_range_and_constant_maps_to_zeros():
    maps = torch.stack([torch.arange(16.0).reshape(4, 4), torch.full((4, 4), 3.0), torch.zeros(4, 4)])
    out = normalize(maps)
    assert out[0].min() == 0 and out[0].max() == 1
    assert torch.equal(out[1], torch.zeros(4, 4)) and torch.equal(out[2], torch.zeros(4, 4))
    assert not torch.isnan(out).any()


def test_upsample_to_input_size():
    assert upsample(torch.rand(2, 7, 7), (224, 224)).shape == (2, 224, 224)
    assert upsample(torch.rand(2, 5, 7, 7), (32, 48)).shape == (2, 5, 32, 48)


@pytest.mark.parametrize(
    "images, error, words",
    [
        ([[0.0]], TypeError, "torch.Tensor"),
        (torch.rand(3, 64, 64), ValueError, "unsqueeze"),
        (torch.rand(1, 1, 64, 64), ValueError, "RGB"),
        (torch.rand(0, 3, 64, 64), ValueError, "empty"),
        (torch.randint(0, 255, (1, 3, 64, 64), dtype=torch.uint8), TypeError, "255"),
        (torch.full((1, 3, 64, 64), float("nan")), ValueError, "NaN"),
        (torch.full((1, 3, 64, 64), 2.0), ValueError, r"\[0, 1\]"),
        (torch.rand(1, 3, 8, 8), ValueError, "too small"),
    ],
)
def test_bad_images_give_clear_errors(images, error, words):
    with pytest.raises(error, match=words):
        check_images(images)


@pytest.mark.parametrize("target, words", [(1000, "out of range"), (-1, "out of range"), ([1, 2, 3], "entries"),
                                           (1.5, "integer"), ("cat", "target")])
def test_bad_targets_give_clear_errors(target, words):
    with pytest.raises((ValueError, TypeError), match=words):
        resolve_target(target, torch.zeros(2, 1000))


def test_target_none_is_top1_and_an_int_applies_to_all():
    scores = torch.tensor([[0.0, 2.0, 1.0], [3.0, 0.0, 1.0]])
    assert resolve_target(None, scores).tolist() == [1, 0]
    assert resolve_target(2, scores).tolist() == [2, 2]
    assert resolve_target([0, 1], scores).tolist() == [0, 1]
