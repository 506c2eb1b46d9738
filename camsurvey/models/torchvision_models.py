"""torchvision classifiers rewritten as :class:`CamModel` stages.

torchvision's own weights download from the internet on first use; camsurvey never does.
ImageNet weights are read from the torch hub cache (where torchvision keeps them once a
user has downloaded them) or from a path the user gives; ``weights=None`` builds the
architecture with seeded random weights, which is all the timing experiments need.

Which of torchvision's ImageNet releases ``weights="imagenet"`` means is fixed per network in
:data:`TORCHVISION_MODELS`: the current default for ResNet-18/34/50 and VGG-16, and for
ResNet-101 ``IMAGENET1K_V1`` (``resnet101-63fe2227.pth``; top-1 77.37% *reported* by torchvision),
the original training recipe. ResNet-101 is the network of the survey's Table I, whose ADCC
scores are the ResNet-101 column of Recipro-CAM's Table 1 (Byun & Lee, CVPRW 2024); the authors'
evaluation notebook (sybyun/ReciproCAM, ``accuracy_check.ipynb``) loads torchvision's
``IMAGENET1K_V1`` weights (there for ResNet-50), so V1 is our reading of their setting; V2
(81.9% reported) comes from a later recipe. A file from the hub cache is
checked against the sha256 prefix in its name, as ``torch.hub`` does; a file you pass as
``weights=PATH`` is loaded strictly (every tensor present, every shape equal) but may hold any
weights of the architecture.
"""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from pathlib import Path

import torch
import torchvision
from torch import nn

from ..common import sha256_of
from .base import CamModel, GlobalAvgPool, Normalize, state_dict_mismatch

IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]

# name -> (builder, default CAM layer, torchvision's weights release that "imagenet" means)
TORCHVISION_MODELS = {
    "resnet18": ("resnet18", "layer4", "DEFAULT"),
    "resnet34": ("resnet34", "layer4", "DEFAULT"),
    "resnet50": ("resnet50", "layer4", "DEFAULT"),
    "resnet101": ("resnet101", "layer4", "IMAGENET1K_V1"),
    "vgg16": ("vgg16", "features_29", "DEFAULT"),
}


def imagenet_release(name: str):
    """torchvision's weights enum member that ``weights="imagenet"`` means for ``name``."""
    builder, _, release = TORCHVISION_MODELS[name]
    return getattr(torchvision.models.get_model_weights(builder), release)


def hub_weights_path(name: str) -> tuple[Path, str]:
    """Where the torch hub cache keeps ``name``'s ImageNet weights file, and where that file comes from."""
    url = imagenet_release(name).url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url), url


def hash_prefix(path: Path) -> str | None:
    """The leading hex digits of the sha256 that torchvision writes into a weights file's name."""
    found = re.search(r"-([a-f0-9]{8,})\.", path.name)
    return found.group(1) if found else None


def where_to_get(name: str) -> str:
    """Which file holds ``name``'s ImageNet weights, where to put it, and the alternatives."""
    path, url = hub_weights_path(name)
    release = imagenet_release(name)
    return (f"{name}'s ImageNet weights are torchvision's {type(release).__name__}.{release.name}, the file "
            f"{path.name} ({url}). Put that file at {path} (torchvision saves it there the first time you call "
            f"torchvision.models.{TORCHVISION_MODELS[name][0]}(weights='{release.name}') on a machine with "
            f"internet), or pass weights='/path/to/{path.name}', or weights=None for random weights (fine for timing)")


def _read_weights(name: str, weights) -> dict:
    if isinstance(weights, str) and weights == "imagenet":
        path, _ = hub_weights_path(name)
        if not path.is_file():
            raise FileNotFoundError(f"ImageNet weights for {name!r} are not on this machine (camsurvey never "
                                    f"downloads). {where_to_get(name)}.")
        expected = hash_prefix(path)
        if expected is not None and not sha256_of(path).startswith(expected):
            raise ValueError(f"{path} does not have the sha256 its name promises (starting {expected}): the file is "
                             f"corrupt or truncated; delete it and put a fresh copy there. {where_to_get(name)}.")
    else:
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"weights file {str(path)!r} for {name!r} does not exist. {where_to_get(name)}.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated or foreign file
        raise ValueError(f"could not read weights file {str(path)!r} for {name!r}: {error}") from None


def torchvision_model(name: str, categories: list[str], weights="imagenet", seed: int = 0) -> CamModel:
    """A torchvision classifier as flat stages; every ReLU made out-of-place so hooks see it."""
    builder, default_layer, _ = TORCHVISION_MODELS[name]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = getattr(torchvision.models, builder)(weights=None)
    if weights is not None:
        state = _read_weights(name, weights)
        mismatch = state_dict_mismatch(net.state_dict(), state)
        if mismatch:
            raise ValueError(f"weights do not fit {name!r}: {mismatch}; is the file another network's?")
        net.load_state_dict(state)
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
