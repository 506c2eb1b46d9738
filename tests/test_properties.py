"""Property-based tests of the public API (hypothesis): every method and every metric, on random
shapes, dtypes, value ranges, targets, layers and parameters, returns a finite result in [0, 1]
of the right shape, or raises a ValueError or TypeError whose message names the argument at
fault; and it never changes the caller's images.

Each example is valid, or has exactly one argument at fault (so the message must name that one);
about half are valid. Kept fast and reproducible: a tiny model, images of at most 40 pixels, a
dozen or so examples per method, ``derandomize=True`` (the same examples on every run), no deadline.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import camsurvey as cs
from camsurvey import metrics
from camsurvey.models.base import CamModel, GlobalAvgPool, Normalize

SETTINGS = settings(max_examples=16, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
CLASSES = 4
# Layers a caller may name; "pool" and "fc" are not spatial feature maps, refused at the first call.
GOOD_LAYERS = [None, "conv2", "conv1", "conv2.0"]
BAD_LAYERS = ["no_such_layer", "conv9", "", "pool", "fc"]
# Small settings of the sampling methods (only the parameters each method has).
SMALL = {"samples": 2, "steps": 3, "scales": [40], "window": 32, "step": 8}
BAD_VALUES = [0, -1, 2.5, True, None, "x", float("nan"), [], [0]]  # (no huge counts: they would only be slow)
VALID = None  # the "fault" of a valid example


def tiny_model(seed: int = 0) -> CamModel:
    torch.manual_seed(seed)
    stages = OrderedDict(
        normalize=Normalize([0.5] * 3, [0.25] * 3),
        conv1=nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.ReLU()),
        conv2=nn.Sequential(nn.Conv2d(5, 6, 3, stride=2, padding=1), nn.ReLU()),
        pool=GlobalAvgPool(),
        fc=nn.Linear(6, CLASSES),
    )
    return CamModel(stages, name="tiny", default_layer="conv2",
                    categories=[f"c{i}" for i in range(CLASSES)]).eval().requires_grad_(False)


MODEL = tiny_model()

# --- inputs: valid ones, and one bad argument at a time ----------------------------------------

IMAGE_FAULTS = ["empty batch", "grey", "four channels", "too small", "uint8", "int64", "bool", "0..255", "negative",
                "nan", "inf", "no batch axis", "five axes"]


@st.composite
def images(draw, fault: str | None = None) -> torch.Tensor:
    """A batch of images in [0, 1] (B, 3, H, W), or one with ``fault`` (one of :data:`IMAGE_FAULTS`)."""
    batch = 0 if fault == "empty batch" else draw(st.sampled_from([1, 2]))
    height, width = (24, 32) if fault == "too small" else draw(st.sampled_from([(32, 32), (40, 32), (32, 40)]))
    channels = {"grey": 1, "four channels": 4}.get(fault, 3)
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    x = torch.rand(batch, channels, height, width, generator=generator, dtype=torch.float64)
    x = {"black": x * 0, "white": x * 0 + 1}.get(draw(st.sampled_from(["random", "random", "black", "white"])), x)
    x = x.to(draw(st.sampled_from([torch.float32, torch.float32, torch.float64, torch.float16])))
    if fault in ("uint8", "int64", "bool"):
        x = (x * 255).to(getattr(torch, fault)) if fault != "bool" else x > 0.5
    elif fault == "0..255":
        x = x * 253 + 2
    elif fault == "negative":
        x = x - 1.5
    elif fault in ("nan", "inf"):
        x = x.clone()
        x.view(-1)[0] = float(fault)
    elif fault == "no batch axis":
        x = x[0]
    elif fault == "five axes":
        x = x.unsqueeze(0)
    return x


def batch_of(x: torch.Tensor) -> int:
    return x.shape[0] if x.ndim == 4 else 1


def good_target(batch: int):
    return st.one_of(st.none(), st.integers(0, CLASSES - 1), st.lists(st.integers(0, CLASSES - 1), min_size=batch,
                                                                      max_size=batch))


def bad_target(batch: int):
    return st.sampled_from([-1, CLASSES, True, 1.0, 10**20, "1", [], [[0]], [0] * (batch + 1)])


def expect(call, must: set[str], may: frozenset[str] | set[str] = frozenset()):
    """Run ``call``. With an argument at fault (``must``) it must raise a ValueError or TypeError whose
    message names it (or one of ``may``, arguments that may or may not be refused); without, it may
    raise only for one of ``may``. Returns the result, or None after an error."""
    try:
        result = call()
    except (ValueError, TypeError) as error:
        message = str(error)
        allowed = must | set(may)
        assert allowed, f"valid input refused: {type(error).__name__}: {message}"
        assert any(word in message for fault in allowed for word in NAMES.get(fault, (fault,))), \
            f"the message does not name {sorted(allowed)}: {type(error).__name__}: {message}"
        return None
    assert not must, f"invalid {sorted(must)} accepted"
    return result


# the words that name each argument in a message (a parameter's own name otherwise)
NAMES = {"images": ("images", "image"), "region": ("box", "mask"), "explainer": ("explainer", "method")}


def unchanged(before: torch.Tensor, after: torch.Tensor) -> bool:
    return (before.dtype == after.dtype and before.shape == after.shape
            and torch.equal(torch.nan_to_num(before.double()), torch.nan_to_num(after.double())))


def assert_unit_maps(saliency: torch.Tensor, x: torch.Tensor) -> None:
    assert saliency.shape == (x.shape[0], *x.shape[-2:]), saliency.shape
    assert saliency.dtype == torch.float32 and bool(torch.isfinite(saliency).all())
    assert saliency.min() >= 0 and saliency.max() <= 1


# --- every method ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(cs.METHODS))
@SETTINGS
@given(data=st.data())
def test_every_method_gives_a_finite_unit_map_of_the_right_shape_or_names_the_bad_argument(name, data):
    defaults = cs.METHODS[name].params
    fault = data.draw(st.sampled_from([VALID] * 5 + ["images", "target", "layer"] + (["param"] * 2 if defaults else [])),
                      label="fault")
    x = data.draw(images(data.draw(st.sampled_from(IMAGE_FAULTS)) if fault == "images" else None), label="images")
    target = data.draw(bad_target(batch_of(x)) if fault == "target" else good_target(batch_of(x)), label="target")
    layer = data.draw(st.sampled_from(BAD_LAYERS if fault == "layer" else GOOD_LAYERS), label="layer")
    params = {key: value for key, value in SMALL.items() if key in defaults}
    must = {fault} if fault in ("images", "target", "layer") else set()
    may = set()
    if fault == "param":  # a value from BAD_VALUES is fine for some parameters (seed=0, sigma=0.0, ...)
        key = data.draw(st.sampled_from(sorted(defaults)), label="parameter")
        params[key] = data.draw(st.sampled_from([v for v in BAD_VALUES if repr(v) != repr(defaults[key])]),
                                label="value")
        may.add(key)
    if layer not in (None, "conv2") and name in ("cam", "ablationcam", "reciprocam"):
        may.add("layer")  # CAM needs the layer before the pooling; the head methods split the model there
    before = x.clone()
    saliency = expect(lambda: cs.explain(name, MODEL, x, target=target, layer=layer, **params), must, may)
    assert unchanged(before, x), "the caller's images were changed"
    if saliency is not None:
        assert_unit_maps(saliency, x)


# --- every metric ----------------------------------------------------------------------------

SALIENCY_FAULTS = ["too big", "negative", "nan", "no batch axis", "other size", "other batch"]


@st.composite
def saliency_maps(draw, batch: int, size, fault: str | None = None) -> torch.Tensor:
    """(B, H, W) maps in [0, 1] for ``batch`` images of ``size``, or with ``fault`` (:data:`SALIENCY_FAULTS`)."""
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    maps = torch.rand(batch + (fault == "other batch"), *size, generator=generator)
    maps = {"zeros": maps * 0, "ones": maps * 0 + 1}.get(draw(st.sampled_from(["random", "random", "zeros", "ones"])),
                                                         maps)
    if fault == "too big":
        return maps * 3 + 1.5
    if fault == "negative":
        return maps - 1.5
    if fault == "nan":
        return maps.masked_fill(maps >= maps.max(), float("nan"))
    if fault == "no batch axis":
        return maps[0]
    if fault == "other size":
        return maps[..., :-1]
    return maps


@st.composite
def regions(draw, batch: int, size, fault: str | None = None):
    """Ground truth for ``batch`` maps of ``size``: boxes or masks, or a bad region when ``fault``."""
    height, width = size
    if fault is None:
        if draw(st.booleans()):
            masks = torch.zeros(batch, height, width, dtype=torch.bool)
            masks[:, : draw(st.integers(1, height)), : draw(st.integers(1, width))] = True
            return masks
        x0, y0 = draw(st.integers(0, width - 1)), draw(st.integers(0, height - 1))
        return [[x0, y0, draw(st.integers(x0 + 1, width)), draw(st.integers(y0 + 1, height))]] * batch
    return draw(st.sampled_from([[[4, 4, 4, 9]] * batch, [[0, 0, width + 5, height]] * batch,
                                 [[0, 0, 4, 4]] * (batch + 1), [[0.5, 0, 4, 4]] * batch, None, "0 0 4 4",
                                 torch.zeros(batch, height, width, dtype=torch.bool), torch.ones(height, width)]))


@SETTINGS
@given(data=st.data())
def test_localisation_metrics_give_unit_scores_or_name_the_bad_argument(data):
    fault = data.draw(st.sampled_from([VALID] * 3 + ["saliency", "region", "threshold"]), label="fault")
    batch, size = data.draw(st.sampled_from([1, 2])), (32, 32)
    saliency = data.draw(saliency_maps(batch, size, data.draw(st.sampled_from(SALIENCY_FAULTS[:-1]))
                                       if fault == "saliency" else None), label="saliency")
    region = data.draw(regions(batch, size, "bad" if fault == "region" else None), label="region")
    threshold = data.draw(st.sampled_from([0.0, 1.5, -0.1, "0.2", float("nan")] if fault == "threshold"
                                          else [0.2, 0.5, 1.0]), label="threshold")
    before = saliency.clone()
    score = expect(lambda: metrics.energy_pointing_game(saliency, region), {fault} - {"threshold", VALID})
    assert unchanged(before, saliency), "the caller's maps were changed"
    if score is not None:
        assert score.per_image.shape == (batch,) and ((score.per_image >= 0) & (score.per_image <= 1)).all()
    if isinstance(region, list) or fault == "threshold":
        boxes = region if fault != "threshold" else [[0, 0, 8, 8]] * batch
        score = expect(lambda: metrics.localization_iou(saliency, boxes, threshold=threshold), {fault} - {VALID})
        if score is not None:
            assert ((score.per_image >= 0) & (score.per_image <= 1)).all() and math.isfinite(score.mean)


FAITHFULNESS = ["average_drop", "increase_in_confidence", "insertion_auc", "deletion_auc", "coherency", "adcc_score"]
CURVE_OPTIONS = {"steps": ([2, 5], [0, -3, 2.5, "4", True]), "batch_size": ([8, 1], [0, "8", 1.5]),
                 "baseline": ([None, 0.0, 1.0, 0.5], [2.0, -1.0, float("nan"), "black"])}


@pytest.mark.parametrize("metric", FAITHFULNESS)
@SETTINGS
@given(data=st.data())
def test_faithfulness_metrics_give_unit_scores_or_name_the_bad_argument(metric, data):
    curve = metric in ("insertion_auc", "deletion_auc")
    ranked = metric in ("coherency", "adcc_score")
    fault = data.draw(st.sampled_from([VALID] * 4 + ["images", "saliency", "target"] + (list(CURVE_OPTIONS) if curve else [])
                                      + (["explainer"] if ranked else [])), label="fault")
    x = data.draw(images(data.draw(st.sampled_from(IMAGE_FAULTS)) if fault == "images" else None), label="images")
    saliency = data.draw(saliency_maps(batch_of(x), tuple(x.shape[-2:]), data.draw(st.sampled_from(SALIENCY_FAULTS))
                                       if fault == "saliency" else None), label="saliency")
    target = data.draw(bad_target(batch_of(x)) if fault == "target" else good_target(batch_of(x)), label="target")
    keywords = {}
    if curve:
        keywords = {option: data.draw(st.sampled_from(choices[fault == option]), label=option)
                    for option, choices in CURVE_OPTIONS.items()}
    arguments: tuple = (MODEL, x, saliency)
    if ranked:
        arguments += (data.draw(st.sampled_from(["no-such-method", 3] if fault == "explainer" else ["gradcam", "eigencam"]),
                                label="explainer"),)
    may = {"saliency"} if fault == "images" else set()  # a bad batch can also make the maps not match
    before = x.clone()
    score = expect(lambda: getattr(metrics, metric)(*arguments, target=target, **keywords), {fault} - {VALID}, may)
    assert unchanged(before, x), "the caller's images were changed"
    if score is not None:
        values = score.per_image
        assert values.shape == (x.shape[0],) and bool(torch.isfinite(values).all())
        assert ((values >= 0) & (values <= 1)).all(), values


@SETTINGS
@given(parts=st.tuples(*[st.one_of(st.floats(0, 1), st.floats(-1, 2),
                                   st.sampled_from([0.0, 1.0, float("nan"), True, "0.5"]))] * 3))
def test_adcc_is_a_unit_harmonic_mean_or_names_the_bad_part(parts):
    names = ("coherency", "complexity", "average_drop")
    faults = {n for n, p in zip(names, parts) if not (isinstance(p, float) and 0 <= p <= 1)}
    value = expect(lambda: metrics.adcc(*parts), faults)  # the message names one of the bad parts
    if value is not None:
        assert 0 <= float(value) <= 1
