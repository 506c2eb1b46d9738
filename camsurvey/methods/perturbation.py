"""Gradient-free CAMs (survey Section II.C): weights from forward passes alone.

Score-CAM masks the *input* with each upsampled activation map; Ablation-CAM and
Recipro-CAM perturb the *feature map* and run only the head after the split, batched.
None of them needs a backward pass, so they also work on deployed (ONNX, OpenVINO) models:
:mod:`camsurvey.deploy.runtime` runs them on ONNX Runtime with numpy, without torch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..common import ABLATIONCAM_BATCH_SIZE, RECIPROCAM_BATCH_SIZE, SCORECAM_BATCH_SIZE, batches, check_batch_size
from ..plumbing import forward_activations, image_heads, is_constant, normalize, resolve_target, upsample
from .activation import weighted_sum
from .registry import register

GAUSSIAN_3X3 = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 16


# --- Score-CAM ----------------------------------------------------------------------------

def scorecam_masks(activations: torch.Tensor, size) -> tuple[torch.Tensor, torch.Tensor]:
    """``norm(up(A^n))`` for every channel of one image, and which channels have one.

    A constant channel has no normalised mask (0/0), so eq. (4) cannot score it: it is
    reported as invalid and left out of the softmax, exactly, not approximated. Constancy is
    decided on A^n itself, before upsampling (see :func:`camsurvey.plumbing.finish`).
    """
    valid = ~is_constant(activations)
    masks = normalize(upsample(activations.unsqueeze(0), size)[0])  # (K, H, W)
    return torch.where(valid[:, None, None], masks, torch.zeros_like(masks)), valid


def scorecam_weights(masked_scores: torch.Tensor, score: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Eq. (4)'s weights: ``softmax_n(F^c(X'_n) - F^c(X))`` over the channels with a mask.

    The softmax is shift-invariant, so subtracting ``F^c(X)`` changes no weight; it only
    makes each entry read as the *increase in confidence* its masked input brings.
    """
    if not valid.any():
        return torch.zeros_like(masked_scores)
    return torch.softmax((masked_scores - score).masked_fill(~valid, float("-inf")), dim=-1)


def scorecam_map(weights: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
    """Eq. (4): ``L^c = ReLU(sum_n w_n A^n)``."""
    return torch.relu(weighted_sum(weights, activations))


def masked_class_scores(model, image, masks, class_index, batch_size) -> torch.Tensor:
    """``F^c(X ⊙ mask)`` for each mask, in batches of ``batch_size`` forward passes.

    The masked batch is laid out channels-last: EfficientNet-Lite0's depthwise convolutions
    run markedly faster that way on a CPU (see ``camsurvey.common.SCORECAM_BATCH_SIZE``).
    """
    scores = []
    with torch.no_grad():
        for chunk in batches(len(masks), batch_size):
            masked = (image.unsqueeze(0) * masks[chunk].unsqueeze(1)).contiguous(memory_format=torch.channels_last)
            scores.append(model(masked)[:, class_index])
    return torch.cat(scores) if scores else image.new_zeros(0)


def scorecam_channel_scores(model, image, activations, class_index, batch_size) -> tuple[torch.Tensor, torch.Tensor]:
    """``F^c(X'_n)`` for every channel n of one image (eq. 4), and which channels have a mask.

    Channels without a mask (constant maps) get no forward pass and a score of 0.
    """
    masks, valid = scorecam_masks(activations, image.shape[-2:])
    masked_scores = torch.zeros(len(masks), device=image.device)
    masked_scores[valid] = masked_class_scores(model, image, masks[valid], class_index, batch_size)
    return masked_scores, valid


@register("scorecam", family="gradient-free", section="II.C", equation="eq. 4", reference="wang2020score",
          cost=lambda shape, batch_size: {"forward": 1 + shape.live}, needs_gradients=False)
def scorecam(model, images, target=None, layer=None, *, batch_size=SCORECAM_BATCH_SIZE):
    """Score-CAM (Wang et al.), eq. (4): channels weighted by the score of the input they mask.

    Source: Wang et al., CVPRW 2020, Sec. 4 (the channel-wise increase of confidence, normalised
    by a softmax over the channels). Follows: the paper's formula as the survey writes it (eq. 4)
    and torchcam computes it; a channel without a mask (a constant map) gets no weight.
    """
    check_batch_size(batch_size)
    activations, scores = forward_activations(model, images, layer)
    target = resolve_target(target, scores)
    return scorecam_maps(model, images, activations, scores, target, batch_size), target


def scorecam_maps(model, images, activations, scores, target, batch_size) -> torch.Tensor:
    """Eq. (4) for each image, given its activations A, class scores and target class.

    (The same formula on ONNX Runtime, without torch: :func:`camsurvey.deploy.runtime.scorecam`.)
    """
    maps = []
    for b, image in enumerate(images):
        masked_scores, valid = scorecam_channel_scores(model, image, activations[b], target[b], batch_size)
        weights = scorecam_weights(masked_scores, scores[b, target[b]], valid)
        maps.append(scorecam_map(weights.unsqueeze(0), activations[b : b + 1])[0])
    return torch.stack(maps)


# --- Ablation-CAM ---------------------------------------------------------------------------

def ablationcam_weights(score: torch.Tensor, ablated_scores: torch.Tensor) -> torch.Tensor:
    """Ablation-CAM's weights (Desai & Ramaswamy): ``w_k = (y^c - y^c_k) / y^c``,
    the relative drop of the class score when channel k of A is set to zero."""
    safe = torch.where(score != 0, score, torch.ones_like(score))
    return (score.unsqueeze(-1) - ablated_scores) / safe.unsqueeze(-1)


def ablated_class_scores(head, activations, class_index, batch_size=ABLATIONCAM_BATCH_SIZE) -> torch.Tensor:
    """``y^c_k``: the class score when channel k of one image's (K, h, w) activations is zeroed, for every k."""
    channels = activations.shape[0]
    keep = 1 - torch.eye(channels, device=activations.device)[:, :, None, None]  # row k: all but channel k
    with torch.no_grad():
        return torch.cat([head(activations * keep[chunk])[:, class_index] for chunk in batches(channels, batch_size)])


@register("ablationcam", family="gradient-free", section="II.C / V.C", equation="Ablation-CAM weights",
          reference="desai2020ablation",
          cost=lambda shape, batch_size: {"forward": 1, "head": shape.channels}, needs_gradients=False)
def ablationcam(model, images, target=None, layer=None, *, batch_size=ABLATIONCAM_BATCH_SIZE):
    """Ablation-CAM: each channel zeroed in turn, the head re-run on the ablated feature maps.

    Source: Desai & Ramaswamy, WACV 2020, Sec. 3 (``w_k = (y^c - y^c_k) / y^c``). Follows: the
    paper's formula; the ReLU of the weighted sum as in Grad-CAM (eq. 2).
    """
    check_batch_size(batch_size)
    activations, scores = forward_activations(model, images, layer)
    target = resolve_target(target, scores)
    return ablationcam_maps(image_heads(model, layer, images), activations, scores, target, batch_size), target


def ablationcam_maps(heads, activations, scores, target, batch_size) -> torch.Tensor:
    """``ReLU(sum_k w_k A^k)`` with Ablation-CAM's weights, for each image; ``heads[b]`` maps image b's
    activations to class scores (on ONNX Runtime: :func:`camsurvey.deploy.runtime.ablationcam`)."""
    maps = []
    for b in range(len(activations)):
        ablated = ablated_class_scores(heads[b], activations[b], target[b], batch_size)
        weights = ablationcam_weights(scores[b, target[b]], ablated)
        maps.append(torch.relu(weighted_sum(weights.unsqueeze(0), activations[b : b + 1]))[0])
    return torch.stack(maps)


# --- Recipro-CAM ----------------------------------------------------------------------------

# The kernels of Recipro-CAM: which feature map the head sees for position (i, j).
RECIPROCAM_KERNELS = {
    "point": "the authors' default: the features at (i, j) alone, every other position zero",
    "gaussian": "the authors' Gaussian option: the feature vector at (i, j) copied into its 3x3 "
                "neighbourhood, weighted 1/4 (centre), 1/8 (edges), 1/16 (corners)",
    "gaussian-window": "our variant: every position's own features in the 3x3 neighbourhood of (i, j), "
                       "weighted as above",
}


def check_kernel(kernel) -> str:
    if not isinstance(kernel, str) or kernel not in RECIPROCAM_KERNELS:
        raise ValueError(f"kernel must be one of {sorted(RECIPROCAM_KERNELS)} ('point' is the authors' default), "
                         f"got {kernel!r}")
    return kernel


def reciprocam_masks(height: int, width: int, kernel: str = "point", device=None) -> torch.Tensor:
    """The h*w spatial weights of Recipro-CAM, one (h, w) map per feature-map position: (h*w, h, w).

    ``"point"`` is 1 at the position and 0 elsewhere; ``"gaussian"`` and ``"gaussian-window"``
    spread it over the 3x3 neighbourhood with weights 1/4 (centre), 1/8 (edges), 1/16 (corners),
    cut at the border (the authors' 3x3 filter, sybyun/ReciproCAM, ``src/recipro_cam.py``).
    """
    check_kernel(kernel)
    points = torch.eye(height * width, device=device).reshape(height * width, 1, height, width)
    if kernel == "point":
        return points[:, 0]
    return F.conv2d(points, GAUSSIAN_3X3.to(points)[None, None], padding=1)[:, 0]


def reciprocam_features(activations: torch.Tensor, masks: torch.Tensor, positions: slice, kernel: str) -> torch.Tensor:
    """The masked feature maps the head sees, one per position in ``positions``: (n, K, h, w).

    ``activations``: one image's A (K, h, w); ``masks``: :func:`reciprocam_masks` (h*w, h, w).
    For ``"point"`` and ``"gaussian"`` (the authors') the *centre's* feature vector ``A[:, i, j]``
    fills the mask: ``A_ij (x) mask``; for ``"gaussian-window"`` (ours) each position keeps its
    own features: ``A * mask``. With the point mask the two are the same map.
    """
    chunk = masks[positions].unsqueeze(1)  # (n, 1, h, w)
    if kernel == "gaussian-window":
        return activations.unsqueeze(0) * chunk
    centres = activations.flatten(1).T[positions]  # (n, K): the feature vector at each position
    return centres[:, :, None, None] * chunk


@register("reciprocam", family="gradient-free", section="II.C", equation="Recipro-CAM spatial masks",
          reference="byun2022recipro",
          cost=lambda shape, kernel, batch_size: {"forward": 1, "head": shape.positions}, needs_gradients=False)
def reciprocam(model, images, target=None, layer=None, *, kernel="point", batch_size=RECIPROCAM_BATCH_SIZE):
    """Recipro-CAM (Byun & Lee): for each position of A, the head's softmax probability of class
    c when it sees only the features at that position (``kernel``: :data:`RECIPROCAM_KERNELS`);
    that probability is the map's value there.

    Source: sybyun/ReciproCAM, ``src/recipro_cam.py`` (``_mosaic_feature``). Follows: the authors' code, with their default single-position mask (``kernel="point"``) and
    their Gaussian option (``"gaussian"``); ``"gaussian-window"`` is our reading of the paper's
    Gaussian, labelled ours (Pearson 0.93-0.98 to the authors' Gaussian on the bundled photos at
    ``conv_head``, 0.77-0.90 at ``block10``).
    """
    check_batch_size(batch_size)
    check_kernel(kernel)
    activations, scores = forward_activations(model, images, layer)
    target = resolve_target(target, scores)
    return reciprocam_maps(image_heads(model, layer, images), activations, target, kernel, batch_size), target


def reciprocam_maps(heads, activations, target, kernel, batch_size) -> torch.Tensor:
    """Recipro-CAM's (h, w) map of softmax scores for each image; ``heads[b]`` maps image b's activations
    to class scores (on ONNX Runtime: :func:`camsurvey.deploy.runtime.reciprocam`)."""
    height, width = activations.shape[-2:]
    masks = reciprocam_masks(height, width, kernel, activations.device)
    maps = []
    with torch.no_grad():
        for b in range(len(activations)):
            probabilities = torch.cat([
                torch.softmax(heads[b](reciprocam_features(activations[b], masks, chunk, kernel)), dim=1)[:, target[b]]
                for chunk in batches(len(masks), batch_size)])
            maps.append(probabilities.reshape(height, width))
    return torch.stack(maps)
