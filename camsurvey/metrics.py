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
from typing import Any, NamedTuple

import numpy as np
import torch
from scipy import ndimage
from torch import nn
from torchvision.transforms.functional import gaussian_blur

from .common import check_int
from .methods import METHODS, explain, get_method
from .methods.smoothing import check_baseline  # the one check of a baseline image
from .plumbing import check_images, resolve_target
from .typing import Box, Boxes, ClassTarget, Explainer, Region

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

def check_saliency(saliency: torch.Tensor, images: torch.Tensor | None = None) -> torch.Tensor:
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


def check_boxes(boxes: Boxes, count: int, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """``boxes`` (one ``(x0, y0, x1, y1)`` per image, x1/y1 exclusive) as a (B, 4) long tensor."""
    if boxes is None or isinstance(boxes, (str, bytes)):
        raise TypeError(f"boxes must be one (x0, y0, x1, y1) box of whole pixel coordinates per image, got {boxes!r}; "
                        "camsurvey.load_box(photo) gives a bundled photo's box")
    try:
        boxes = torch.as_tensor(np.asarray(boxes) if not isinstance(boxes, torch.Tensor) else boxes)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"boxes must be one (x0, y0, x1, y1) box of whole pixel coordinates per image, got {boxes!r}") from None
    if boxes.dtype == torch.bool or boxes.is_complex():
        raise TypeError(f"box corners must be numbers (x0, y0, x1, y1), got a tensor of {boxes.dtype}")
    if boxes.is_floating_point() and not torch.isfinite(boxes).all():
        raise ValueError("box corners must be finite pixel coordinates (x0, y0, x1, y1)")
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


def region_masks(region: Region, saliency: torch.Tensor) -> torch.Tensor:
    """The ground truth as (B, H, W) bool masks: from boxes (B, 4) or from masks (B, H, W)."""
    if isinstance(region, np.ndarray) and region.ndim >= 2 and region.shape[-1] != 4:
        region = torch.from_numpy(np.ascontiguousarray(region))
    if isinstance(region, torch.Tensor) and region.ndim == 2 and region.shape == saliency.shape[-2:]:
        raise ValueError(f"masks must have shape (B, H, W), got {tuple(region.shape)}; for one image add the batch "
                         "dimension with mask[None]")
    if isinstance(region, torch.Tensor) and region.ndim == 3:
        if region.shape != saliency.shape:
            raise ValueError(f"masks {tuple(region.shape)} do not match saliency {tuple(saliency.shape)}")
        if region.is_floating_point() and not ((region == 0) | (region == 1)).all():
            raise ValueError("masks must be boolean (or 0/1) object masks, one (H, W) mask per image")
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

def energy_pointing_game(saliency: torch.Tensor, region: Region) -> Score:
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


def box_iou(box_a: Box | None, box_b: Box | None) -> float:
    """IoU of two boxes (eq. 7): pixels in both over pixels in either (x1/y1 exclusive)."""
    if box_a is None or box_b is None:
        return 0.0
    ax0, ay0, ax1, ay1 = box_a
    bx0, by0, bx1, by1 = box_b
    overlap = max(0, min(ax1, bx1) - max(ax0, bx0)) * max(0, min(ay1, by1) - max(ay0, by0))
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - overlap
    return overlap / union if union > 0 else 0.0


def localization_iou(saliency: torch.Tensor, boxes: Boxes, threshold: float = IOU_THRESHOLD) -> Score:
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

def check_model(model: nn.Module) -> nn.Module:
    """``model`` if it is a PyTorch classifier the metrics can run, else a TypeError that says what to do."""
    if not isinstance(model, nn.Module):
        hint = ("; the faithfulness metrics run the PyTorch model: compute the maps on the ONNX export with "
                "camsurvey.explain, and score them with the PyTorch model it was exported from"
                if type(model).__name__ == "OnnxModel" else "; load one with camsurvey.load_model")
        raise TypeError(f"model must be a PyTorch classifier (torch.nn.Module), got {type(model).__name__}{hint}")
    return model


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


def _prepare(model: nn.Module, images: torch.Tensor, saliency: torch.Tensor,
             target: ClassTarget) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Checked inputs, the target per image, and the model's confidence ``s`` on the full images."""
    check_model(model)
    images = check_images(images).cpu()
    saliency = check_saliency(saliency, images).cpu()
    with torch.no_grad():
        scores = model(images.to(_device(model)))
    target = resolve_target(target, scores).cpu()
    full = torch.softmax(scores.double(), dim=1).gather(1, target.to(scores.device).view(-1, 1))[:, 0].cpu()
    return images, saliency, target, full


def confidence_drop(full: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """One image's term of eq. (8): max(0, s - s') / s, from the confidences ``s`` (image) and ``s'`` (masked)."""
    return (full - masked).clamp_min(0) / full.clamp_min(1e-12)


def average_drop(model: nn.Module, images: torch.Tensor, saliency: torch.Tensor, target: ClassTarget = None) -> Score:
    """Average Drop (eq. 8): the relative fall of the class confidence when the model sees ``x * map``.

    Per image ``max(0, s - s') / s`` (in [0, 1]); lower is better. ``target=None``: top-1 class.
    """
    images, saliency, target, full = _prepare(model, images, saliency, target)
    masked = confidence(model, explanation_map(images, saliency), target)
    return as_score(confidence_drop(full, masked))


def increase_in_confidence(model: nn.Module, images: torch.Tensor, saliency: torch.Tensor, target: ClassTarget = None) -> Score:
    """Increase in Confidence (eq. 9): 1 where the confidence on ``x * map`` exceeds that on ``x``."""
    images, saliency, target, full = _prepare(model, images, saliency, target)
    masked = confidence(model, explanation_map(images, saliency), target)
    return as_score((full < masked).double())


def _pixel_order(saliency: torch.Tensor) -> torch.Tensor:
    """Pixel indices from most to least salient; ties keep raster order (deterministic)."""
    return torch.argsort(saliency.flatten(1), dim=1, descending=True, stable=True)


def causal_frames(start: torch.Tensor, finish: torch.Tensor, saliency_map: torch.Tensor, steps: int) -> torch.Tensor:
    """The ``steps + 1`` frames of a causal curve for one image: frame k shows the
    ``round(k * H*W / steps)`` most salient pixels of ``finish`` over ``start`` (both (3, H, W)).

    Frame 0 is ``start``, frame ``steps`` is ``finish``; ties in the map keep raster order.
    """
    height, width = saliency_map.shape[-2:]
    pixels = height * width
    order = _pixel_order(saliency_map.reshape(1, -1))[0]
    rank = torch.empty_like(order)
    rank[order] = torch.arange(pixels)
    counts = [round(k * pixels / steps) for k in range(steps + 1)]
    moved = torch.stack([(rank < c).view(1, height, width) for c in counts]).float()
    return start * (1 - moved) + finish * moved


def causal_curve(model: nn.Module, start: torch.Tensor, finish: torch.Tensor, saliency: torch.Tensor,
                 target: torch.Tensor, steps: int, batch_size: int) -> torch.Tensor:
    """Class probability as the pixels of ``finish`` replace those of ``start``, most salient first.

    Returns (B, steps + 1): the probability after 0, 1/steps, ..., all of the pixels moved.
    """
    curve = torch.empty(start.shape[0], steps + 1, dtype=torch.float64)
    for i in range(start.shape[0]):
        frames = causal_frames(start[i], finish[i], saliency[i], steps)
        curve[i] = confidence(model, frames, target[i].expand(steps + 1), batch_size)
    return curve


def curve_area(curve: torch.Tensor) -> torch.Tensor:
    """Area under curves (B, T + 1) sampled at evenly spaced fractions 0 .. 1, by the trapezoid rule."""
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


def _check_curve_options(steps, batch_size):
    check_int(steps, "steps", hint="the curve's number of steps")
    check_int(batch_size, "batch_size", hint="how many frames one forward pass holds")


def _canvas(baseline, images: torch.Tensor, default) -> torch.Tensor:
    """The curve's other image: ``default(images)``, or ``baseline`` checked (a number or an image in [0, 1])."""
    return default(images) if baseline is None else check_baseline(baseline, images).cpu()


def deletion_curve(model: nn.Module, images: torch.Tensor, saliency: torch.Tensor, target: ClassTarget = None, *, steps: int = 16,
                   baseline: torch.Tensor | float | None = None, batch_size: int = 32) -> torch.Tensor:
    """Deletion's curve (Petsiuk et al.), (B, steps + 1): the class probability as the most salient
    pixels are replaced by ``baseline`` (default: zeros, black) in ``steps`` equal chunks."""
    _check_curve_options(steps, batch_size)
    images, saliency, target, _ = _prepare(model, images, saliency, target)
    canvas = _canvas(baseline, images, torch.zeros_like)
    return causal_curve(model, images, canvas, saliency, target, steps, batch_size)


def insertion_curve(model: nn.Module, images: torch.Tensor, saliency: torch.Tensor, target: ClassTarget = None, *, steps: int = 16,
                    baseline: torch.Tensor | float | None = None, batch_size: int = 32) -> torch.Tensor:
    """Insertion's curve (Petsiuk et al.), (B, steps + 1): the class probability as the true pixels
    come back, most salient first, in ``steps`` equal chunks, over ``baseline`` (default: the
    :func:`blurred` image). Point k is after ``round(k * H*W / steps)`` pixels."""
    _check_curve_options(steps, batch_size)
    images, saliency, target, _ = _prepare(model, images, saliency, target)
    canvas = _canvas(baseline, images, blurred)
    return causal_curve(model, canvas, images, saliency, target, steps, batch_size)


def deletion_auc(model: nn.Module, images: torch.Tensor, saliency: torch.Tensor, target: ClassTarget = None, *, steps: int = 16,
                 baseline: torch.Tensor | float | None = None, batch_size: int = 32) -> Score:
    """Deletion (Petsiuk et al.): area under the class probability as the most salient pixels turn black.

    The pixels are removed in ``steps`` equal chunks; ``baseline`` (default: zeros, black) is what
    replaces them. Lower is better: a faithful map removes the evidence first. Petsiuk et al.'s
    code (eclique/RISE, ``Evaluation.ipynb``) deletes to the zeros of the *normalised* image, the
    dataset's mean colour (a grey), where we delete to black; pass ``baseline`` for their grey.
    """
    return as_score(curve_area(deletion_curve(model, images, saliency, target, steps=steps, baseline=baseline,
                                              batch_size=batch_size)))


def insertion_auc(model: nn.Module, images: torch.Tensor, saliency: torch.Tensor, target: ClassTarget = None, *, steps: int = 16,
                  baseline: torch.Tensor | float | None = None, batch_size: int = 32) -> Score:
    """Insertion (Petsiuk et al.): area under the class probability as the most salient pixels appear.

    The curve (:func:`insertion_curve`) starts from ``baseline`` (default: :func:`blurred` image)
    and restores the true pixels in ``steps`` equal chunks. Higher is better.
    """
    return as_score(curve_area(insertion_curve(model, images, saliency, target, steps=steps, baseline=baseline,
                                               batch_size=batch_size)))


# ---------------------------------------------------------------- ADCC (Poppi et al.)

def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of each pair of (H, W) maps; NaN where either map is constant.

    A correlation lies in [-1, 1]; float rounding can step outside by about 1e-15 (a map
    against itself gave 1.0000000000000018), so the quotient is clamped to that range.
    """
    a = a.flatten(1).double()
    b = b.flatten(1).double()
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    denominator = a.norm(dim=1) * b.norm(dim=1)
    correlation = ((a * b).sum(1) / denominator.clamp_min(1e-300)).clamp(-1.0, 1.0)
    return torch.where(denominator > 0, correlation, torch.full_like(denominator, float("nan")))


def mean_pearson(first: torch.Tensor, second: torch.Tensor) -> float | None:
    """The mean over images of :func:`pearson` of two (B, H, W) stacks of maps; ``None`` if a pair is undefined."""
    first, second = torch.as_tensor(first), torch.as_tensor(second)
    if first.shape != second.shape:
        raise ValueError(f"maps to correlate have different shapes {tuple(first.shape)} and {tuple(second.shape)}")
    correlations = pearson(first.reshape(len(first), -1), second.reshape(len(second), -1))
    return None if torch.isnan(correlations).any() else float(correlations.mean())


def make_explainer(explainer: Explainer, model: nn.Module | None = None, layer: str | None = None,
                   **params: Any) -> Callable:
    """A callable ``(images, target) -> saliency``: from a method name of :data:`METHODS`, or as given."""
    if isinstance(explainer, str):
        get_method(explainer)
        if model is None:
            raise ValueError(f"explaining with {explainer!r} needs the model: make_explainer(name, model)")
        return lambda images, target: explain(explainer, model, images, target=target, layer=layer, **params)
    if not callable(explainer):
        raise TypeError(f"explainer must be a method name from {sorted(METHODS)} or a callable "
                        f"(images, target) -> saliency, got {type(explainer).__name__}")
    return explainer


def coherency(model: nn.Module, images: torch.Tensor, saliency: torch.Tensor, explainer: Explainer, target: ClassTarget = None, **params: Any) -> Score:
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
    return coherency_of_maps(saliency, again)


def coherency_of_maps(first: torch.Tensor, again: torch.Tensor) -> Score:
    """Coherency's formula on two (B, H, W) stacks of maps: ``(Pearson(first, again) + 1) / 2``, 0 where undefined."""
    return as_score(torch.nan_to_num((pearson(first, again) + 1) / 2, nan=0.0))


def complexity(saliency: torch.Tensor) -> Score:
    """Complexity (Poppi et al.): the map's L1 norm over its number of pixels, its mean value."""
    saliency = check_saliency(saliency)
    return as_score(saliency.abs().mean(dim=(-2, -1)))


def adcc(coherency_value: float | torch.Tensor, complexity_value: float | torch.Tensor,
         average_drop_value: float | torch.Tensor) -> torch.Tensor:
    """ADCC (eq. 10): the harmonic mean of Coherency, 1 - Complexity and 1 - Average Drop.

    Takes floats or tensors (per image), each a fraction in [0, 1] (a NaN or a value outside is
    refused: it would make the score silently 0 or more than 1); a part equal to 0 makes the score 0.
    """
    values = {"coherency": coherency_value, "complexity": complexity_value, "average_drop": average_drop_value}
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float, torch.Tensor, np.ndarray, np.floating)):
            raise TypeError(f"{name} must be a number or a tensor of per-image values, got {type(value).__name__}")
        value = torch.as_tensor(value, dtype=torch.float64)
        if not torch.isfinite(value).all() or (value < 0).any() or (value > 1).any():
            raise ValueError(f"{name} must lie in [0, 1] (a fraction, not a percentage), got {value.tolist()}")
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


def adcc_score(model: nn.Module, images: torch.Tensor, saliency: torch.Tensor, explainer: Explainer, target: ClassTarget = None,
               **params: Any) -> ADCCScore:
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

    ``sigma``: the blob's standard deviation as a fraction of the image side (> 0).
    """
    images = check_images(images)
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not np.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"sigma is the blob's standard deviation as a fraction of the image side and must be > 0, "
                         f"got {sigma!r}")
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
