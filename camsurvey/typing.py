"""The types of the public API's arguments, named once (annotations only; importing this costs nothing)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias, Union

if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL import Image
    from torch import nn

PathLike: TypeAlias = Union[str, "os.PathLike[str]"]
Device: TypeAlias = Union[str, "torch.device", None]
# the class each image is explained for: its top-1 (None), one index for all, one per image, or a
# function of the model's output giving one score per image (e.g. a logit difference)
Target: TypeAlias = Union[int, Sequence[int], "torch.Tensor", Callable[["torch.Tensor"], "torch.Tensor"], None]
# a class index for all images, one per image, or None for each image's top-1 (the metrics' targets)
ClassTarget: TypeAlias = Union[int, Sequence[int], "torch.Tensor", None]
# the class index of an ONNX export's maps: one for all, one per image, or None for the top-1
IndexTarget: TypeAlias = int | Sequence[int] | None
# the layer explained: the model's default (None), a dotted name, the module itself, or several
SingleLayer: TypeAlias = Union[str, "nn.Module", None]
Layer: TypeAlias = SingleLayer | Sequence[Union[str, "nn.Module"]]
# an image: a bundled photo's name, a file, or pixels already in memory
ImageLike: TypeAlias = Union[PathLike, "Image.Image", "np.ndarray", "torch.Tensor"]
Box: TypeAlias = Sequence[int]  # (x0, y0, x1, y1), x1 and y1 exclusive
Boxes: TypeAlias = Union[Sequence[Box], "torch.Tensor", "np.ndarray"]
# the ground truth of the pointing game: one box per image, or exact (B, H, W) object masks
Region: TypeAlias = Union[Boxes, "torch.Tensor"]
# what re-explains an image for Coherency: a method's name or a function (images, target) -> saliency
Explainer: TypeAlias = str | Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]
# what a plain module expects of its input: "imagenet" (ImageNet's mean and std), (mean, std), or
# None when the module takes RGB in [0, 1] itself
Normalization: TypeAlias = str | tuple[Sequence[float], Sequence[float]] | None
# a token layer's layout: a layout's name, a function (output, image size) -> (B, C, h, w), or None to detect it
Reshape: TypeAlias = str | Callable[..., "torch.Tensor"] | None
# numpy or a nested list, wherever torch.as_tensor would take it
ArrayLike: TypeAlias = Any

__all__ = ["ArrayLike", "Box", "Boxes", "ClassTarget", "Device", "Explainer", "ImageLike", "IndexTarget", "Layer", "Normalization", "PathLike", "Region",
           "Reshape", "SingleLayer", "Target"]
