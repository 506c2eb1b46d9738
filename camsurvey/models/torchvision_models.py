"""torchvision classifiers rewritten as :class:`CamModel` stages.

torchvision's own weights download from the internet on first use; camsurvey never does.
ImageNet weights are read from the torch hub cache (where torchvision keeps them once a
user has downloaded them) or from a path the user gives; ``weights=None`` builds the
architecture with seeded random weights, which is all the timing experiments need.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import torch
import torchvision
from torch import nn

from .base import CamModel, GlobalAvgPool, Normalize

IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]

# name -> (builder, default CAM layer)
TORCHVISION_MODELS = {
    "resnet18": ("resnet18", "layer4"),
    "resnet34": ("resnet34", "layer4"),
    "resnet50": ("resnet50", "layer4"),
    "vgg16": ("vgg16", "features_29"),
}


def hub_weights_path(name: str) -> tuple[Path, str]:
    """Where the torch hub cache keeps torchvision's default ImageNet weights for ``name``."""
    url = torchvision.models.get_model_weights(name).DEFAULT.url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url), url


def _read_weights(name: str, weights) -> dict:
    if weights == "imagenet":
        path, url = hub_weights_path(name)
        if not path.is_file():
            raise FileNotFoundError(
                f"ImageNet weights for {name!r} are not on this machine (camsurvey never downloads). "
                f"Put the file {url} at {path} (torchvision saves it there the first time you call "
                f"torchvision.models.{name}(weights='DEFAULT') on a machine with internet), or pass "
                f"weights='/path/to/weights.pth', or weights=None for random weights (fine for timing)."
            )
    else:
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"weights file {str(path)!r} for {name!r} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated or foreign file
        raise ValueError(f"could not read weights file {str(path)!r} for {name!r}: {error}") from None


def torchvision_model(name: str, categories: list[str], weights="imagenet", seed: int = 0) -> CamModel:
    """A torchvision classifier as flat stages; every ReLU made out-of-place so hooks see it."""
    builder, default_layer = TORCHVISION_MODELS[name]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = getattr(torchvision.models, builder)(weights=None)
    if weights is not None:
        try:
            net.load_state_dict(_read_weights(name, weights))
        except RuntimeError as error:
            raise ValueError(f"weights do not fit {name!r}: {str(error).splitlines()[0]}") from None
    for module in net.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
    stages: OrderedDict[str, nn.Module] = OrderedDict(normalize=Normalize(IMAGENET_MEAN, IMAGENET_STD))
    if name.startswith("resnet"):
        for child in ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]:
            stages[child] = getattr(net, child)
        stages["pool"] = GlobalAvgPool()
        stages["fc"] = net.fc
    else:  # vgg: every layer of `features` becomes a stage, so each ReLU is a split point
        for index, child in enumerate(net.features):
            stages[f"features_{index}"] = child
        stages["avgpool"] = net.avgpool
        stages["flatten"] = nn.Flatten(1)
        stages["classifier"] = net.classifier
    return CamModel(stages, name=name, default_layer=default_layer, categories=categories)
