"""Activation-based CAMs (survey Section II.A): no gradients, no extra passes.

CAM reads its channel weights off the linear layer that follows global average pooling;
Eigen-CAM needs no weights at all and projects the activations on their first principal
component.
"""

from __future__ import annotations

import torch
from torch import nn

from ..models.base import CamModel, GlobalAvgPool
from ..plumbing import forward_activations, resolve_target
from .registry import register


def weighted_sum(weights: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
    """``sum_n w_n A^n``: (B, K) weights times (B, K, h, w) activations, summed over channels."""
    return torch.einsum("bk,bkhw->bhw", weights, activations)


def cam_map(fc_weights: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
    """CAM (eq. 1): ``M_c = sum_n w_n^c A^n`` with ``w^c`` the linear layer's row for class c."""
    return weighted_sum(fc_weights, activations)


def gap_linear_head(model: CamModel, layer: str | None) -> nn.Linear:
    """The linear layer of a head that is exactly global average pooling then one linear layer."""
    _, head = model.split(layer)
    parts = [m for m in head if not isinstance(m, (nn.Flatten, nn.Dropout, nn.Identity))]
    pools = (GlobalAvgPool, nn.AdaptiveAvgPool2d)
    if len(parts) != 2 or not isinstance(parts[0], pools) or not isinstance(parts[1], nn.Linear):
        raise ValueError(
            f"CAM needs the layer to be followed by global average pooling and one linear layer; "
            f"after {layer or model.default_layer!r} model {model.name!r} has "
            f"{[type(m).__name__ for m in head]}. Use 'gradcam', which generalises CAM to any head."
        )
    if isinstance(parts[0], nn.AdaptiveAvgPool2d) and parts[0].output_size not in (1, (1, 1)):
        raise ValueError("CAM needs pooling to a single value per channel (global average pooling)")
    return parts[1]


@register("cam", family="activation-based", section="II.A", equation="eq. 1", reference="zhou2016learning",
          cost=lambda shape: {"forward": 1}, needs_gradients=False)
def cam(model, images, target=None, layer=None):
    """CAM (Zhou et al.), eq. (1): the class's linear weights applied to the pooled layer's maps.

    Source: Zhou et al., CVPR 2016, Sec. 2 (the class activation map ``M_c = sum_k w_k^c f_k``).
    Follows: the paper's formula, without a ReLU (a CAM may be negative).
    """
    fc = gap_linear_head(model, layer)
    activations, scores = forward_activations(model, images, layer)
    target = resolve_target(target, scores)
    return cam_map(fc.weight[target], activations), target


def first_principal_component(activations: torch.Tensor) -> torch.Tensor:
    """Project each image's (K, h, w) activations on their first principal direction.

    The h*w positions are the samples and the K channels the features. An SVD's sign is
    arbitrary; we choose the one that makes the projection agree with the channel sum, so
    that the map is large where the activations are (Eigen-CAM, Muhammad & Yeasin).
    """
    batch, channels, height, width = activations.shape
    samples = activations.reshape(batch, channels, height * width).transpose(1, 2)  # (B, hw, K)
    centered = samples - samples.mean(dim=1, keepdim=True)
    _, _, right = torch.linalg.svd(centered, full_matrices=False)
    projection = torch.einsum("bpk,bk->bp", centered, right[:, 0])
    sign = torch.sign((projection * samples.sum(dim=2)).sum(dim=1, keepdim=True))
    return (projection * torch.where(sign == 0, 1.0, sign)).reshape(batch, height, width)


@register("eigencam", family="activation-based", section="II.A", equation="Eigen-CAM (first principal component)",
          reference="muhammad2020eigen", cost=lambda shape: {"forward": 1}, needs_gradients=False)
def eigencam(model, images, target=None, layer=None):
    """Eigen-CAM: the activations' first principal component, ReLU'd. Class-agnostic: ``target`` is unused.

    Source: Muhammad & Yeasin, IJCNN 2020 (the projection of the activations on the first right
    singular vector). Follows: our reading of the paper's formula: the activations are centred
    over positions before the SVD (as pytorch-grad-cam's ``get_2d_projection``), and the SVD's
    arbitrary sign is fixed so that the map agrees with the channel sum (our choice).
    """
    activations, scores = forward_activations(model, images, layer)
    target = resolve_target(target, scores)
    return torch.relu(first_principal_component(activations.float())), target
