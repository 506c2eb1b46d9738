"""Every metric of survey Section V.B, each a small function that names its equation.

Localisation (does the map sit on the object?):

* :func:`energy_pointing_game` -- the share of the map's energy inside the object (eq. 6);
* :func:`localization_iou` -- IoU of the box around the thresholded map's largest connected
  component with the ground-truth box (eq. 7).

Faithfulness (does the map show what the model uses?):

* :func:`average_drop` (eq. 8) and :func:`increase_in_confidence` (eq. 9), from the model's
  softmax confidence on the image and on the *explanation map* ``x * saliency``
  (:func:`explanation_map`), as Chattopadhyay et al. define them;
* :func:`insertion_auc` and :func:`deletion_auc`, Petsiuk et al.'s causal curves;
* :func:`coherency`, :func:`complexity` and :func:`adcc` (eq. 10), Poppi et al.'s ADCC:
  the harmonic mean of Coherency, 1 - Complexity and 1 - Average Drop, computed per image.

Every metric takes a batch and returns a :class:`Score`: one value per image and their mean.
Values are fractions in [0, 1]; the survey's tables print them as percentages (x 100).
No metric depends on a particular method: Coherency re-explains the explanation map with an
``explainer``, a method name from :data:`camsurvey.METHODS` or any callable
``(images, target) -> saliency``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
from scipy import ndimage
from torch import nn
from torchvision.transforms.functional import gaussian_blur

from .common import check_int
from .methods import METHODS, explain, get_method
from .plumbing import check_images, resolve_target

IOU_THRESHOLD = 0.2  # CAM's rule (Zhou et al.): keep the pixels above 20% of the map's maximum


class Score(NamedTuple):
    """A metric on a batch: ``per_image`` (B,) float tensor and ``mean`` (a float)."""

    per_image: torch.Tensor
    mean: float


def as_score(per_image: torch.Tensor) -> Score:
    """A :class:`Score` from per-image values (any shape (B,) tensor)."""
    per_image = per_image.detach().double().cpu()
    return Score(per_image, float(per_image.mean()))


# ---------------------------------------------------------------- checking inputs

def check_saliency(saliency, images: torch.Tensor | None = None) -> torch.Tensor:
    """``saliency`` as a float (B, H, W) tensor in [0, 1], matching ``images`` (B, 3, H, W) if given."""
    if not isinstance(saliency, torch.Tensor):
        raise TypeError(f"saliency must be a torch.Tensor (B, H, W) in [0, 1], got {type(saliency).__name__}")
    if saliency.ndim == 2:
        raise ValueError(f"saliency must have shape (B, H, W), got {tuple(saliency.shape)}; "
                         "add the batch dimension with saliency.unsqueeze(0)")
    if saliency.ndim != 3 or saliency.shape[0] == 0:
        raise ValueError(f"saliency must have shape (B, H, W) with B >= 1, got {tuple(saliency.shape)}")
    if not saliency.is_floating_point():
        saliency = saliency.float()
    if not torch.isfinite(saliency).all():
        raise ValueError("saliency contains NaN or Inf values; a metric needs a finite map in [0, 1]")
    low, high = saliency.min().item(), saliency.max().item()
    if low < 0 or high > 1:
        raise ValueError(f"saliency must lie in [0, 1], got values in [{low:.3g}, {high:.3g}]; "
                         "normalise it first (camsurvey.explain already returns maps in [0, 1])")
    if images is not None and (images.shape[0] != saliency.shape[0] or images.shape[-2:] != saliency.shape[-2:]):
        raise ValueError(f"saliency {tuple(saliency.shape)} does not match images {tuple(images.shape)}: "
                         "give one (H, W) map per image, at the image's resolution")
    return saliency.float()


def check_boxes(boxes, count: int, size) -> torch.Tensor:
    """``boxes`` (one ``(x0, y0, x1, y1)`` per image, x1/y1 exclusive) as a (B, 4) long tensor."""
    boxes = torch.as_tensor(boxes)
    if boxes.is_floating_point() and not torch.equal(boxes, boxes.round()):
        raise TypeError("box corners must be whole pixel coordinates (x0, y0, x1, y1)")
    boxes = boxes.long()
    if boxes.ndim == 1:
        boxes = boxes.unsqueeze(0)
    if boxes.ndim != 2 or boxes.shape[-1] != 4 or boxes.shape[0] != count:
        raise ValueError(f"give one box (x0, y0, x1, y1) per image: {count} boxes, got shape {tuple(boxes.shape)}")
    height, width = size
    x0, y0, x1, y1 = boxes.unbind(1)
    if ((x1 <= x0) | (y1 <= y0)).any():
        raise ValueError(f"empty box (x1 <= x0 or y1 <= y0) in {boxes.tolist()}; every box must hold a pixel")
    if ((x0 < 0) | (y0 < 0) | (x1 > width) | (y1 > height)).any():
        raise ValueError(f"a box lies outside the {height} x {width} image: {boxes.tolist()}")
    return boxes


def region_masks(region, saliency: torch.Tensor) -> torch.Tensor:
    """The ground truth as (B, H, W) bool masks: from boxes (B, 4) or from masks (B, H, W)."""
    if isinstance(region, torch.Tensor) and region.ndim == 3:
        if region.shape != saliency.shape:
            raise ValueError(f"masks {tuple(region.shape)} do not match saliency {tuple(saliency.shape)}")
        masks = region.bool()
        if not masks.flatten(1).any(1).all():
            raise ValueError("an empty ground-truth mask: every image needs at least one object pixel")
        return masks
    boxes = check_boxes(region, saliency.shape[0], saliency.shape[-2:])
    rows = torch.arange(saliency.shape[-2]).view(1, -1, 1)
    cols = torch.arange(saliency.shape[-1]).view(1, 1, -1)
    x0, y0, x1, y1 = (c.view(-1, 1, 1) for c in boxes.unbind(1))
    return (rows >= y0) & (rows < y1) & (cols >= x0) & (cols < x1)


# ---------------------------------------------------------------- localisation

def energy_pointing_game(saliency: torch.Tensor, region) -> Score:
    """Energy-based pointing game (eq. 6): sum of the map inside the box over its sum on the image.

    ``region``: one box ``(x0, y0, x1, y1)`` per image, or exact (B, H, W) object masks.
    An all-zero map has no energy anywhere; it scores 0.
    """
    saliency = check_saliency(saliency)
    inside = (saliency * region_masks(region, saliency).to(saliency.device)).sum(dim=(-2, -1))
    total = saliency.sum(dim=(-2, -1))
    return as_score(torch.where(total > 0, inside / total.clamp_min(1e-12), torch.zeros_like(total)))


def estimated_box(saliency_map: torch.Tensor, threshold: float = IOU_THRESHOLD) -> tuple[int, int, int, int] | None:
    """bbox_e of eq. (7): the box around the largest 8-connected component of ``map >= threshold * max``.

    Returns ``(x0, y0, x1, y1)`` (x1/y1 exclusive), or ``None`` for an all-zero map.
    """
    values = saliency_map.detach().cpu().numpy()
    peak = values.max()
    if peak <= 0:
        return None
    labels, count = ndimage.label(values >= threshold * peak, structure=np.ones((3, 3)))
    sizes = ndimage.sum_labels(np.ones_like(values), labels, index=np.arange(1, count + 1))
    largest = int(np.argmax(sizes)) + 1  # ties: the first component in raster order
    rows, cols = ndimage.find_objects((labels == largest).astype(int))[0]
    return cols.start, rows.start, cols.stop, rows.stop


def box_iou(box_a, box_b) -> float:
    """IoU of two boxes (eq. 7): pixels in both over pixels in either (x1/y1 exclusive)."""
    if box_a is None or box_b is None:
        return 0.0
    ax0, ay0, ax1, ay1 = box_a
    bx0, by0, bx1, by1 = box_b
    overlap = max(0, min(ax1, bx1) - max(ax0, bx0)) * max(0, min(ay1, by1) - max(ay0, by0))
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - overlap
    return overlap / union if union > 0 else 0.0


def localization_iou(saliency: torch.Tensor, boxes, threshold: float = IOU_THRESHOLD) -> Score:
    """IoU (eq. 7) of each map's estimated box (:func:`estimated_box`) with its ground-truth box.

    ``threshold``: the fraction of the map's maximum at which it is binarised. The survey
    says "the threshold of the max value" and cites CAM, whose rule is 20% of the maximum
    (the default); 1.0 keeps only the maximum itself. An all-zero map has no box: IoU 0.
    """
    saliency = check_saliency(saliency)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
        raise ValueError(f"threshold is a fraction of the map's maximum in (0, 1], got {threshold!r}")
    boxes = check_boxes(boxes, saliency.shape[0], saliency.shape[-2:])
    values = [box_iou(estimated_box(m, threshold), tuple(b.tolist())) for m, b in zip(saliency, boxes)]
    return as_score(torch.tensor(values))


# ---------------------------------------------------------------- faithfulness

def _device(model: nn.Module) -> torch.device:
    return next(iter(model.parameters()), torch.empty(0)).device


def confidence(model: nn.Module, images: torch.Tensor, target: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """The model's softmax probability of class ``target[i]`` on ``images[i]``: (B,) on the CPU."""
    out = []
    with torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            chunk = images[start:start + batch_size].to(_device(model))
            probabilities = torch.softmax(model(chunk).double(), dim=1)
            out.append(probabilities.gather(1, target[start:start + batch_size].to(chunk.device).view(-1, 1))[:, 0])
    return torch.cat(out).cpu()


def explanation_map(images: torch.Tensor, saliency: torch.Tensor) -> torch.Tensor:
    """``x * saliency``: the image seen only through its map (black where the map is 0)."""
    return images * saliency.to(images.device).unsqueeze(1)


def _prepare(model, images, saliency, target):
    """Checked inputs, the target per image, and the model's confidence ``s`` on the full images."""
    images = check_images(images).cpu()
    saliency = check_saliency(saliency, images).cpu()
    with torch.no_grad():
        scores = model(images.to(_device(model)))
    target = resolve_target(target, scores).cpu()
    full = torch.softmax(scores.double(), dim=1).gather(1, target.to(scores.device).view(-1, 1))[:, 0].cpu()
    return images, saliency, target, full


def _drop(full: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """One image's term of eq. (8): max(0, s - s') / s."""
    return (full - masked).clamp_min(0) / full.clamp_min(1e-12)


def average_drop(model: nn.Module, images: torch.Tensor, saliency: torch.Tensor, target=None) -> Score:
    """Average Drop (eq. 8): the relative fall of the class confidence when the model sees ``x * map``.

    Per image ``max(0, s - s') / s`` (in [0, 1]); lower is better. ``target=None``: top-1 class.
    """
    images, saliency, target, full = _prepare(model, images, saliency, target)
    masked = confidence(model, explanation_map(images, saliency), target)
    return as_score(_drop(full, masked))


def increase_in_confidence(model: nn.Module, images: torch.Tensor, saliency: torch.Tensor, target=None) -> Score:
    """Increase in Confidence (eq. 9): 1 where the confidence on ``x * map`` exceeds that on ``x``."""
    images, saliency, target, full = _prepare(model, images, saliency, target)
    masked = confidence(model, explanation_map(images, saliency), target)
    return as_score((full < masked).double())


def _pixel_order(saliency: torch.Tensor) -> torch.Tensor:
    """Pixel indices from most to least salient; ties keep raster order (deterministic)."""
    return torch.argsort(saliency.flatten(1), dim=1, descending=True, stable=True)


def _causal_curve(model, start, finish, saliency, target, steps, batch_size):
    """Class probability as the pixels of ``finish`` replace those of ``start``, most salient first.

    Returns (B, steps + 1): the probability after 0, 1/steps, ..., all of the pixels moved.
    """
    batch, _, height, width = start.shape
    pixels = height * width
    order = _pixel_order(saliency)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(pixels).expand(batch, -1).contiguous())
    counts = [round(k * pixels / steps) for k in range(steps + 1)]
    curve = torch.empty(batch, steps + 1, dtype=torch.float64)
    for i in range(batch):
        moved = torch.stack([(rank[i] < c).view(1, height, width) for c in counts]).float()
        frames = start[i] * (1 - moved) + finish[i] * moved
        curve[i] = confidence(model, frames, target[i].expand(steps + 1), batch_size)
    return curve


def _auc(curve: torch.Tensor) -> torch.Tensor:
    """Area under a curve sampled at evenly spaced fractions 0..1 (trapezoid rule)."""
    fractions = np.linspace(0.0, 1.0, curve.shape[1])
    return torch.from_numpy(np.trapezoid(curve.numpy(), fractions, axis=1))


def blurred(images: torch.Tensor, kernel_size: int = 11, sigma: float = 5.0) -> torch.Tensor:
    """The insertion curve's starting canvas: a Gaussian blur of the image, sigma = 5 pixels in an
    11 x 11 window with mirrored borders (torchvision's ``gaussian_blur``).

    Petsiuk et al.'s code (eclique/RISE, ``evaluation.py``, ``gkern(11, 5)``) uses the same size
    and sigma but not the same blur: its kernel is scipy's ``gaussian_filter`` of a single pixel
    inside the 11 x 11 window, whose mirrored boundaries fold the wide Gaussian back into the
    window, so it is close to a box filter; and it convolves the *normalised* image with zero
    padding, so the border fades to the dataset's mean colour. Their start is blurrier, and on
    the same pixel order it gives a lower insertion AUC than ours (the metrics chapter's
    faithfulness table measures both).
    """
    return gaussian_blur(images, [kernel_size, kernel_size], [sigma, sigma])


def _check_steps(steps):
    check_int(steps, "steps", hint="the curve's number of steps")


def deletion_auc(model: nn.Module, images: torch.Tensor, saliency: torch.Tensor, target=None, *, steps: int = 16,
                 baseline=None, batch_size: int = 32) -> Score:
    """Deletion (Petsiuk et al.): area under the class probability as the most salient pixels turn black.

    The pixels are removed in ``steps`` equal chunks; ``baseline`` (default: zeros, black) is what
    replaces them. Lower is better: a faithful map removes the evidence first. Petsiuk et al.'s
    code (eclique/RISE, ``Evaluation.ipynb``) deletes to the zeros of the *normalised* image, the
    dataset's mean colour (a grey), where we delete to black; pass ``baseline`` for their grey.
    """
    _check_steps(steps)
    images, saliency, target, _ = _prepare(model, images, saliency, target)
    baseline = torch.zeros_like(images) if baseline is None else baseline.expand_as(images)
    return as_score(_auc(_causal_curve(model, images, baseline, saliency, target, steps, batch_size)))


def insertion_auc(model: nn.Module, images: torch.Tensor, saliency: torch.Tensor, target=None, *, steps: int = 16,
                  baseline=None, batch_size: int = 32) -> Score:
    """Insertion (Petsiuk et al.): area under the class probability as the most salient pixels appear.

    The curve starts from ``baseline`` (default: :func:`blurred` image) and restores the true
    pixels in ``steps`` equal chunks. Higher is better.
    """
    _check_steps(steps)
    images, saliency, target, _ = _prepare(model, images, saliency, target)
    baseline = blurred(images) if baseline is None else baseline.expand_as(images)
    return as_score(_auc(_causal_curve(model, baseline, images, saliency, target, steps, batch_size)))


# ---------------------------------------------------------------- ADCC (Poppi et al.)

def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of each pair of (H, W) maps; NaN where either map is constant."""
    a = a.flatten(1).double()
    b = b.flatten(1).double()
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    denominator = a.norm(dim=1) * b.norm(dim=1)
    return torch.where(denominator > 0, (a * b).sum(1) / denominator.clamp_min(1e-300),
                       torch.full_like(denominator, float("nan")))


def mean_pearson(first: torch.Tensor, second: torch.Tensor) -> float | None:
    """The mean over images of :func:`pearson` of two (B, H, W) stacks of maps; ``None`` if a pair is undefined."""
    first, second = torch.as_tensor(first), torch.as_tensor(second)
    if first.shape != second.shape:
        raise ValueError(f"maps to correlate have different shapes {tuple(first.shape)} and {tuple(second.shape)}")
    correlations = pearson(first.reshape(len(first), -1), second.reshape(len(second), -1))
    return None if torch.isnan(correlations).any() else float(correlations.mean())


def make_explainer(explainer, model=None, layer=None, **params) -> Callable:
    """A callable ``(images, target) -> saliency``: from a method name of :data:`METHODS`, or as given."""
    if isinstance(explainer, str):
        get_method(explainer)
        return lambda images, target: explain(explainer, model, images, target=target, layer=layer, **params)
    if not callable(explainer):
        raise TypeError(f"explainer must be a method name from {sorted(METHODS)} or a callable "
                        f"(images, target) -> saliency, got {type(explainer).__name__}")
    return explainer


def coherency(model: nn.Module, images: torch.Tensor, saliency: torch.Tensor, explainer, target=None, **params) -> Score:
    """Coherency (Poppi et al.): ``(Pearson(map(x), map(x * map(x))) + 1) / 2``, in [0, 1].

    ``explainer`` recomputes the map on the explanation map ``x * map(x)`` for the same class:
    a method name (with its ``params``) or a callable ``(images, target) -> saliency``.
    Where either map is constant the correlation is undefined, and the image scores 0: our
    choice, so that one such image cannot poison a mean. The official code (aimagelab/ADCC,
    ``metrics/coherency.py``) scores 0 only a map that contains NaN; for a constant map scipy's
    ``pearsonr`` returns NaN, so its Coherency, and its ADCC, are NaN there.
    """
    images, saliency, target, _ = _prepare(model, images, saliency, target)
    explainer = make_explainer(explainer, model, **params)
    again = check_saliency(explainer(explanation_map(images, saliency), target).detach().cpu(), images)
    correlation = pearson(saliency, again)
    return as_score(torch.nan_to_num((correlation + 1) / 2, nan=0.0))


def complexity(saliency: torch.Tensor) -> Score:
    """Complexity (Poppi et al.): the map's L1 norm over its number of pixels, its mean value."""
    saliency = check_saliency(saliency)
    return as_score(saliency.abs().mean(dim=(-2, -1)))


def adcc(coherency_value, complexity_value, average_drop_value):
    """ADCC (eq. 10): the harmonic mean of Coherency, 1 - Complexity and 1 - Average Drop.

    Takes floats or tensors (per image); a part equal to 0 makes the score 0.
    """
    parts = [torch.as_tensor(coherency_value, dtype=torch.float64), 1 - torch.as_tensor(complexity_value, dtype=torch.float64),
             1 - torch.as_tensor(average_drop_value, dtype=torch.float64)]
    parts = torch.broadcast_tensors(*parts)
    positive = torch.stack([p > 0 for p in parts]).all(0)
    inverse_sum = sum(1 / p.clamp_min(1e-300) for p in parts)
    return torch.where(positive, 3 / inverse_sum, torch.zeros_like(inverse_sum))


class ADCCScore(NamedTuple):
    """ADCC per image and its parts; ``mean`` averages the per-image ADCC (Poppi et al.'s order)."""

    per_image: torch.Tensor
    mean: float
    coherency: Score
    complexity: Score
    average_drop: Score

    @property
    def of_means(self) -> float:
        """ADCC of the averaged parts (what some codebases report): generally not ``mean``."""
        return float(adcc(self.coherency.mean, self.complexity.mean, self.average_drop.mean))


def adcc_score(model: nn.Module, images: torch.Tensor, saliency: torch.Tensor, explainer, target=None,
               **params) -> ADCCScore:
    """ADCC (eq. 10) per image, then averaged; also returns its three parts."""
    coherency_score = coherency(model, images, saliency, explainer, target, **params)
    complexity_score = complexity(saliency)
    drop = average_drop(model, images, saliency, target)
    per_image = adcc(coherency_score.per_image, complexity_score.per_image, drop.per_image)
    return ADCCScore(per_image, float(per_image.mean()), coherency_score, complexity_score, drop)


# ---------------------------------------------------------------- the metrics by kind

LOCALIZATION = ("pointing_game", "iou")
FAITHFULNESS = ("average_drop", "increase_in_confidence", "insertion", "deletion")
ADCC_PARTS = ("coherency", "complexity", "adcc")

HIGHER_IS_BETTER = {"pointing_game": True, "iou": True, "average_drop": False, "increase_in_confidence": True,
                    "insertion": True, "deletion": False, "coherency": True, "complexity": False, "adcc": True,
                    "adcc_of_means": True}



# ---------------------------------------------------------------- trivial maps (Poppi et al.)

def trivial_map(kind: str, images: torch.Tensor, sigma: float = 0.25) -> torch.Tensor:
    """A map that ignores the model: ``"ones"`` (the whole image) or ``"centre"`` (a Gaussian blob).

    ``sigma``: the blob's standard deviation as a fraction of the image side.
    """
    batch, _, height, width = images.shape
    if kind == "ones":
        return torch.ones(batch, height, width)
    if kind != "centre":
        raise ValueError(f"kind must be 'ones' or 'centre', got {kind!r}")
    rows = (torch.arange(height) - (height - 1) / 2) / (sigma * height)
    cols = (torch.arange(width) - (width - 1) / 2) / (sigma * width)
    blob = torch.exp(-0.5 * (rows.view(-1, 1) ** 2 + cols.view(1, -1) ** 2))
    return blob.expand(batch, height, width).clone()


def trivial_explainer(kind: str, sigma: float = 0.25) -> Callable:
    """The explainer of a trivial map: it returns the same map whatever the image (for Coherency)."""
    return lambda images, target: trivial_map(kind, images, sigma)
