"""The one model interface every method of the book relies on.

A :class:`CamModel` is an image classifier written as a flat sequence of named stages,
so that "split the network at layer L" is just slicing the sequence:

    features = model[: i + 1]     # image -> activations A of layer L
    head     = model[i + 1 :]     # activations A -> class scores y

The first stage is always the model's own input normalisation, so every model takes RGB
images in [0, 1] and "masking" an input (multiplying it by 0) means a black pixel for all
models alike.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ..common import check_int


def state_dict_mismatch(expected: dict, given: dict) -> str | None:
    """Why ``given`` does not fit a model whose state dict is ``expected``, in one line; ``None`` if it fits.

    Says how many tensors are missing, unexpected or of another shape, with the first of each.
    """
    missing = [key for key in expected if key not in given]
    unexpected = [key for key in given if key not in expected]
    reshaped = [key for key in expected if key in given and tuple(given[key].shape) != tuple(expected[key].shape)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} tensors missing (first: {missing[0]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected (first: {unexpected[0]})")
    if reshaped:
        key = reshaped[0]
        problems.append(f"{len(reshaped)} of another shape (first: {key}, {tuple(given[key].shape)} in the file, "
                        f"{tuple(expected[key].shape)} in the model)")
    return "; ".join(problems) or None


class Normalize(nn.Module):
    """Affine input normalisation ``(x - mean) / std`` applied inside the model."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    mean: torch.Tensor
    std: torch.Tensor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class GlobalAvgPool(nn.Module):
    """Global average pooling to a (B, K) vector: the ``1/Z sum_ij`` of CAM's eq. (1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(-2, -1))


class CamModel(nn.Sequential):
    """A classifier as named stages, with a default CAM layer and a features/head split.

    Parameters
    ----------
    stages:
        Ordered ``name -> module``; the first stage normalises the [0, 1] input.
    name:
        The name :func:`camsurvey.load_model` knows the model by.
    default_layer:
        The stage whose output the CAM methods explain when no layer is given. It is
        always the output of an activation module (ReLU/ReLU6), never of a BatchNorm.
    categories:
        One name per output class.
    resolution:
        The side in pixels of the square images the model was trained on (EfficientNet-Lite0
        224, Lite1 240, Lite2 260; the scene CNNs 64). It is the size the package makes
        images at for this model by default; ``cs.load_image(photo, size=model.resolution)``
        does the same in your code. The model itself accepts any size of at least 32 px.
    """

    def __init__(self, stages: OrderedDict, *, name: str, default_layer: str, categories: list[str],
                 resolution: int = 224):
        super().__init__(stages)
        if default_layer not in stages:
            raise ValueError(f"default_layer {default_layer!r} is not one of the stages {list(stages)}")
        self.name = name
        self.default_layer = default_layer
        self.categories = list(categories)
        self.resolution = check_int(resolution, "resolution", minimum=32, hint="the side of the square input in pixels")

    @property
    def num_classes(self) -> int:
        return len(self.categories)

    @property
    def layer_names(self) -> list[str]:
        """The stages at which the network can be split (every method accepts these)."""
        return [n for n, _ in self.named_children()][1:]

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def layer(self, name: str | None = None) -> nn.Module:
        """The module whose output is the activation map A of layer ``name``."""
        name = self.default_layer if name is None else name
        modules = dict(self.named_modules())
        if name not in modules or name == "":
            raise ValueError(
                f"unknown layer {name!r} for model {self.name!r}; choose one of {self.layer_names} "
                f"(or any sub-module name listed by model.named_modules())"
            )
        return modules[name]

    def split(self, name: str | None = None) -> tuple[nn.Sequential, nn.Sequential]:
        """Split into ``features`` (input -> A) and ``head`` (A -> scores) at stage ``name``."""
        name = self.default_layer if name is None else name
        names = self.layer_names
        if name not in names:
            raise ValueError(
                f"cannot split model {self.name!r} at layer {name!r}: only its top-level stages are "
                f"split points; choose one of {names}"
            )
        index = names.index(name) + 1  # +1: the normalisation stage comes first
        stages = list(self.named_children())
        features, head = nn.Sequential(OrderedDict(stages[: index + 1])), nn.Sequential(OrderedDict(stages[index + 1 :]))
        # the new containers share the stages; give them the model's mode (a fresh container is
        # in training mode, and a later .train()/.eval() on it would otherwise flip the shared stages)
        features.training = head.training = self.training
        return features, head

    def extra_repr(self) -> str:
        return (f"name={self.name!r}, default_layer={self.default_layer!r}, classes={self.num_classes}, "
                f"resolution={self.resolution}")
