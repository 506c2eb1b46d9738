"""What every CAM method shares, written once.

Checking inputs, choosing the target class, capturing a layer's activations A and the
gradients dy^c/dA (with hooks that are always removed, also when the call raises),
upsampling a map to the input's size (the ``up(.)`` of eqs. 4 and 6) and normalising each
map to [0, 1] (``norm(.)``), where a constant map becomes zeros, never NaN.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .common import CONSTANT_RTOL, check_class_indices  # CONSTANT_RTOL: shared with the ONNX runtime
from .models.base import CamModel


def check_images(images, model: CamModel | None = None) -> torch.Tensor:
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
    images = images.float()
    if model is not None:
        images = images.to(model.device)
    return images


def resolve_target(target, scores: torch.Tensor) -> torch.Tensor:
    """Class index per image: ``None`` means each image's top-1; an int is used for all."""
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


@dataclass
class Capture:
    """Activations A and gradients dy/dA of one layer, filled in by :func:`capture`."""

    activations: torch.Tensor | None = None
    gradients: torch.Tensor | None = None
    _handles: list = field(default_factory=list)


@contextmanager
def capture(module: nn.Module, gradients: bool = True):
    """Record ``module``'s output (and, on backward, its gradient) in a :class:`Capture`.

    The output is made a leaf of the autograd graph when nothing upstream needs gradients,
    so a backward pass only runs through the head. The hooks are removed on exit, whatever
    happens inside the ``with`` block.
    """
    record = Capture()

    def keep_gradient(grad):
        record.gradients = grad

    def forward_hook(_module, _inputs, output):
        if not isinstance(output, torch.Tensor):
            raise TypeError(f"the chosen layer returns {type(output).__name__}, not a tensor; choose another layer")
        if gradients and torch.is_grad_enabled():
            if not output.requires_grad:
                output = output.detach().requires_grad_(True)
            output.register_hook(keep_gradient)
        record.activations = output
        return output

    record._handles.append(module.register_forward_hook(forward_hook))
    try:
        yield record
    finally:
        for handle in record._handles:
            handle.remove()
        record._handles.clear()


def forward_and_backward(model: CamModel, images: torch.Tensor, layer: str | None, target) -> tuple:
    """One forward pass and one backward pass of y^c: returns (A, dy^c/dA, scores, target)."""
    with capture(model.layer(layer)) as record, torch.enable_grad():
        scores = model(images)
        target = resolve_target(target, scores)
        class_scores(scores, target).sum().backward()
    return record.activations.detach(), record.gradients.detach(), scores.detach(), target


def forward_activations(model: CamModel, images: torch.Tensor, layer: str | None) -> tuple:
    """One forward pass without gradients: returns (A, scores)."""
    with capture(model.layer(layer), gradients=False) as record, torch.no_grad():
        scores = model(images)
    return record.activations, scores


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
