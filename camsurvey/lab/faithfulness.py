"""Faithful to the authors: their algorithms, re-implemented as oracles, and ours measured against them.

Each ``*_authors`` function computes what a method's authors compute, as their published code
(named in its docstring) does it: written from their definition, step by step and looping
where they loop, and independently of :mod:`camsurvey.methods` (an oracle that called the code
it checks would prove nothing). They use only the model's interface (``model.split``, its
forward and backward passes). The tests check our methods against them
(``tests/lab/test_faithfulness.py``), and the chapters print the measured agreement
(:func:`agreement`, :func:`faithfulness_rows`), so that a table of "what the authors compute,
what we compute, how far apart" is computed, never typed.

Where a method follows its authors, the agreement is float rounding; where we chose otherwise
(a variant labelled ours), the table shows by how much the maps differ.
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple

import torch

from .. import metrics
from ..methods import METHODS, smoothing

FOLLOWS = ("the authors' code", "the paper's formula", "our reading")
PROVENANCE = re.compile(r"Source:\s*(?P<source>.+?)\s+Follows:\s*(?P<follows>" + "|".join(map(re.escape, FOLLOWS))
                        + r")(?P<rest>.*?)(?:\n\s*\n|$)", re.DOTALL)


# --- where each method comes from ---------------------------------------------------------------

class Provenance(NamedTuple):
    """Where a method's definition comes from (``source``) and how we follow it (one of :data:`FOLLOWS`)."""

    source: str
    follows: str
    detail: str


def provenance(method: str) -> Provenance:
    """The ``Source: ... Follows: ...`` statement of a registered method's docstring.

    Every method's docstring carries one (a registry-wide test checks it); a method without it
    raises a ValueError naming the method.
    """
    docstring = " ".join((METHODS[method].function.__doc__ or "").split())
    found = PROVENANCE.search(docstring)
    if found is None:
        raise ValueError(f"the docstring of method {method!r} does not say 'Source: ... Follows: "
                         f"{' | '.join(FOLLOWS)}'")
    return Provenance(found["source"].rstrip(" .;,"), found["follows"], found["rest"].strip(" .;,"))


# --- measuring agreement ------------------------------------------------------------------------

class Agreement(NamedTuple):
    """How close two stacks of maps are: the lowest Pearson correlation over the images, and the
    largest absolute difference of the maps once each is min-max scaled to [0, 1] (the scale of a
    raw map is arbitrary; this is the difference a reader sees on the normalised map)."""

    pearson: float
    max_abs: float

    def describe(self) -> str:
        return f"Pearson {format_pearson(self.pearson)}, max |difference| {format_bound(self.max_abs)}"


def min_max(maps: torch.Tensor) -> torch.Tensor:
    """Each (h, w) map of a (B, h, w) stack scaled to [0, 1]; a constant map becomes zeros."""
    flat = maps.flatten(1)
    low, span = flat.min(dim=1, keepdim=True).values, flat.max(dim=1, keepdim=True).values - flat.min(dim=1, keepdim=True).values
    return torch.where(span > 0, (flat - low) / torch.where(span > 0, span, 1.0), 0.0).reshape(maps.shape)


def agreement(ours: torch.Tensor, theirs: torch.Tensor) -> Agreement:
    """:class:`Agreement` of two (B, h, w) stacks of maps (raw or normalised, the same kind)."""
    ours, theirs = torch.as_tensor(ours).detach().double().cpu(), torch.as_tensor(theirs).detach().double().cpu()
    if ours.shape != theirs.shape:
        raise ValueError(f"maps to compare have different shapes {tuple(ours.shape)} and {tuple(theirs.shape)}")
    correlations = metrics.pearson(ours.reshape(len(ours), -1), theirs.reshape(len(theirs), -1))
    return Agreement(float(correlations.min()), float((min_max(ours) - min_max(theirs)).abs().max()))


BOUNDS = (1e-7, 1e-6, 1e-5, 1e-4, 1e-3)


def format_bound(value: float) -> str:
    """A difference as the bound it meets ("< 1e-05") when it is float noise, else two digits;
    an exact zero prints as "0"."""
    if value == 0:
        return "0"
    for bound in BOUNDS:
        if value < bound:
            return f"< {bound:.0e}"
    return f"{value:.2g}"


def format_pearson(value: float) -> str:
    """A correlation to three decimals, "> 0.9999" when it rounds to 1."""
    return "> 0.9999" if value > 0.9999 else f"{value:.3f}"


# --- Recipro-CAM (sybyun/ReciproCAM, src/recipro_cam.py) -----------------------------------------

RECIPROCAM_FILTER = ((1 / 16, 1 / 8, 1 / 16), (1 / 8, 1 / 4, 1 / 8), (1 / 16, 1 / 8, 1 / 16))


def top1(scores: torch.Tensor, target) -> torch.Tensor:
    """The class per image: each image's top-1, or ``target`` (one index or one per image)."""
    if target is None:
        return scores.argmax(dim=1)
    return torch.as_tensor(target, device=scores.device).reshape(-1).expand(len(scores))


def reciprocam_mosaic_authors(feature_map: torch.Tensor, gaussian: bool) -> torch.Tensor:
    """The authors' ``_mosaic_feature`` for one image's (K, h, w) features: (h*w, K, h, w).

    Copy k keeps position (i, j) = divmod(k, w). Without ``gaussian`` it holds the features at
    (i, j) and zeros elsewhere; with it, the feature vector at (i, j) times the 3x3 filter
    :data:`RECIPROCAM_FILTER`, placed on the neighbourhood of (i, j) and cut at the border.
    """
    channels, height, width = feature_map.shape
    mosaic = feature_map.new_zeros(height * width, channels, height, width)
    for i in range(height):
        for j in range(width):
            k = i * width + j
            if not gaussian:
                mosaic[k, :, i, j] = feature_map[:, i, j]
                continue
            for di in (-1, 0, 1):
                for dj in (-1, 0, 1):
                    if 0 <= i + di < height and 0 <= j + dj < width:
                        mosaic[k, :, i + di, j + dj] = feature_map[:, i, j] * RECIPROCAM_FILTER[di + 1][dj + 1]
    return mosaic


def reciprocam_authors(model, images: torch.Tensor, target=None, layer: str | None = None, *,
                       gaussian: bool = False) -> torch.Tensor:
    """Recipro-CAM as the authors' code computes it (sybyun/ReciproCAM, ``src/recipro_cam.py``):
    the softmax probability of the class for each copy of :func:`reciprocam_mosaic_authors`,
    reshaped to (h, w). Raw (B, h, w) maps, before the authors' min-max scaling."""
    features, head = model.split(layer)
    maps = []
    with torch.no_grad():
        activations = features(images)
        classes = top1(head(activations), target)
        for b in range(len(images)):
            mosaic = reciprocam_mosaic_authors(activations[b], gaussian)
            probabilities = torch.softmax(head(mosaic), dim=1)[:, classes[b]]
            maps.append(probabilities.reshape(activations.shape[-2:]))
    return torch.stack(maps)


# --- gradients at a layer, the way the authors' code takes them -----------------------------------

def layer_gradients(model, images: torch.Tensor, classes: torch.Tensor, layer: str | None):
    """``(A, dy^c/dA)`` at ``layer`` for a batch: the features run without a graph, the head
    with one, and the class score (before the softmax) is differentiated with respect to A."""
    features, head = model.split(layer)
    with torch.no_grad():
        activations = features(images)
    activations = activations.detach().requires_grad_(True)
    with torch.enable_grad():
        scores = head(activations)
        score = scores.gather(1, classes.view(-1, 1)).sum()
        gradients, = torch.autograd.grad(score, activations)
    return activations.detach(), gradients


def clean_classes(model, images: torch.Tensor, target) -> torch.Tensor:
    with torch.no_grad():
        return top1(model(images), target)


# --- Grad-CAM++ (the closed form, eq. 19 of Chattopadhyay et al.) ---------------------------------

def gradcampp_authors(model, images: torch.Tensor, target=None, layer: str | None = None, *,
                      eps: float = 0.0) -> torch.Tensor:
    """Grad-CAM++'s map in the paper's closed form (Chattopadhyay et al., eq. 19), raw (B, h, w):
    ``alpha = g^2 / (2 g^2 + sum_ab A_ab g^3 + eps)`` where ``g != 0`` (0 elsewhere),
    ``w = sum_ij alpha ReLU(g)``, ``ReLU(sum_n w_n A^n)``. ``eps = 0`` is the paper's formula;
    ``eps = 1e-6`` is what pytorch-grad-cam's ``GradCAMPlusPlus`` adds to the denominator."""
    classes = clean_classes(model, images, target)
    activations, g = layer_gradients(model, images, classes, layer)
    total = activations.sum(dim=(2, 3), keepdim=True)
    denominator = 2 * g**2 + total * g**3 + eps
    alphas = torch.where((g != 0) & (denominator != 0), g**2 / torch.where(denominator != 0, denominator, 1.0), 0.0)
    weights = (alphas * torch.relu(g)).sum(dim=(2, 3))
    return torch.relu((weights[:, :, None, None] * activations).sum(dim=1))


# --- Integrated Grad-CAM (smstrzd/IntegratedGradCAM, Integrated_Grad_CAM.ipynb) --------------------

def integrated_gradcam_authors(model, images: torch.Tensor, target=None, layer: str | None = None, *,
                               baseline: float = 0.0, steps: int = 50, subtract_baseline: bool = False,
                               chunk: int = 10) -> torch.Tensor:
    """Integrated Grad-CAM as the authors' notebook computes it, raw (B, h, w): the stack of
    images ``baseline + (x - baseline) * (i / steps)`` for i in ``range(steps)``, a Grad-CAM
    saliency ``clamp(sum_k mean_ij(dy^c/dA^k) (A^k - A'^k), 0)`` for each (torchray's
    ``gradient_to_grad_cam_saliency``, whose ``A'`` is 0 unless a baseline is passed), summed
    over the stack. ``subtract_baseline``: pass the baseline's activations as ``A'``, as the
    authors' architecture figure draws it. ``chunk``: path points per pass (memory only)."""
    classes = clean_classes(model, images, target)
    maps = []
    for b in range(len(images)):
        x = images[b]
        stack = torch.stack([baseline + (x - baseline) * (i / steps) for i in range(steps)])
        reference = None
        if subtract_baseline:
            reference, _ = layer_gradients(model, torch.full_like(x, baseline)[None], classes[b : b + 1], layer)
        saliency = []
        for start in range(0, steps, chunk):
            part = stack[start : start + chunk]
            activations, gradients = layer_gradients(model, part, classes[b].expand(len(part)), layer)
            weights = gradients.mean(dim=(2, 3), keepdim=True)
            shown = activations - reference if reference is not None else activations
            saliency.append(torch.clamp((shown * weights).sum(dim=1), min=0))
        maps.append(torch.cat(saliency).sum(dim=0))
    return torch.stack(maps)


# --- IS-CAM (Naidu et al., Algorithm 1; torchcam's ISCAM) -------------------------------------------

def iscam_authors(model, images: torch.Tensor, target=None, layer: str | None = None, *,
                  steps: int = 10) -> torch.Tensor:
    """IS-CAM as its authors define it, raw (B, h, w): for each channel k, the mask
    ``M_k = norm(up(A^k))`` accumulated over the steps (the input scaled by the running sum of
    ``i / N``), the class score averaged over the N steps, a softmax over the channels of the
    increases over the clean score, then ``ReLU(sum_k w_k A^k)``. A constant channel has no
    mask and no weight. Written channel by channel from the paper's algorithm."""
    features, _ = model.split(layer)
    maps = []
    with torch.no_grad():
        activations = features(images)
        scores = model(images)
        classes = top1(scores, target)
        for b in range(len(images)):
            upsampled = torch.nn.functional.interpolate(activations[b : b + 1], size=images.shape[-2:],
                                                        mode="bilinear", align_corners=False)[0]
            increases, kept = [], []
            for k in range(len(upsampled)):
                channel = activations[b, k]
                if channel.max() - channel.min() <= 1e-6 * channel.abs().max():
                    continue  # a constant channel: no mask
                low, high = upsampled[k].min(), upsampled[k].max()
                mask = (upsampled[k] - low) / (high - low)
                coefficient, total = 0.0, 0.0
                for i in range(1, steps + 1):
                    coefficient += i / steps
                    total += float(model((images[b] * mask * coefficient)[None])[0, classes[b]])
                increases.append(total / steps - float(scores[b, classes[b]]))
                kept.append(k)
            weights = torch.softmax(torch.tensor(increases), dim=0).to(activations)
            maps.append(torch.relu((weights[:, None, None] * activations[b, kept]).sum(dim=0)))
    return torch.stack(maps)


# --- Smooth Grad-CAM++: what the guard on the alphas' denominator prevents -------------------------

class Stability(NamedTuple):
    """Smooth Grad-CAM++ with and without its guard, when its noise is multiplied by ``1 + f``
    for several tiny factors f:

    ``non_positive_share``: of the positions with a positive averaged gradient, the share whose
    unguarded denominator ``2 <g^2> + sum_ab A_ab <g^3>`` is <= 0; ``largest_alpha``: the largest
    unguarded |alpha| there; ``unguarded_self`` / ``guarded_self``: the lowest Pearson correlation
    of each map with itself under the rescaled noises; ``guarded_vs_unguarded``: of the two maps.
    Which tiny factor makes an unguarded denominator cross zero depends on float rounding (the
    memory layout, the kernels); the lowest correlation over several factors does not, much.
    """

    non_positive_share: float
    largest_alpha: float
    unguarded_self: float
    guarded_self: float
    guarded_vs_unguarded: float


def smoothgradcampp_unguarded(mean_g, mean_g2, mean_g3, activations):
    """Smooth Grad-CAM++'s weights with the paper's alphas as printed (second-derivative
    numerator), no guard: ``alpha = <g^2> / (2 <g^2> + sum_ab A_ab <g^3>)`` wherever the
    denominator is not exactly 0. Returns the weights, the denominators and the alphas."""
    denominator = 2 * mean_g2 + activations.sum(dim=(-2, -1), keepdim=True) * mean_g3
    alphas = torch.where(denominator != 0, mean_g2 / torch.where(denominator != 0, denominator, 1.0), 0.0)
    return (alphas * torch.relu(mean_g)).sum(dim=(-2, -1)), denominator, alphas


STABILITY_FACTORS = tuple(k * 1e-6 for k in range(1, 9))  # the noise multiplied by 1 + k 1e-6, k = 1..8


def smoothgradcampp_stability(model, images: torch.Tensor, layer: str | None, *, sigma: float = 0.07,
                              samples: int = 4, seed: int = 0, factors=STABILITY_FACTORS) -> Stability:
    """Measure :class:`Stability` on ``images``: the noise of the registered method (a seeded
    generator, ``sigma`` of each image's range), drawn again and multiplied by ``1 + f`` for
    each f in ``factors``."""
    def maps(scale):
        classes = clean_classes(model, images, None)
        activations, _ = layer_gradients(model, images, classes, layer)
        generator = torch.Generator().manual_seed(seed)
        stds = smoothing.noise_scale(images, sigma) * scale
        guarded, unguarded, shares, largest = [], [], [], []
        for b in range(len(images)):
            noisy = smoothing.noisy_copies(images[b], stds[b].cpu(), samples, generator)
            _, gradients = layer_gradients(model, noisy, classes[b].expand(samples), layer)
            mean_g, mean_g2, mean_g3 = gradients.mean(0), gradients.pow(2).mean(0), gradients.pow(3).mean(0)
            weights, denominator, alphas = smoothgradcampp_unguarded(mean_g, mean_g2, mean_g3, activations[b])
            kept = mean_g > 0
            shares.append(float((denominator[kept] <= 0).double().mean()))
            largest.append(float(alphas[kept].abs().max()))
            unguarded.append(torch.relu((weights[:, None, None] * activations[b]).sum(0)))
            guarded.append(torch.relu((smoothing.smoothgradcampp_weights(mean_g, mean_g2, mean_g3, activations[b])
                                       [:, None, None] * activations[b]).sum(0)))
        return torch.stack(guarded), torch.stack(unguarded), max(shares), max(largest)

    guarded, unguarded, share, largest = maps(1.0)
    again = [maps(1.0 + factor)[:2] for factor in factors]
    return Stability(share, largest, min(agreement(unguarded, u).pearson for _, u in again),
                     min(agreement(guarded, g).pearson for g, _ in again), agreement(guarded, unguarded).pearson)


def format_ceiling(value: float, ceilings=(0.5, 0.9, 0.99)) -> str:
    """A correlation far from 1 as the smallest of ``ceilings`` it stays below ("< 0.5"), one
    near 1 as :func:`format_pearson` does: the verdict, without digits that rounding moves."""
    for ceiling in ceilings:
        if value < ceiling:
            return f"< {ceiling:g}"
    return format_pearson(value)


def format_magnitude(value: float) -> str:
    """A large positive number as the power of ten it exceeds ("> 1e+03")."""
    return f"> {10 ** math.floor(math.log10(value)):.0e}" if value >= 1 else f"{value:.2g}"


# --- the metrics' official code (aimagelab/ADCC, eclique/RISE) --------------------------------------

def coherency_official(saliency: torch.Tensor, again: torch.Tensor) -> float:
    """Coherency as aimagelab/ADCC's ``metrics/coherency.py`` computes it for one image: 0 if
    either map contains NaN, else ``(pearsonr(A, B) + 1) / 2`` with scipy's ``pearsonr``, which
    is NaN (with a warning) when a map is constant."""
    import warnings

    from scipy import stats

    first, second = saliency.detach().double().flatten().cpu(), again.detach().double().flatten().cpu()
    if first.isnan().any() or second.isnan().any():
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns that the input is constant
        correlation = stats.pearsonr(first.numpy(), second.numpy())[0]
    return float((correlation + 1) / 2)


def rise_blur_kernel(size: int = 11, sigma: float = 5.0) -> torch.Tensor:
    """eclique/RISE's ``gkern``: scipy's ``gaussian_filter`` (default mirrored boundaries) of a
    single pixel in the middle of a ``size`` x ``size`` grid, (size, size)."""
    from scipy.ndimage import gaussian_filter

    delta = torch.zeros(size, size, dtype=torch.float64)
    delta[size // 2, size // 2] = 1
    return torch.from_numpy(gaussian_filter(delta.numpy(), sigma)).float()


def rise_insertion_start(model, images: torch.Tensor, size: int = 11, sigma: float = 5.0) -> torch.Tensor:
    """The insertion canvas of eclique/RISE (``Evaluation.ipynb``): :func:`rise_blur_kernel`
    convolved, channel by channel and with zero padding, with the *normalised* image, returned
    in [0, 1] pixel space. ``model``'s first stage is its normalisation (``camsurvey.models``)."""
    normalise = model[0]
    mean, std = normalise.mean.to(images), normalise.std.to(images)
    kernel = rise_blur_kernel(size, sigma).to(images)[None, None].expand(3, 1, size, size)
    blurred = torch.nn.functional.conv2d((images - mean) / std, kernel, padding=size // 2, groups=3)
    return (blurred * std + mean).clamp(0, 1)


def rise_deletion_end(model, images: torch.Tensor) -> torch.Tensor:
    """What eclique/RISE deletes to: the zeros of the normalised image, the dataset's mean colour."""
    return model[0].mean.to(images).expand_as(images).clone()


# --- the gradient family, as the authors' code writes each weighting ------------------------------

def cam_authors(model, images: torch.Tensor, target=None, layer: str | None = None) -> torch.Tensor:
    """CAM as Zhou et al.'s code (zhoubolei/CAM, ``returnCAM``) forms it: the class's row of the
    linear layer times the feature maps, ``W_c . features``, raw (B, h, w); the head must be GAP
    and one linear layer, whose weights are read off the model's last stage."""
    features, head = model.split(layer)
    linear = [m for m in head.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        activations = features(images)
        classes = top1(head(activations), target)
        return torch.einsum("bk,bkhw->bhw", linear.weight[classes], activations)


def gradient_cam_authors(kind: str, model, images: torch.Tensor, target=None, layer: str | None = None) -> torch.Tensor:
    """Grad-CAM, XGrad-CAM or Layer-CAM, raw (B, h, w), as their authors write the weighting:

    * ``"gradcam"`` (Selvaraju et al., eqs. 1-2): ``ReLU(sum_k mean_ij(g^k) A^k)``;
    * ``"xgradcam"`` (Fu0511/XGrad-CAM, ``XGrad-CAM.py``): ``X_weights = sum_ij(g A) / (sum_ij A + 1e-6)``
      and ``ReLU(sum_k X_weights_k A^k)``;
    * ``"layercam"`` (PengtaoJiang/LayerCAM-jittor, ``cam/layercam.py``): ``ReLU(sum_k A^k ReLU(g^k))``.
    """
    classes = clean_classes(model, images, target)
    activations, g = layer_gradients(model, images, classes, layer)
    if kind == "gradcam":
        return torch.relu((g.mean(dim=(2, 3), keepdim=True) * activations).sum(dim=1))
    if kind == "xgradcam":
        weights = (g * activations).sum(dim=(2, 3), keepdim=True) / (activations.sum(dim=(2, 3), keepdim=True) + 1e-6)
        return torch.relu((weights * activations).sum(dim=1))
    if kind == "layercam":
        return torch.relu((activations * torch.relu(g)).sum(dim=1))
    raise ValueError(f"kind must be 'gradcam', 'xgradcam' or 'layercam', got {kind!r}")


# --- the chapters' faithfulness tables ------------------------------------------------------------

class Row(NamedTuple):
    """One line of a faithfulness table: what we compute, what the authors compute (or the
    reference we compare with), and the measured difference ("" where nothing is measured)."""

    subject: str
    ours: str
    theirs: str
    measured: str


TABLE_HEADER = ("", "ours", "the authors' (or the reference)", "measured")
PROVENANCE_HEADER = ("", "follows", "source", "")


def format_rows(rows: list[Row], header=TABLE_HEADER) -> str:
    """A plain-text table of :class:`Row`, one line each, under ``header``."""
    table = [tuple(header), *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in table)


def short_source(source: str) -> str:
    """A source without its closing parenthesis of details: ``"Zhou et al., CVPR 2016, Sec. 2"``."""
    return re.split(r" \(|; ", source, maxsplit=1)[0].replace("``", "")


def provenance_rows(methods) -> list[Row]:
    """For each method, how it follows its source (:func:`provenance`), with nothing measured."""
    return [Row(method, provenance(method).follows, short_source(provenance(method).source), "") for method in methods]


def cams_rows(model, images: torch.Tensor, layer: str | None = None, shallow_layer: str = "stem") -> list[Row]:
    """The CAM chapter's table: each Section II method we can check against its authors' formula
    or code, at ``layer`` (and Grad-CAM++ also at ``shallow_layer``), on ``images``."""
    layer_name = layer or model.default_layer

    def ours(method, where=layer, **params):
        return METHODS[method].function(model, images, None, where, **params)[0]

    rows = []
    if layer_name == model.default_layer:  # CAM needs GAP + linear after the layer
        rows.append(Row("cam", f"eq. 1 at {layer_name}", "W_c . features (zhoubolei/CAM)",
                        agreement(ours("cam"), cam_authors(model, images, None, layer)).describe()))
    for method, source in (("gradcam", "eqs. 1-2 of the paper"), ("xgradcam", "Fu0511/XGrad-CAM (eps 1e-6)"),
                           ("layercam", "PengtaoJiang/LayerCAM-jittor")):
        rows.append(Row(method, f"at {layer_name}", source,
                        agreement(ours(method), gradient_cam_authors(method, model, images, None, layer)).describe()))
    for where in (layer, shallow_layer):
        name = where or model.default_layer
        mine = ours("gradcam++", where)
        rows.append(Row("gradcam++", f"closed form at {name}", "eq. 19 of the paper",
                        agreement(mine, gradcampp_authors(model, images, None, where)).describe()))
        rows.append(Row("gradcam++", f"closed form at {name}", "eq. 19 + eps 1e-6 (pytorch-grad-cam)",
                        agreement(mine, gradcampp_authors(model, images, None, where, eps=1e-6)).describe()))
    point, gaussian = (reciprocam_authors(model, images, None, layer, gaussian=g) for g in (False, True))
    rows += [Row("reciprocam", 'kernel="point" (default)', "point mask (sybyun/ReciproCAM, default)",
                 agreement(ours("reciprocam", kernel="point"), point).describe()),
             Row("reciprocam", 'kernel="gaussian"', "Gaussian option (sybyun/ReciproCAM)",
                 agreement(ours("reciprocam", kernel="gaussian"), gaussian).describe()),
             Row("reciprocam", 'kernel="gaussian-window" (ours)', "Gaussian option (sybyun/ReciproCAM)",
                 agreement(ours("reciprocam", kernel="gaussian-window"), gaussian).describe())]
    return rows


def smoothing_rows(model, image: torch.Tensor, *, layer: str = "block10", steps: int = 8, score_layer: str = "block1",
                   score_steps: int = 4, stability_layer: str = "stem", sigma: float = 0.3) -> list[Row]:
    """The smoothing chapter's table, on ``image`` (1, 3, H, W): Integrated Grad-CAM at ``layer``
    with ``steps`` path points in both of the authors' forms, IS-CAM at ``score_layer``, and what
    Smooth Grad-CAM++'s guard does at ``stability_layer`` with noise ``sigma``."""
    def ours(method, where, **params):
        return METHODS[method].function(model, image, None, where, **params)[0]

    code = integrated_gradcam_authors(model, image, None, layer, steps=steps)
    figure = integrated_gradcam_authors(model, image, None, layer, steps=steps, subtract_baseline=True)
    rows = [Row("integrated-gradcam", f"default at {layer}", "notebook (smstrzd/IntegratedGradCAM)",
                agreement(ours("integrated-gradcam", layer, steps=steps), code).describe()),
            Row("integrated-gradcam", "subtract_baseline=True", "architecture figure (A(x') subtracted)",
                agreement(ours("integrated-gradcam", layer, steps=steps, subtract_baseline=True), figure).describe()),
            Row("integrated-gradcam", "the notebook's form", "the figure's form", agreement(code, figure).describe())]
    theirs = iscam_authors(model, image, None, score_layer, steps=score_steps)
    rows += [Row("iscam", f"default at {score_layer}", "accumulated scales (paper, torchcam#13)",
                 agreement(ours("iscam", score_layer, steps=score_steps), theirs).describe()),
             Row("iscam", "accumulate=False (ours)", "accumulated scales (paper, torchcam#13)",
                 agreement(ours("iscam", score_layer, steps=score_steps, accumulate=False), theirs).describe())]
    stability = smoothgradcampp_stability(model, image, stability_layer, sigma=sigma)
    rows += [Row("smoothgradcam++", f"unguarded, at {stability_layer}", "itself, noise x (1 + k 1e-6), k = 1..8",
                 f"lowest Pearson {format_ceiling(stability.unguarded_self)}; {100 * stability.non_positive_share:.1f} % "
                 f"denominators <= 0, alphas {format_magnitude(stability.largest_alpha)}"),
             Row("smoothgradcam++", f"guarded (ours), at {stability_layer}", "itself, noise x (1 + k 1e-6), k = 1..8",
                 f"lowest Pearson {format_ceiling(stability.guarded_self)}")]
    return rows


def metrics_rows(model, images: torch.Tensor, saliency: torch.Tensor, target, *, steps: int = 16) -> list[Row]:
    """The metrics chapter's table: insertion and deletion AUC (means over ``images``, one map
    each in ``saliency``, the same pixel order) from our canvases and from eclique/RISE's, and
    the Coherency of a constant map in our code and in aimagelab/ADCC's."""
    def auc(kind, baseline):
        curve = metrics.insertion_auc if kind == "insertion" else metrics.deletion_auc
        return curve(model, images, saliency, target, steps=steps, baseline=baseline).mean

    rows = [Row("insertion", f"Gaussian blur start: AUC {auc('insertion', None):.3f}",
                f"RISE's near-box blur, mean-colour border: AUC {auc('insertion', rise_insertion_start(model, images)):.3f}",
                "the same pixel order"),
            Row("deletion", f"delete to black: AUC {auc('deletion', None):.3f}",
                f"RISE deletes to the mean colour: AUC {auc('deletion', rise_deletion_end(model, images)):.3f}",
                "the same pixel order")]
    constant = torch.ones(1, *images.shape[-2:])
    ours = metrics.coherency(model, images[:1], constant, lambda x, t: constant, target[:1] if target is not None else None)
    rows.append(Row("coherency", f"constant map: {ours.mean:g}",
                    f"constant map: {coherency_official(constant, constant)} (aimagelab/ADCC)", "our choice: 0"))
    return rows


# --- EVET: which transformations keep the prediction ----------------------------------------------

def transform_table(model, images: torch.Tensor, labels, transforms) -> str:
    """For each transformation (names or :class:`~camsurvey.methods.helpers.Transform`): the softmax
    probability, on the transformed image, of the class the model predicts on the original, one
    column per image (``labels``), and how many images keep that class as their top-1."""
    from ..methods import helpers

    resolved = helpers.resolve_transforms(list(transforms))
    with torch.no_grad():
        original = model(images).argmax(dim=1)
        probabilities = helpers.transformed_class_probabilities(model, images, resolved, original)
        kept = torch.stack([model(t.forward(images)).argmax(dim=1) == original for t in resolved])
    header = ["", *labels, "top-1 kept"]
    body = [[t.name, *(f"{p:.3f}" for p in row.tolist()), f"{int(k.sum())} of {len(images)}"]
            for t, row, k in zip(resolved, probabilities, kept)]
    return format_text([header, *body])


def scene_transform_table(model, scenarios, n: int, transforms, seed: int = 0) -> str:
    """For each transformation, per scenario of the scene dataset (``n`` scenes each): the share
    of scenes whose top-1 class the transformed scene keeps."""
    from ..datasets import scenes
    from ..methods import helpers

    resolved = helpers.resolve_transforms(list(transforms))
    shares = {}
    with torch.no_grad():
        for scenario in scenarios:
            batch = scenes.generate(scenario, n, seed=seed).images
            original = model(batch).argmax(dim=1)
            shares[scenario] = [float((model(t.forward(batch)).argmax(dim=1) == original).double().mean())
                                for t in resolved]
    header = ["", *scenarios]
    body = [[t.name, *(f"{shares[s][i]:.2f}" for s in scenarios)] for i, t in enumerate(resolved)]
    return format_text([header, *body])


def format_text(table: list[list[str]]) -> str:
    """Rows of strings as aligned columns: the first left-aligned, the others right-aligned."""
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return "\n".join("  ".join(cell.rjust(width) if i else cell.ljust(width)
                               for i, (cell, width) in enumerate(zip(row, widths))).rstrip() for row in table)
