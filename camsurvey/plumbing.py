"""What every CAM method shares, written once.

Checking inputs, choosing the target class (an index, or a callable on the model's output:
:class:`TargetModel`), capturing a layer's activations A and the gradients dy^c/dA (with hooks
that are always removed, also when the call raises; a copy of the output, so in-place
operations after the layer change nothing; laid out as (B, C, h, w) maps whatever the layer's
own layout, :mod:`camsurvey.models.layouts`), refusing a layer that is not a spatial map or
runs twice (:func:`check_layer`, with the list of layers that work), the network after the
layer for each image (:func:`image_heads`), upsampling a map to the input's size (the ``up(.)``
of eqs. 4 and 6) and normalising each map to [0, 1] (``norm(.)``), where a constant map
becomes zeros, never NaN.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .common import CONSTANT_RTOL, check_class_indices  # CONSTANT_RTOL: shared with the ONNX runtime
from .models.base import CamModel
from .models.layouts import Layout, detect_layout
from .models.wrap import WrappedModel, check_scores, closest_first, equivalent_layer, listing, probe, valid_layers


def check_images(images: torch.Tensor, model: CamModel | WrappedModel | None = None) -> torch.Tensor:
    """Return ``images`` as a float (B, 3, H, W) tensor in [0, 1] on the model's device.

    Raises a :class:`ValueError` or :class:`TypeError` that says what to change.
    """
    if not isinstance(images, torch.Tensor):
        raise TypeError(
            f"images must be a torch.Tensor of shape (B, 3, H, W) with values in [0, 1], "
            f"got {type(images).__name__}; use camsurvey.load_image(...) to make one"
        )
    if images.layout != torch.strided or images.is_meta:
        raise TypeError(f"images must be an ordinary dense tensor, got a {'meta' if images.is_meta else images.layout} "
                        "tensor; use images.to_dense() (or a tensor with real values on the CPU or GPU)")
    if images.ndim == 3:
        raise ValueError(
            f"images must have shape (B, 3, H, W), got {tuple(images.shape)}; "
            "add the batch dimension with images.unsqueeze(0)"
        )
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must have shape (B, 3, H, W) (RGB), got {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise ValueError("images is an empty batch (B = 0); pass at least one image")
    if not images.is_floating_point():
        raise TypeError(
            f"images must be floating point in [0, 1], got dtype {images.dtype}; "
            "for 8-bit pixels use images.float() / 255"
        )
    if not torch.isfinite(images).all():
        raise ValueError("images contain NaN or Inf values; replace them before explaining")
    low, high = images.min().item(), images.max().item()
    if low < 0 or high > 1:
        raise ValueError(
            f"images must lie in [0, 1] (the model normalises them itself), got values in "
            f"[{low:.3g}, {high:.3g}]; for 0..255 pixels divide by 255, and do not pre-normalise"
        )
    if min(images.shape[-2:]) < 32:
        raise ValueError(f"images of {tuple(images.shape[-2:])} pixels are too small; use at least 32 x 32")
    images = images.detach().float()  # the caller's tensor never joins a graph (no .grad is filled)
    if images.is_inference():
        with torch.inference_mode(False):
            images = images.clone()
    if model is not None:
        images = images.to(model.device)
    return images


def resolve_target(target, scores: torch.Tensor, batch: int | None = None) -> torch.Tensor:
    """Class index per image: ``None`` means each image's top-1; an int is used for all."""
    check_scores(scores, batch)
    batch, classes = scores.shape
    if target is None:
        return scores.argmax(dim=1)
    if isinstance(target, bool) or not isinstance(target, (int, list, tuple, torch.Tensor)):
        raise TypeError(f"target must be None, an integer class index or one index per image, got {type(target).__name__}")
    check_class_indices(target, classes)
    index = torch.as_tensor(target, device=scores.device)
    if index.is_floating_point():
        raise TypeError("target must be an integer class index, not a float")
    index = index.long().reshape(-1)
    if index.numel() == 1:
        index = index.expand(batch)
    if index.numel() != batch:
        raise ValueError(f"target has {index.numel()} entries for a batch of {batch} images; give one or {batch}")
    if (index < 0).any() or (index >= classes).any():
        raise ValueError(f"target class index out of range: the model has classes 0..{classes - 1}, got {index.tolist()}")
    return index.clone()


def class_scores(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """y^c for each image: the pre-softmax score of its target class."""
    return scores.gather(1, target.view(-1, 1)).squeeze(1)


# --- the layer: capture, layout, checks -----------------------------------------------------

class LayerError(ValueError):
    """Raised inside a pass by :func:`capture`: the layer ran twice, or gave no tensor (the short reason)."""


class UnusableLayerError(ValueError):
    """The chosen layer cannot be explained (not a feature map, run twice, unused): says why and lists the valid ones."""


@dataclass
class Capture:
    """The output of one layer (a copy, as a leaf of the autograd graph) and its gradient, filled in by
    :func:`capture`; ``calls`` counts how often the layer ran."""

    activations: torch.Tensor | None = None
    gradients: torch.Tensor | None = None
    calls: int = 0
    _handles: list = field(default_factory=list)


@contextmanager
def capture(module: nn.Module, gradients: bool = True):
    """Record ``module``'s output (and, on backward, its gradient) in a :class:`Capture`.

    What is recorded is a *copy* of the output, so in-place operations after the layer
    (``nn.ReLU(inplace=True)``) cannot change it. With ``gradients`` (and autograd on), the
    copy is a leaf of the graph and the network continues from a clone of it: a backward pass
    runs through the layers after it only, and leaves the caller's input and parameters
    without ``.grad``. A layer that runs a second time in the same pass (a module reused, as
    torchvision's ResNet reuses each block's ``relu``) raises a :class:`LayerError` there:
    which call would the map explain? The hooks are removed on exit, whatever happens.
    """
    record = Capture()

    def keep_gradient(grad):
        record.gradients = grad

    def forward_hook(_module, _inputs, output):
        record.calls += 1
        if record.calls > 1:
            raise LayerError("runs more than once in one forward pass")
        if not isinstance(output, torch.Tensor):
            raise LayerError(f"returns {type(output).__name__}, not a tensor")
        kept = output.detach().clone()
        record.activations = kept
        if gradients and torch.is_grad_enabled():
            kept.requires_grad_(True)
            kept.register_hook(keep_gradient)
            return kept.clone()  # the rest of the network may change this one in place
        return None

    record._handles.append(module.register_forward_hook(forward_hook))
    try:
        yield record
    finally:
        for handle in record._handles:
            handle.remove()
        record._handles.clear()


def model_layers(model) -> nn.Module:
    """The module whose sub-modules are the model's layers (by the names ``layer=`` takes)."""
    inner = getattr(model, "model", model)  # a TargetModel reads through to the model
    return inner.module if isinstance(inner, WrappedModel) else inner


def layer_display_name(model, layer) -> str:
    inner = getattr(model, "model", model)
    return str(layer if layer is not None else inner.default_layer)


def layer_error(model, images: torch.Tensor, layer, reason: str) -> UnusableLayerError:
    """An :class:`UnusableLayerError` for ``layer`` that says ``reason`` and lists the layers that work,
    the closest names first (one probe pass over the first image; only on this error path)."""
    root = model_layers(model)
    inner = getattr(model, "model", model)
    name = layer_display_name(model, layer)
    records = probe(inner, root, images[:1], reshape=getattr(inner, "reshape", None))
    valid = valid_layers(records)
    if isinstance(inner, CamModel):  # its split points, which every method accepts, in the network's order
        valid = [n for n in inner.layer_names if n in valid]
        listed, more = listing(valid), " (or a sub-module of one of them, by its name in model.named_modules())"
    else:
        listed, more = listing(closest_first(name, valid[::-1])), " (the closest names first, then the deepest)"
    hint = ""
    seen = records.get(name)
    if seen is not None and seen.calls > 1:
        equivalent = equivalent_layer(records, name)
        parent = name.rpartition(".")[0]
        hint = (f" (the module is reused: {seen.calls} calls); its last call gives the output of {equivalent!r}, "
                f"so use layer={equivalent!r}" if equivalent else
                f" (the module is reused: {seen.calls} calls); choose a module that runs once"
                + (f", such as its parent {parent!r}" if parent else ""))
        reason = "runs more than once in one forward pass"
    return UnusableLayerError(f"layer {name!r} {reason}{hint}; the layers whose output is a spatial feature map are "
                              f"{listed}{more}")


def layout_of(model, output: torch.Tensor, images: torch.Tensor) -> Layout:
    """How the layer's ``output`` reads as (B, C, h, w) maps (:mod:`camsurvey.models.layouts`)."""
    inner = getattr(model, "model", model)
    if isinstance(inner, WrappedModel):
        return inner.layout(output, images.shape[-2:])
    return detect_layout(output, images.shape[-2:])


@contextmanager
def explained_layer(model, images: torch.Tensor, layer):
    """Turn a :class:`LayerError` raised inside a pass into an :class:`UnusableLayerError` that names the
    layer and lists the valid ones."""
    try:
        yield
    except LayerError as error:
        raise layer_error(model, images, layer, str(error)) from None


def captured_layout(model, images, record: Capture) -> Layout:
    """How ``record``'s activations read as (B, C, h, w) maps; a :class:`LayerError` if they do not."""
    if record.activations is None:
        raise LayerError("is not run by the model's forward pass")
    try:
        return layout_of(model, record.activations, images)
    except ValueError as error:
        raise LayerError(f"is not a spatial feature map ({error})") from None


def forward_and_backward(model: CamModel, images: torch.Tensor, layer: str | None, target) -> tuple:
    """One forward pass and one backward pass of y^c: returns (A, dy^c/dA, scores, target).

    The gradient is taken with respect to the layer's output only (``torch.autograd.grad``),
    so nothing accumulates in any ``.grad``.
    """
    with explained_layer(model, images, layer), torch.enable_grad():
        with capture(model.layer(layer)) as record:
            scores = model(images)
        layout = captured_layout(model, images, record)
        target = resolve_target(target, scores, len(images))
        assert record.activations is not None
        gradient, = torch.autograd.grad(class_scores(scores, target).sum(), record.activations, allow_unused=True)
        if gradient is None:
            raise LayerError("does not influence the class score (its output is not used)")
    return layout.to_maps(record.activations.detach()), layout.to_maps(gradient), scores.detach(), target


def forward_activations(model: CamModel, images: torch.Tensor, layer: str | None) -> tuple:
    """One forward pass without gradients: returns (A, scores)."""
    with explained_layer(model, images, layer), torch.no_grad():
        with capture(model.layer(layer), gradients=False) as record:
            scores = model(images)
        layout = captured_layout(model, images, record)
    assert record.activations is not None
    return layout.to_maps(record.activations), scores


CHECKED_LAYERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # module -> {(layer, H, W, reshape)}


def check_layer(model, layer, images: torch.Tensor) -> None:
    """Refuse, before any method runs, a layer that is not a spatial feature map or that runs more
    than once per forward pass (with the list of the layers that work).

    One forward pass of the first image, once per model, layer and image size (remembered).
    """
    inner = getattr(model, "model", model)
    key = (layer, *images.shape[-2:], repr(getattr(inner, "reshape", None)))
    seen = CHECKED_LAYERS.setdefault(model_layers(model), set())  # the caller's module: kept while it lives
    if key not in seen:
        forward_activations(model, images[:1], layer)
        seen.add(key)


def image_heads(model, layer, images: torch.Tensor) -> list:
    """For each image b, ``head_b(maps)``: the network after ``layer`` applied to (N, C, h, w) maps of image b.

    A camsurvey model splits into stages (one head for all images, :meth:`CamModel.split`); a
    wrapped module's head may also need what the image computes before the layer
    (:meth:`camsurvey.models.wrap.WrappedModel.image_heads`).
    """
    if hasattr(model, "image_heads"):
        return model.image_heads(layer, images)
    _, head = model.split(layer)
    return [head] * len(images)


# --- targets beyond a class index ---------------------------------------------------------------

class TargetModel:
    """``model`` read through a target callable: the score explained is ``target(output)``.

    Every method of the registry explains "class c of a (B, K) output", so the callable's
    value becomes class 0 of a (B, 2) output ``[target(output), 0]``: gradient methods
    differentiate ``target(output)``, Score-CAM and Ablation-CAM score it. The methods that
    turn scores into probabilities with a softmax (Recipro-CAM, SESS's pre-filter) therefore
    read the target as a binary logit, ``sigmoid(target(output))`` (our reading: a callable has
    no classes to normalise over).
    """

    def __init__(self, model, function: Callable):
        self.model, self.function = model, function

    def scores(self, output, batch: int) -> torch.Tensor:
        value = self.function(output)
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"the target callable must return a tensor of one score per image, got "
                            f"{type(value).__name__}")
        if value.ndim == 2 and value.shape[1] == 1:
            value = value[:, 0]
        if value.shape != (batch,) or not value.is_floating_point():
            raise ValueError(f"the target callable returned {tuple(value.shape)} ({value.dtype}) for a batch of "
                             f"{batch}; it must return one float score per image, shape ({batch},), e.g. "
                             "lambda scores: scores[:, 3] - scores[:, 5]")
        return torch.stack([value, torch.zeros_like(value)], dim=1)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.scores(self.model(images), len(images))

    def layer(self, name=None) -> nn.Module:
        return self.model.layer(name)

    def split(self, name=None):
        features, head = self.model.split(name)
        return features, TargetHead(head, self)

    def image_heads(self, name, images: torch.Tensor) -> list:
        return [TargetHead(head, self) for head in image_heads(self.model, name, images)]

    def __getattr__(self, name: str):  # device, name, default_layer, categories: the model's
        return getattr(self.__dict__["model"], name)


class TargetHead(nn.Module):
    """A head followed by the target callable (for :class:`TargetModel`)."""

    def __init__(self, head, target: TargetModel):
        super().__init__()
        self.head, self.target = [head], target

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        return self.target.scores(self.head[0](maps), len(maps))

    def __iter__(self):
        head = self.head[0]
        return iter([*(head if isinstance(head, Iterable) else [head]), TargetStage()])


class TargetStage(nn.Module):
    """Stands for the target callable in a head's list of stages."""


def upsample(maps: torch.Tensor, size) -> torch.Tensor:
    """``up(.)``: bilinear resizing of (B, h, w) or (B, K, h, w) maps to ``size`` = (H, W)."""
    squeeze = maps.ndim == 3
    maps = maps.unsqueeze(1) if squeeze else maps
    if tuple(maps.shape[-2:]) != tuple(size):
        maps = F.interpolate(maps, size=tuple(size), mode="bilinear", align_corners=False)
    return maps.squeeze(1) if squeeze else maps


def is_constant(maps: torch.Tensor, rtol: float = CONSTANT_RTOL) -> torch.Tensor:
    """True where a (..., h, w) map is the same value everywhere, up to float rounding.

    The tolerance is relative (``max - min <= rtol * max |map|``), so the verdict does not
    depend on the map's scale; an all-zero map is constant.
    """
    spread = maps.amax(dim=(-2, -1)) - maps.amin(dim=(-2, -1))
    return spread <= rtol * maps.abs().amax(dim=(-2, -1))


def normalize(maps: torch.Tensor) -> torch.Tensor:
    """``norm(.)``: min-max scale each map over its last two axes into [0, 1].

    A constant map (:func:`is_constant`) has no defined scaling; it becomes all zeros (never NaN).
    """
    low = maps.amin(dim=(-2, -1), keepdim=True)
    span = maps.amax(dim=(-2, -1), keepdim=True) - low
    scaled = (maps - low) / torch.where(span > 0, span, torch.ones_like(span))
    return torch.where(is_constant(maps)[..., None, None], torch.zeros_like(maps), scaled)


def finish(maps: torch.Tensor, size) -> torch.Tensor:
    """``norm(up(L))``: a method's raw (B, h, w) maps as (B, H, W) maps in [0, 1] at the input's ``size``.

    Every method's map ends here, once. Constancy is decided on the raw map, *before*
    upsampling: bilinear upsampling of a constant map is not exactly constant in float32, and
    min-max scaling would blow its rounding up into a pattern. A constant map becomes zeros.
    """
    maps = torch.nan_to_num(maps.detach().float(), nan=0.0, posinf=0.0, neginf=0.0)
    constant = is_constant(maps)
    finished = normalize(upsample(maps, size))
    return torch.where(constant[..., None, None], torch.zeros_like(finished), finished)
