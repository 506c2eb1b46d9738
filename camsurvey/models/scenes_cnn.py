"""The small CNNs trained on the scenario dataset (:mod:`camsurvey.datasets.scenes`).

Six convolution blocks (convolution, BatchNorm, ReLU), then global average pooling and
one linear layer, so CAM (eq. 1) applies exactly at the last block, whose 8 x 8 output
(for 64 x 64 images) is the default CAM layer. Two trained copies ship in ``data/``:

* ``scenes_cnn``: trained on single-object scenes (large and small objects);
* ``scenes_cnn_cue``: trained on the same scenes with a spurious cue, a small mark in the
  top-left corner drawn on every training image of class ``disc`` and on no other
  (survey Section VI.A, bias identification).

``load_model("scenes_cnn")`` loads the committed file after checking its sha256 (recorded
in the JSON log next to it); ``weights=PATH`` loads another state dict (e.g. one written by
``camsurvey train``); ``weights=None`` gives seeded random weights.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from ..common import sha256_of
from ..datasets.scenes import CLASSES, REFERENCE_SIZE
from ..files import DATA_DIR
from .base import CamModel, GlobalAvgPool, Normalize

# block: (in channels, out channels, stride); 64 px -> 32 -> 32 -> 16 -> 16 -> 8 -> 8
BLOCKS = [(3, 24, 2), (24, 32, 1), (32, 48, 2), (48, 64, 1), (64, 96, 2), (96, 128, 1)]
SCENE_MODELS = ("scenes_cnn", "scenes_cnn_cue")
# the scene statistics are close to 0.5 +- 0.25 per channel
SCENE_MEAN, SCENE_STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def conv_bn_relu(cin: int, cout: int, stride: int) -> nn.Sequential:
    """A 3 x 3 convolution, BatchNorm and ReLU as separate, hookable modules."""
    return nn.Sequential(OrderedDict(
        conv=nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        bn=nn.BatchNorm2d(cout),
        relu=nn.ReLU(),
    ))


def scenes_cnn(name: str = "scenes_cnn", categories=CLASSES) -> CamModel:
    """The architecture, with fresh (PyTorch default) weights; about 220k parameters."""
    stages: OrderedDict[str, nn.Module] = OrderedDict(normalize=Normalize(SCENE_MEAN, SCENE_STD))
    for index, (cin, cout, stride) in enumerate(BLOCKS, start=1):
        stages[f"block{index}"] = conv_bn_relu(cin, cout, stride)
    stages["pool"] = GlobalAvgPool()
    stages["fc"] = nn.Linear(BLOCKS[-1][1], len(categories))
    return CamModel(stages, name=name, default_layer=f"block{len(BLOCKS)}", categories=list(categories),
                    resolution=REFERENCE_SIZE)


def committed_paths(name: str) -> tuple[Path, Path]:
    """``(weights .pt, training log .json)`` of a committed scene model in ``data/``."""
    if name not in SCENE_MODELS:
        raise ValueError(f"unknown scene model {name!r}; choose one of {SCENE_MODELS}")
    return DATA_DIR / f"{name}.pt", DATA_DIR / f"{name}.json"


def training_log(name: str) -> dict:
    """The JSON log written when the committed weights of ``name`` were trained."""
    _, log_path = committed_paths(name)
    if not log_path.is_file():
        raise FileNotFoundError(f"the training log {log_path} is missing; regenerate it with "
                                f"`camsurvey train --model {name} --update-data`")
    with open(log_path) as handle:
        return json.load(handle)


def load_state(model: CamModel, path: Path, expected_sha256: str | None = None) -> CamModel:
    """Load a state dict into ``model`` (weights_only), checking the checksum when one is given."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {str(path)!r} does not exist")
    if expected_sha256 is not None and sha256_of(path) != expected_sha256:
        raise ValueError(
            f"{path} does not have the sha256 recorded in its training log ({expected_sha256}): the file is "
            f"corrupt or was retrained without updating the log; restore it with git or retrain with "
            f"`camsurvey train --model {model.name} --update-data`"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as error:
        raise ValueError(f"could not load scene-model weights from {str(path)!r}: {error}") from None
    return model


def load_scene_model(name: str, weights="imagenet") -> CamModel:
    """``weights``: ``"imagenet"``/``"default"`` (the committed file), a path, or ``None`` (random)."""
    model = scenes_cnn(name)
    if weights is None:
        return model
    if weights in ("imagenet", "default"):
        weights_path, _ = committed_paths(name)
        return load_state(model, weights_path, training_log(name)["sha256"])
    return load_state(model, Path(weights))


def _register() -> None:
    from . import register_model

    for model_name in SCENE_MODELS:
        register_model(model_name, lambda weights="imagenet", _name=model_name: load_scene_model(_name, weights))


_register()
