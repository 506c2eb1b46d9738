"""How a layer's output becomes the (B, C, h, w) maps A of the CAM formulas, and back.

A convolutional layer already gives (B, C, h, w). A Vision Transformer gives tokens,
(B, N, C) with N = p + h*w (``p`` class or register tokens first, then the patches in row
order); a Swin Transformer gives channels-last maps, (B, h, w, C). A :class:`Layout` turns
such an output into maps (``to_maps``) and, for the methods that re-run the network after the
layer on perturbed maps (Ablation-CAM, Recipro-CAM), maps back into the layer's own shape
(``from_maps``, which takes the original output to copy the class tokens from).

``to_maps`` only selects and permutes elements, so the gradient dy/dA of the maps is the same
selection of the gradient of the layer's output (this is what lets the capture in
:mod:`camsurvey.plumbing` take gradients on the raw output and lay them out afterwards, as
pytorch-grad-cam's ``reshape_transform`` does).

Which layout an output has is decided from its shape and the input image's size
(:func:`detect_layout`): the layout whose spatial grid has the image's aspect ratio and fits
inside it; for tokens, the fewest leading tokens that leave a grid of that aspect ratio.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

LAYOUT_NAMES = ("BCHW", "BHWC", "tokens")
MAX_PREFIX_TOKENS = 16  # class, distillation and register tokens before the patches


@dataclass(frozen=True)
class Layout:
    """A layer output's arrangement: ``to_maps(output) -> (B, C, h, w)``; ``from_maps(maps, output)``
    rebuilds an output of the layer's own shape from (N, C, h, w) maps (``None`` when unknown,
    e.g. for a caller's ``reshape`` function)."""

    name: str
    to_maps: Callable[[torch.Tensor], torch.Tensor]
    from_maps: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor] | None
    needs_output: bool = False  # from_maps copies tokens of the original output (class tokens)


def channels_first() -> Layout:
    return Layout("BCHW", lambda output: output, lambda maps, output: maps)


def channels_last() -> Layout:
    return Layout("BHWC", lambda output: output.permute(0, 3, 1, 2),
                  lambda maps, output: maps.permute(0, 2, 3, 1))


def tokens(prefix: int, height: int, width: int) -> Layout:
    """(B, prefix + h*w, C): ``prefix`` leading tokens (a class token, registers) and the patches row by row."""

    def to_maps(output):
        patches = output[:, prefix:]
        return patches.transpose(1, 2).reshape(output.shape[0], output.shape[2], height, width)

    def from_maps(maps, output):
        patches = maps.flatten(2).transpose(1, 2)
        if prefix == 0:
            return patches
        assert output is not None  # needs_output: the caller passes the layer's own output
        return torch.cat([output[:, :prefix].expand(len(maps), -1, -1).to(patches), patches], dim=1)

    return Layout(f"tokens(prefix={prefix}, grid={height}x{width})", to_maps, from_maps, needs_output=prefix > 0)


def user_reshape(function: Callable) -> Layout:
    """A caller's ``reshape`` function (as pytorch-grad-cam's ``reshape_transform``): forward only."""
    return Layout(f"reshape={getattr(function, '__name__', 'function')}", function, None)


def grid_fits(height: int, width: int, image_size) -> bool:
    """A (h, w) grid could be a feature map of an image of ``image_size``: inside it, with the same
    aspect ratio up to a factor 2 (strides round differently along the two axes)."""
    image_height, image_width = image_size
    if not (1 <= height <= image_height and 1 <= width <= image_width):
        return False
    return abs(math.log((image_height / height) / (image_width / width))) <= math.log(2)


def token_grid(count: int, image_size) -> tuple[int, int] | None:
    """(h, w) with h*w == ``count`` and the image's aspect ratio, or None."""
    image_height, image_width = image_size
    height = max(1, round(math.sqrt(count * image_height / image_width)))
    for h in (height, height - 1, height + 1):
        if h >= 1 and count % h == 0 and grid_fits(h, count // h, image_size):
            return h, count // h
    return None


def token_layout(shape, image_size) -> Layout | None:
    """The tokens layout of a (B, N, C) output: the fewest leading tokens leaving a fitting grid."""
    count = shape[1]
    for prefix in range(min(MAX_PREFIX_TOKENS, count - 1) + 1):
        grid = token_grid(count - prefix, image_size)
        if grid is not None:
            return tokens(prefix, *grid)
    return None


def describe_shape(output) -> str:
    return f"a tensor of shape {tuple(output.shape)}" if isinstance(output, torch.Tensor) else type(output).__name__


def detect_layout(output, image_size, reshape=None) -> Layout:
    """The :class:`Layout` of a layer ``output`` for an input of ``image_size`` (H, W).

    ``reshape``: ``None`` to decide from the shape (channels-first when its grid fits the
    image, else channels-last; tokens for 3-D outputs), one of :data:`LAYOUT_NAMES`, or a
    function returning (B, C, h, w) maps. A shape that fits no layout raises a ValueError that
    says what the output is and what to pass.
    """
    if not isinstance(output, torch.Tensor):
        raise ValueError(f"the layer returns {describe_shape(output)}, not a tensor; choose a layer whose output "
                         "is a feature map")
    if callable(reshape):
        maps = reshape(output)
        if not isinstance(maps, torch.Tensor) or maps.ndim != 4 or maps.shape[0] != output.shape[0]:
            raise ValueError(f"reshape turned the layer's {describe_shape(output)} into {describe_shape(maps)}; "
                             f"it must return maps of shape (B, C, h, w) with B = {output.shape[0]}")
        return user_reshape(reshape)
    if reshape is not None and reshape not in LAYOUT_NAMES:
        raise ValueError(f"reshape must be None (detect), one of {LAYOUT_NAMES} or a function returning "
                         f"(B, C, h, w) maps, got {reshape!r}")
    shape = tuple(output.shape)
    wanted = "a map (B, C, h, w), (B, h, w, C) or tokens (B, N, C)"
    if output.ndim == 4 and reshape in (None, "BCHW") and (grid_fits(shape[2], shape[3], image_size) or reshape):
        return channels_first()
    if output.ndim == 4 and reshape in (None, "BHWC") and (grid_fits(shape[1], shape[2], image_size) or reshape):
        return channels_last()
    if output.ndim == 4 and reshape is None:
        return channels_first()  # neither grid fits the image (e.g. a crop): read it as PyTorch's default
    if output.ndim == 3 and reshape in (None, "tokens"):
        layout = token_layout(shape, image_size)
        if layout is not None:
            return layout
        raise ValueError(f"the layer's output {shape} looks like tokens (B, N, C), but no number of leading tokens "
                         f"leaves a grid of patches with the image's {image_size[0]}x{image_size[1]} aspect ratio; "
                         "pass reshape=FUNCTION returning (B, C, h, w) maps")
    asked = f" as {reshape!r}" if reshape else ""
    raise ValueError(f"the layer's output is {describe_shape(output)}, which cannot be read{asked} as {wanted}")
