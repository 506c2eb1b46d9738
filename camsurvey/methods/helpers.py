"""Helper methods (survey Section IV): EVET and SESS, wrappers around any base method.

Neither helper has a CAM formula of its own. Each runs a *base* method of the registry
(``base="gradcam"``, ``"layercam"``, ...) on several versions of the input and fuses the
maps it gets back:

* **EVET** (Oh et al.): the input under a set of image transformations; each map is
  carried back to the original pixel grid by the inverse transformation, then the maps are
  averaged, each weighted by the class probability of its transformed input. A
  :class:`Transform` knows both directions, so intensity transformations can join the
  geometric ones (their inverse on a map is the identity). EVET is **our reading**: the
  paper's text was not reachable, only its abstract (transform the input, explain each copy
  with the unmodified base method, weight the regions found important across the
  transformations). Its default transformations are chosen so that the model keeps its
  prediction (:data:`EVET_TRANSFORMS`): a transformation under which the class is no longer
  seen (rotations by 90 degrees took the probability of two bundled photos' class from about
  0.5 to below 0.02) makes the fused map average explanations of other classes.
* **SESS** (Tursun et al.): the input resized to several scales and cut into windows by a
  sliding window; the patches are scored, the weakest ones are dropped (pre-filtering), the
  base map of each remaining patch is weighted by the patch's normalised class probability
  (channel-wise weights), pasted back where the patch came from, and the maps are averaged
  per pixel over the patches that give that pixel saliency (spatially weighted average).

Both cost a multiple of their base method's passes; :func:`evet_cost` and :func:`sess_cost`
count them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..common import batches, check_batch_size, check_int
from ..plumbing import finish, resolve_target, upsample
from .registry import METHODS, register

# --- shared: the base method ----------------------------------------------------------------


def base_method(base):
    """The registered base method ``base``; helpers cannot wrap helpers."""
    if not isinstance(base, str) or base not in METHODS:
        choices = sorted(name for name, entry in METHODS.items() if entry.family != "helper")
        raise ValueError(f"unknown base method {base!r}; choose one of {choices}")
    entry = METHODS[base]
    if entry.family == "helper":
        raise ValueError(f"base method {base!r} is itself a helper; wrap a CAM method such as 'gradcam' instead")
    return entry


def _check_base_params(entry, base_params) -> dict:
    if base_params is None:
        return {}
    if not isinstance(base_params, dict):
        raise TypeError(f"base_params must be a dict of the base method's parameters, got {type(base_params).__name__}")
    unknown = set(base_params) - set(entry.params)
    if unknown:
        raise ValueError(f"base method {entry.name!r} has no parameter {sorted(unknown)}; "
                         f"its parameters are {entry.params or 'none'}")
    return dict(base_params)


def base_saliency(entry, model, images, target, layer, base_params) -> torch.Tensor:
    """``norm(up(L))`` of the base method for a batch: (B, H, W) maps in [0, 1] at the input's size."""
    maps, _ = entry.function(model, images, target, layer, **base_params)
    return finish(maps, images.shape[-2:])


def top1_target(model, images, target) -> torch.Tensor:
    """The class index per image, fixed once on the untransformed input (one forward pass)."""
    with torch.no_grad():
        scores = model(images)
    return resolve_target(target, scores)


# --- EVET -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Transform:
    """An image transformation for EVET: ``forward`` acts on images (B, 3, H, W) in [0, 1],
    ``inverse`` carries a map (B, H', W') made on the transformed image back to the
    original pixel grid. For an intensity transformation ``inverse`` is the identity."""

    name: str
    forward: Callable[[torch.Tensor], torch.Tensor]
    inverse: Callable[[torch.Tensor], torch.Tensor]

    def __repr__(self) -> str:
        return f"Transform({self.name!r})"


def _same(x):
    return x


def rotation(quarter_turns: int) -> Transform:
    """Rotation by ``90 * quarter_turns`` degrees (counter-clockwise); exact on the pixel grid."""
    k = int(quarter_turns) % 4
    return Transform(f"rot{90 * k}",
                     lambda images: torch.rot90(images, k, dims=(-2, -1)),
                     lambda maps: torch.rot90(maps, -k, dims=(-2, -1)))


def contrast(factor: float) -> Transform:
    """Contrast adjustment about each image's mean grey level (an intensity transformation):
    ``clip(mean + factor (x - mean), 0, 1)``. It moves no pixel, so its inverse on a map is
    the identity."""
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not factor > 0:
        raise ValueError(f"contrast factor must be a positive number, got {factor!r}")

    def forward(images):
        mean = images.mean(dim=(-3, -2, -1), keepdim=True)
        return (mean + factor * (images - mean)).clamp(0, 1)

    return Transform(f"contrast{factor:g}", forward, _same)


TRANSFORMS: dict[str, Transform] = {
    "identity": Transform("identity", _same, _same),
    "hflip": Transform("hflip", lambda images: images.flip(-1), lambda maps: maps.flip(-1)),
    "vflip": Transform("vflip", lambda images: images.flip(-2), lambda maps: maps.flip(-2)),
    "rot90": rotation(1),
    "rot180": rotation(2),
    "rot270": rotation(3),
}



def numpy_intensity(name: str, function: Callable) -> Transform:
    """An intensity transformation from ``function``, a map of one (H, W, 3) float image in [0, 1]
    to another (e.g. from ``skimage.exposure``), applied image by image; its inverse on a map is
    the identity."""

    def forward(images):
        pixels = images.detach().permute(0, 2, 3, 1).double().cpu().numpy()
        out = torch.stack([torch.from_numpy(np.ascontiguousarray(function(image), dtype=np.float64))
                           for image in pixels]).permute(0, 3, 1, 2)
        return torch.nan_to_num(out, nan=0.0).clamp(0, 1).to(images.dtype).to(images.device)

    return Transform(name, forward, _same)


def equalize() -> Transform:
    """Histogram equalisation (``skimage.exposure.equalize_hist``): one mapping for all three
    channels, computed from the pooled histogram of the image, so the channels keep their order."""
    def pooled(image):
        import warnings

        from skimage import exposure

        with warnings.catch_warnings():  # pooling the channels is intended here
            warnings.filterwarnings("ignore", message="This might be a color image")
            return exposure.equalize_hist(image)

    return numpy_intensity("equalize", pooled)


def adaptive_equalize(clip_limit: float = 0.01) -> Transform:
    """Contrast-limited adaptive histogram equalisation, CLAHE (``skimage.exposure.equalize_adapthist``):
    equalisation in tiles of 1/8 of the image side, on the HSV value channel."""
    def clahe(image):
        from skimage import exposure

        return exposure.equalize_adapthist(image, clip_limit=clip_limit)

    return numpy_intensity("adaptive_equalize", clahe)


def adaptive_filter(size: int = 3) -> Transform:
    """Adaptive (local Wiener) filtering: in a ``size`` x ``size`` window with local mean m and
    variance v, each pixel becomes ``m + max(0, v - n) / v * (x - m)``, n being the channel's mean
    local variance; flat regions are smoothed, edges kept."""
    check_int(size, "the adaptive filter's window size", minimum=3)
    if size % 2 == 0:
        raise ValueError(f"the adaptive filter's window size must be odd, got {size!r}")

    def local_mean(x):
        return F.avg_pool2d(F.pad(x, [size // 2] * 4, mode="replicate"), size, stride=1)

    def forward(images):
        mean = local_mean(images)
        variance = (local_mean(images * images) - mean * mean).clamp_min(0)
        noise = variance.mean(dim=(-2, -1), keepdim=True)
        gain = torch.where(variance > noise, (variance - noise) / variance.clamp_min(1e-12), torch.zeros_like(variance))
        return (mean + gain * (images - mean)).clamp(0, 1)

    return Transform("adaptive_filter", forward, _same)


# intensity transformations for EVET (survey Section VI.B): they change pixel values, move no pixel
INTENSITY_TRANSFORMS: dict[str, Transform] = {
    "contrast": Transform("contrast", contrast(1.5).forward, _same),
    "contrast0.75": contrast(0.75),
    "contrast1.25": contrast(1.25),
    "equalize": equalize(),
    "adaptive_equalize": adaptive_equalize(),
    "adaptive_filter": adaptive_filter(),
}

# EVET's default: the original, the one geometric transformation that kept EfficientNet-Lite0's
# top-1 class on every bundled photo (a horizontal flip; vertical flips and rotations by 90, 180
# and 270 degrees lost it on three of five), and three intensity transformations that kept it
# too (the evet chapter prints the probabilities of every candidate on the photos and the scenes)
EVET_TRANSFORMS = ("identity", "hflip", "contrast0.75", "contrast1.25", "adaptive_filter")
# the original and the four exact geometric transformations (EVET's default before issue 17; Section VI.B compares
# them with intensity transformations)
GEOMETRIC_TRANSFORMS = ("identity", "hflip", "rot90", "rot180", "rot270")
EVET_WEIGHTINGS = ("probability", "mean")


def resolve_transforms(transforms) -> list[Transform]:
    """Names from :data:`TRANSFORMS` or :data:`INTENSITY_TRANSFORMS` and/or :class:`Transform` objects, as a list."""
    if isinstance(transforms, (str, Transform)) or not isinstance(transforms, (list, tuple)):
        raise TypeError(f"transforms must be a list or tuple of names from {sorted(TRANSFORMS)} "
                        f"or Transform objects, got {transforms!r}")
    if len(transforms) == 0:
        raise ValueError("transforms is empty; give at least one, e.g. ('identity',)")
    resolved = []
    for transform in transforms:
        if isinstance(transform, Transform):
            resolved.append(transform)
        elif isinstance(transform, str) and transform in TRANSFORMS:
            resolved.append(TRANSFORMS[transform])
        elif isinstance(transform, str) and transform in INTENSITY_TRANSFORMS:
            resolved.append(INTENSITY_TRANSFORMS[transform])
        else:
            raise ValueError(f"unknown transform {transform!r}; choose from {sorted(TRANSFORMS)}, "
                             f"{sorted(INTENSITY_TRANSFORMS)} or pass a Transform")
    return resolved


def evet_fusion(aligned_maps: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """EVET's fusion: the weighted mean over transformations (dim 0) of the maps, each in [0, 1]
    and already carried back to the original grid, ``sum_t w_t M_t / sum_t w_t`` per image
    (``weights``: (T, B); ``None``, or weights summing to 0, give the plain mean). A region
    salient under many transformations keeps a high value, one salient under few is damped."""
    if weights is None:
        return aligned_maps.mean(dim=0)
    weights = weights.to(aligned_maps)
    weights = torch.where(weights.sum(dim=0) > 0, weights, torch.ones_like(weights))  # no weight at all: the mean
    shares = weights / weights.sum(dim=0)
    return (shares[..., None, None] * aligned_maps).sum(dim=0)


def transformed_class_probabilities(model, images: torch.Tensor, transforms, target: torch.Tensor) -> torch.Tensor:
    """The softmax probability of each image's class ``target`` (fixed on the original) on each
    transformed input: (T, B), one forward pass per transformation. How well a transformation
    keeps the model's prediction, and EVET's weight for the copy."""
    with torch.no_grad():
        return torch.stack([torch.softmax(model(transform.forward(images)), dim=1).gather(1, target.view(-1, 1))[:, 0]
                            for transform in resolve_transforms(transforms)])


def check_weighting(weighting) -> str:
    if weighting not in EVET_WEIGHTINGS:
        raise ValueError(f"weighting must be one of {EVET_WEIGHTINGS} ('probability': each transformed copy's map "
                         f"counts as much as the copy keeps the class), got {weighting!r}")
    return weighting


def evet_cost(shape, *, base, transforms, base_params, weighting, **_) -> dict:
    """Passes per image: the base method's, once per transformation, one forward pass to fix the
    class and, for ``weighting="probability"``, one forward pass per transformation."""
    entry = base_method(base)
    count = len(resolve_transforms(transforms))
    base_cost = entry.cost_at(shape, **_check_base_params(entry, base_params))
    extra = 1 + (count if check_weighting(weighting) == "probability" else 0)
    return {kind: count * n + (extra if kind == "forward" else 0) for kind, n in base_cost.items()}


@register("evet", family="helper", section="IV", equation="EVET: weighted mean of inverse-transformed maps",
          reference="oh2021evet", cost=evet_cost, needs_gradients=True)
def evet(model, images, target=None, layer=None, *, base="gradcam", transforms=EVET_TRANSFORMS,
         weighting="probability", base_params=None):
    """EVET (Oh et al.): the base map of every transformed input, carried back by the inverse
    transformation and fused (:func:`evet_fusion`), each copy weighted by the softmax probability
    of the class on it (``weighting="probability"``; ``"mean"`` for the plain mean).
    ``transforms``: names from :data:`TRANSFORMS` and :data:`INTENSITY_TRANSFORMS` or
    :class:`Transform` objects; the class is fixed on the original input.

    Source: Oh et al., 2021, known to us through its abstract only (the paper's text was not
    reachable from this project; we found no public implementation). Follows: our reading. The
    transformations and the fusion are our choices: the default set keeps the model's prediction
    on every bundled photo (:data:`EVET_TRANSFORMS`), and the probability weights, the
    calibration SESS's authors give their patches, let a copy that loses the class count less.
    A transformation under which the model sees another class (a rotated photo) would otherwise
    add the explanation of another decision.
    """
    entry = base_method(base)
    base_params = _check_base_params(entry, base_params)
    transforms = resolve_transforms(transforms)
    check_weighting(weighting)
    target = top1_target(model, images, target)
    aligned = []
    for transform in transforms:
        transformed = transform.forward(images)
        saliency = base_saliency(entry, model, transformed, target, layer, base_params)
        back = transform.inverse(saliency)
        if back.shape != images.shape[:1] + images.shape[-2:]:
            raise ValueError(f"transform {transform.name!r}: its inverse returned maps of shape {tuple(back.shape)}, "
                             f"expected {(images.shape[0], *images.shape[-2:])}")
        aligned.append(back)
    weights = (transformed_class_probabilities(model, images, transforms, target)
               if weighting == "probability" else None)
    return evet_fusion(torch.stack(aligned), weights), target


# --- SESS -------------------------------------------------------------------------------------

SESS_SCALES = tuple(224 + 64 * i for i in range(12))  # 224, 288, ..., 928 (the authors' code)


def resize_shorter_side(images: torch.Tensor, scale: int) -> torch.Tensor:
    """Resize (B, 3, H, W) so that the shorter side is ``scale`` pixels, keeping the aspect ratio."""
    height, width = images.shape[-2:]
    factor = scale / min(height, width)
    size = (max(scale, round(height * factor)), max(scale, round(width * factor)))
    if size == (height, width):
        return images
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)


def window_starts(length: int, window: int, step: int) -> list[int]:
    """Start offsets of a sliding window along one axis; the last window ends at the border."""
    starts = list(range(0, length - window, step)) + [length - window]
    return sorted(set(starts))


def sess_windows(height: int, width: int, window: int, step: int) -> list[tuple[int, int]]:
    """Top-left corners (y, x) of every window of a ``height`` x ``width`` image."""
    return [(y, x) for y in window_starts(height, window, step) for x in window_starts(width, window, step)]


def sess_patch_count(scales, window: int, step: int, height: int = 224, width: int = 224) -> int:
    """How many patches SESS cuts from an image of ``height`` x ``width`` (square by default)."""
    total = 0
    for scale in scales:
        factor = scale / min(height, width)
        total += len(sess_windows(max(scale, round(height * factor)), max(scale, round(width * factor)), window, step))
    return total


def sess_kept(count: int, pre_filter: float) -> int:
    """Patches left after pre-filtering away the fraction ``pre_filter`` with the lowest scores (at least one)."""
    return max(1, count - int(count * pre_filter))


def sess_pre_filter(probabilities: torch.Tensor, pre_filter: float) -> torch.Tensor:
    """Indices of the patches kept: the highest class probabilities, ties by patch order."""
    order = torch.sort(probabilities, descending=True, stable=True).indices
    return order[: sess_kept(len(probabilities), pre_filter)]


def sess_channel_weights(probabilities: torch.Tensor) -> torch.Tensor:
    """Channel-wise weights: each patch's class probability over the largest one (the best patch gets 1)."""
    return probabilities / probabilities.max().clamp_min(1e-12)


def sess_spatial_average(total: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """Spatially weighted average: the sum of the maps at a pixel over the number of maps that are
    salient there (> threshold), 0 where none is."""
    return torch.where(count > 0, total / count.clamp_min(1), torch.zeros_like(total))


def gaussian_smoothing(maps: torch.Tensor, size: int = 11, sigma: float = 5.0) -> torch.Tensor:
    """A ``size`` x ``size`` Gaussian blur of (B, H, W) maps, borders mirrored."""
    offsets = torch.arange(size, dtype=maps.dtype, device=maps.device) - (size - 1) / 2
    kernel = torch.exp(-offsets.pow(2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    padded = F.pad(maps.unsqueeze(1), [size // 2] * 4, mode="reflect")
    blurred = F.conv2d(padded, kernel.view(1, 1, 1, -1))
    return F.conv2d(blurred, kernel.view(1, 1, -1, 1))[:, 0]


def _check_sess_params(scales, window, step, pre_filter, threshold, batch_size):
    check_int(window, "window")
    check_int(step, "step")
    check_batch_size(batch_size)
    if isinstance(scales, (int, str)) or not isinstance(scales, (list, tuple)) or len(scales) == 0:
        raise ValueError(f"scales must be a non-empty list of image sizes in pixels (>= window), got {scales!r}")
    for scale in scales:
        check_int(scale, "each scale")
        if scale < window:
            raise ValueError(f"scale {scale} is smaller than the window ({window} pixels); "
                             "every scale must be >= window")
    if isinstance(pre_filter, bool) or not isinstance(pre_filter, (int, float)) or not 0 <= pre_filter < 1:
        raise ValueError(f"pre_filter is the fraction of patches dropped and must lie in [0, 1), got {pre_filter!r}")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold < 1:
        raise ValueError(f"threshold must lie in [0, 1), got {threshold!r}")


def sess_cost(shape, *, base, scales, window, step, pre_filter, base_params, **_) -> dict:
    """Passes per (square) image: 1 forward for the class, 1 forward per patch (pre-filtering
    scores) and the base method's passes for every patch kept."""
    entry = base_method(base)
    patches = sess_patch_count(scales, window, step)
    kept = sess_kept(patches, pre_filter)
    base_cost = entry.cost_at(shape, **_check_base_params(entry, base_params))
    return {kind: kept * n + (1 + patches if kind == "forward" else 0) for kind, n in base_cost.items()}


@register("sess", family="helper", section="IV", equation="SESS: channel-wise weights + spatially weighted average",
          reference="tursun2022sess",
          cost=sess_cost, needs_gradients=True)
def sess(model, images, target=None, layer=None, *, base="gradcam", scales=SESS_SCALES, window=224, step=224,
         pre_filter=0.5, threshold=0.0, smooth=True, batch_size=32, base_params=None):
    """SESS (Tursun et al.): patches from every scale and window position, pre-filtered by
    their class probability, base maps weighted by it (:func:`sess_channel_weights`) and
    fused by :func:`sess_spatial_average`, then (``smooth``) an 11 x 11 Gaussian blur.

    Source: neouyghur/SESS, ``sess.py`` (the authors' code: scales, sliding windows,
    channel-wise weights, spatially weighted average, smoothing). Follows: the authors' code,
    with two choices of ours: the pre-filtering ratio 0.5 (their default keeps every patch) and
    bilinear, antialiased resizing.
    """
    entry = base_method(base)
    base_params = _check_base_params(entry, base_params)
    _check_sess_params(scales, window, step, pre_filter, threshold, batch_size)
    if not isinstance(smooth, bool):
        raise TypeError(f"smooth must be True or False (blur the fused map or not), got {smooth!r}")
    target = top1_target(model, images, target)
    fused = []
    for b in range(len(images)):
        patches, places = [], []
        for scale in scales:
            scaled = resize_shorter_side(images[b : b + 1], scale)[0]
            for y, x in sess_windows(*scaled.shape[-2:], window, step):
                patches.append(scaled[:, y : y + window, x : x + window])
                places.append((tuple(scaled.shape[-2:]), y, x))
        patches = torch.stack(patches)
        with torch.no_grad():
            probabilities = torch.cat([torch.softmax(model(patches[chunk]), dim=1)[:, target[b]]
                                       for chunk in batches(len(patches), batch_size)])
        kept = sess_pre_filter(probabilities, pre_filter)
        weights = sess_channel_weights(probabilities)
        total = images.new_zeros(images.shape[-2:])
        count = images.new_zeros(images.shape[-2:])
        for chunk in batches(len(kept), batch_size):
            index = kept[chunk]
            maps = base_saliency(entry, model, patches[index], target[b].expand(len(index)), layer, base_params)
            for i, saliency in zip(index.tolist(), maps):
                (height, width), y, x = places[i]
                canvas = images.new_zeros(height, width)
                canvas[y : y + window, x : x + window] = weights[i] * saliency
                canvas = upsample(canvas[None], images.shape[-2:])[0]
                salient = canvas > threshold
                total += torch.where(salient, canvas, torch.zeros_like(canvas))
                count += salient.float()
        fused.append(sess_spatial_average(total, count))
    fused = torch.stack(fused)
    if smooth:
        fused = gaussian_smoothing(fused)
    return fused, target
