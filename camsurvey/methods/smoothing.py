"""Smoothing and integration (survey Section III): averages over noise, integrals over paths.

Two operations change a base method instead of inventing new weights:

* **smoothing** (SmoothGrad, eq. 5): average the base method's maps over N copies of the
  input with Gaussian noise added -- SmoothGrad (plain input gradients), Smooth Grad-CAM++
  (Grad-CAM++ with gradients averaged over noisy copies) and SS-CAM (Score-CAM with noisy masks);
* **integration** (Integrated Gradients): average gradients along the straight path from a
  baseline to the input -- Integrated Gradients, Integrated Grad-CAM and IS-CAM (Score-CAM
  with masks scaled along the path).

All noise comes from a ``torch.Generator`` seeded with the ``seed`` parameter, drawn on the
CPU, so a call gives the same map on every run and every device. Noise levels ``sigma`` are
fractions of the range of what is perturbed: of each image's value range (max - min) for
noise on the input, of the mask range [0, 1] for SS-CAM.
"""

from __future__ import annotations

import math

import torch

from ..common import batches, check_batch_size, check_int
from ..plumbing import class_scores, forward_activations, forward_and_backward, resolve_target
from .gradient import gradcam_map, gradcam_weights
from .perturbation import masked_class_scores, scorecam_map, scorecam_masks, scorecam_weights
from .registry import METHODS, get_method, register

SMOOTHING = "smoothing/integration"


# --- checks ---------------------------------------------------------------------------------

def check_sigma(sigma) -> float:
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not math.isfinite(sigma) or sigma < 0:
        raise ValueError(f"sigma (the noise level, a fraction of the input range) must be a finite number >= 0, "
                         f"got {sigma!r}; 0.1 to 0.2 is a common choice")
    return float(sigma)


def check_seed(seed) -> int:
    return check_int(seed, "seed", minimum=0, maximum=2**63 - 1, hint="it seeds a torch.Generator")


def check_baseline(baseline, images: torch.Tensor) -> torch.Tensor:
    """The baseline x' as a (B, 3, H, W) tensor: a number (a constant image) or a tensor of
    shape (3, H, W), (1, 3, H, W) or (B, 3, H, W) (or one that broadcasts to it), in [0, 1] like
    the images (0 is black).

    The one check of a baseline image: Integrated Gradients' x' and the metrics' canvases."""
    if isinstance(baseline, bool) or not isinstance(baseline, (int, float, torch.Tensor)):
        raise TypeError(f"baseline must be a number or a tensor shaped like the images, got {type(baseline).__name__}")
    if not isinstance(baseline, torch.Tensor):
        if not math.isfinite(baseline) or not 0 <= baseline <= 1:
            raise ValueError(f"baseline must be a pixel value in [0, 1] like the images (0 is black), got {baseline!r}")
        return torch.full_like(images, float(baseline))
    if baseline.layout != torch.strided or baseline.is_meta or not baseline.is_floating_point():
        raise TypeError(f"baseline must be a dense floating-point tensor, got {baseline.dtype} ({baseline.layout})")
    shape, expected = tuple(baseline.shape), tuple(images.shape)
    try:
        broadcasts = torch.broadcast_shapes(shape, expected) == expected
    except RuntimeError:
        broadcasts = False
    if not broadcasts:
        raise ValueError(f"baseline has shape {shape}; for images of shape {expected} give a number, "
                         f"or a tensor of shape {expected[1:]}, {(1,) + expected[1:]} or {expected} "
                         "(or one that broadcasts to it, e.g. one colour (1, 3, 1, 1))")
    if not torch.isfinite(baseline).all():
        raise ValueError("baseline contains NaN or Inf values")
    if baseline.min() < 0 or baseline.max() > 1:
        raise ValueError(f"baseline must lie in [0, 1] like the images, got values in "
                         f"[{float(baseline.min()):.3g}, {float(baseline.max()):.3g}]")
    return baseline.to(images).expand(expected)


def _clean_target(model, images, target):
    """The class explained for each image, chosen on the *clean* image (1 forward pass)."""
    with torch.no_grad():
        scores = model(images)
    return resolve_target(target, scores), scores


# --- plain gradients (Simonyan et al.) ------------------------------------------------------

def input_gradients(model, images: torch.Tensor, target) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``dy^c/dx`` for each image (B, 3, H, W), with the scores and the target (1 forward + 1 backward)."""
    images = images.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        scores = model(images)
        target = resolve_target(target, scores)
        class_scores(scores, target).sum().backward()
    assert images.grad is not None  # the backward pass above reached the input
    return images.grad.detach(), scores.detach(), target


def saliency_map(gradients: torch.Tensor) -> torch.Tensor:
    """Simonyan et al.'s saliency: ``max over colour channels of |dy^c/dx|``, (B, H, W)."""
    return gradients.abs().amax(dim=1)


@register("saliency", family=SMOOTHING, section="III", equation="|dy^c/dx| (base of eq. 5)",
          reference="simonyan2013deep", cost=lambda shape: {"forward": 1, "backward": 1}, needs_gradients=True)
def saliency(model, images, target=None, layer=None):
    """Plain input gradients (Simonyan et al.), at input resolution; ``layer`` is unused."""
    gradients, _, target = input_gradients(model, images, target)
    return saliency_map(gradients), target


# --- SmoothGrad (eq. 5) ---------------------------------------------------------------------

def noise_scale(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """The standard deviation of the noise for each image: ``sigma * (max x - min x)``, (B, 1, 1, 1)."""
    spans = images.amax(dim=(1, 2, 3)) - images.amin(dim=(1, 2, 3))
    return (sigma * spans).view(-1, 1, 1, 1)


def gaussian_noise(shape, std, generator: torch.Generator, device) -> torch.Tensor:
    """Samples of N(0, std^2) of ``shape``, drawn on the CPU from ``generator`` (device-independent)."""
    return (torch.randn(tuple(shape), generator=generator) * std).to(device)


def noisy_copies(image: torch.Tensor, std, samples: int, generator: torch.Generator) -> torch.Tensor:
    """N copies ``x + N(0, std^2)`` of one (3, H, W) image, drawn together: (N, 3, H, W)."""
    return image + gaussian_noise((samples,) + tuple(image.shape), std, generator, image.device)


def smoothgrad_average(maps: torch.Tensor) -> torch.Tensor:
    """Eq. (5): ``M'_c(x) = 1/N sum_n M_c(x + N(0, sigma^2))`` from the N maps stacked on axis 1."""
    return maps.mean(dim=1)


def variance_of_average(maps: torch.Tensor, counts=(1, 2, 4, 8)) -> dict:
    """How eq. (5)'s average steadies: ``N -> pixel-mean variance of the average of N maps``.

    ``maps`` (S, h, w) are S maps of independent noisy copies; for each N (dividing S) they
    are split into S/N disjoint groups, and the variance across the groups' averages is
    taken per pixel (unbiased), then averaged over pixels. Independent samples give var/N.
    """
    total = len(maps)
    result = {}
    for count in counts:
        if total % count or total // count < 2:
            raise ValueError(f"{total} maps cannot be split into at least 2 groups of {count}")
        means = maps[: total - total % count].reshape(total // count, count, *maps.shape[1:]).mean(dim=1)
        result[count] = means.var(dim=0).mean().item()
    return result


def gradient_bases() -> list[str]:
    """The methods SmoothGrad can wrap: gradient methods whose map changes with the input's noise."""
    return sorted(name for name, entry in METHODS.items()
                  if entry.needs_gradients and (entry.family == "gradient-based" or name == "saliency"))


def check_base(base) -> str:
    if not isinstance(base, str) or base not in METHODS:
        raise ValueError(f"unknown base method {base!r} for smoothgrad; choose one of {gradient_bases()}")
    if base not in gradient_bases():
        raise ValueError(f"smoothgrad averages the maps of a gradient method, and {base!r} is not one "
                         f"({METHODS[base].family}); choose one of {gradient_bases()}")
    return base


def smoothgrad_samples(model, images, target=None, layer=None, *, base="saliency", samples=50, sigma=0.15,
                       seed=0, batch_size=16) -> tuple[torch.Tensor, torch.Tensor]:
    """The N maps ``M_c(x + noise_n)`` of eq. (5), (B, N, h, w), before they are averaged.

    The class is chosen once on the clean image; image b's N noise tensors are drawn
    together, in order, from a generator seeded with ``seed``.
    """
    function = get_method(check_base(base)).function
    sigma, samples = check_sigma(sigma), check_int(samples, "samples")
    check_seed(seed), check_batch_size(batch_size)
    target, _ = _clean_target(model, images, target)
    generator = torch.Generator().manual_seed(seed)
    stds = noise_scale(images, sigma)
    all_maps = []
    for b, image in enumerate(images):
        noisy = noisy_copies(image, stds[b].cpu(), samples, generator)
        maps = [function(model, noisy[chunk], target[b].expand(chunk.stop - chunk.start), layer)[0].detach()
                for chunk in batches(samples, batch_size)]
        all_maps.append(torch.cat(maps))
    return torch.stack(all_maps), target


def smoothgrad_cost(shape, *, base, samples, **_) -> dict:
    """1 forward pass to fix the class on the clean image, then the base method on each of N noisy copies."""
    base_cost = get_method(check_base(base)).cost_at(shape)
    return {kind: samples * count + (kind == "forward") for kind, count in base_cost.items()}


@register("smoothgrad", family=SMOOTHING, section="III", equation="eq. 5", reference="smilkov2017smoothgrad",
          cost=smoothgrad_cost, needs_gradients=True)
def smoothgrad(model, images, target=None, layer=None, *, base="saliency", samples=50, sigma=0.15, seed=0,
               batch_size=16):
    """SmoothGrad (Smilkov et al.), eq. (5): the base method's maps averaged over noisy copies."""
    maps, target = smoothgrad_samples(model, images, target, layer, base=base, samples=samples, sigma=sigma,
                                      seed=seed, batch_size=batch_size)
    return smoothgrad_average(maps), target


# --- Smooth Grad-CAM++ ----------------------------------------------------------------------

def gradient_moments(gradients: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The averages over the N noisy copies (axis 0) of g, g^2 and g^3, with ``g = dS/dA``."""
    return gradients.mean(dim=0), gradients.pow(2).mean(dim=0), gradients.pow(3).mean(dim=0)


def smoothgradcampp_weights(mean_g, mean_g2, mean_g3, activations) -> torch.Tensor:
    """Smooth Grad-CAM++'s weights (Omeiza et al.): Grad-CAM++'s closed form with each power of
    the gradient replaced by its average over noisy copies,
    ``alpha = <g^2> / (2 <g^2> + sum_ab A_ab <g^3>)``, ``w_n = sum_ij alpha_ij ReLU(<g>_ij)``.

    With one copy and no noise this is exactly Grad-CAM++ (``gradcampp_weights``).
    """
    denominator = 2 * mean_g2 + activations.sum(dim=(-2, -1), keepdim=True) * mean_g3
    safe = torch.where(denominator != 0, denominator, torch.ones_like(denominator))
    alphas = torch.where(denominator != 0, mean_g2 / safe, torch.zeros_like(mean_g2))
    return (alphas * torch.relu(mean_g)).sum(dim=(-2, -1))


@register("smoothgradcam++", family=SMOOTHING, section="III", equation="eq. 5 on Grad-CAM++'s gradients",
          reference="omeiza2019smooth", cost=lambda shape, samples, **_: {"forward": 1 + samples, "backward": 1 + samples}, needs_gradients=True)
def smoothgradcampp(model, images, target=None, layer=None, *, samples=4, sigma=0.3, seed=0, batch_size=16):
    """Smooth Grad-CAM++: the gradients dS/dA and their 2nd and 3rd powers averaged over N noisy
    copies of the input, then Grad-CAM++'s formula on the clean image's activations A."""
    sigma, samples = check_sigma(sigma), check_int(samples, "samples")
    check_seed(seed), check_batch_size(batch_size)
    activations, _, _, target = forward_and_backward(model, images, layer, target)
    generator = torch.Generator().manual_seed(seed)
    stds = noise_scale(images, sigma)
    weights = []
    for b, image in enumerate(images):
        noisy = noisy_copies(image, stds[b].cpu(), samples, generator)
        gradients = torch.cat([forward_and_backward(model, noisy[chunk], layer,
                                                    target[b].expand(chunk.stop - chunk.start))[1]
                               for chunk in batches(samples, batch_size)])
        weights.append(smoothgradcampp_weights(*gradient_moments(gradients), activations[b]))
    return gradcam_map(torch.stack(weights), activations), target


# --- SS-CAM ---------------------------------------------------------------------------------

def smoothed_masked_scores(model, image, masks, class_index, noises, batch_size) -> torch.Tensor:
    """SS-CAM's smoothed scores: ``1/N sum_n F^c(X ⊙ (mask_k + noise_{n,k}))`` for every mask k (eq. 5).

    ``noises`` may be a generator: one (K, H, W) noise tensor is held at a time."""
    total, count = torch.zeros(len(masks), device=image.device), 0
    for noise in noises:
        total += masked_class_scores(model, image, masks + noise, class_index, batch_size)
        count += 1
    return total / count


@register("sscam", family=SMOOTHING, section="III", equation="eq. 5 on eq. 4's masks",
          reference="wang2020ss", cost=lambda shape, samples, **_: {"forward": 1 + samples * shape.live}, needs_gradients=False)
def sscam(model, images, target=None, layer=None, *, samples=35, sigma=2.0, seed=0, batch_size=64):
    """SS-CAM (Wang et al.): Score-CAM whose channel scores are averaged over N noisy copies of
    each mask ``norm(up(A^n)) + N(0, sigma^2)`` (noise per pixel, shared by the colour channels);
    the defaults N = 35, sigma = 2 are torchcam's. Costs N times Score-CAM."""
    sigma, samples = check_sigma(sigma), check_int(samples, "samples")
    check_seed(seed), check_batch_size(batch_size)
    activations, scores = forward_activations(model, images, layer)
    target = resolve_target(target, scores)
    generator = torch.Generator().manual_seed(seed)
    maps = []
    for b, image in enumerate(images):
        masks, valid = scorecam_masks(activations[b], image.shape[-2:])
        noises = (gaussian_noise(masks.shape, sigma, generator, image.device)[valid] for _ in range(samples))
        smoothed = torch.zeros(len(masks), device=image.device)
        smoothed[valid] = smoothed_masked_scores(model, image, masks[valid], target[b], noises, batch_size)
        weights = scorecam_weights(smoothed, scores[b, target[b]], valid)
        maps.append(scorecam_map(weights.unsqueeze(0), activations[b : b + 1])[0])
    return torch.stack(maps), target


# --- Integrated Gradients -------------------------------------------------------------------

def path_alphas(steps: int) -> torch.Tensor:
    """The right ends ``k / m``, k = 1..m, of m equal steps along [0, 1] (the right Riemann sum
    of Sundararajan et al.). The grids nest: the points of m steps are among those of 2m."""
    return torch.arange(1, steps + 1, dtype=torch.float32) / steps


def path_points(image: torch.Tensor, baseline: torch.Tensor, alphas: torch.Tensor) -> torch.Tensor:
    """The straight path ``x' + alpha (x - x')`` at each alpha: (m, 3, H, W)."""
    alphas = alphas.to(image).view((-1,) + (1,) * image.ndim)
    return baseline + alphas * (image - baseline)


def integrated_gradients(difference: torch.Tensor, path_gradients: torch.Tensor) -> torch.Tensor:
    """Integrated Gradients (Sundararajan et al.):
    ``IG_i(x) = (x_i - x'_i) * integral_0^1 dF(x' + alpha (x - x'))/dx_i d alpha``,
    the integral a Riemann sum: the mean of the m path gradients (axis 0)."""
    return difference * path_gradients.mean(dim=0)


def path_gradients(model, image, baseline, class_index, steps, batch_size) -> torch.Tensor:
    """``dF^c/dx`` at the m points ``x' + (k/m)(x - x')`` of one image's path: (m, 3, H, W)."""
    points = path_points(image, baseline, path_alphas(steps))
    return torch.cat([input_gradients(model, points[chunk], class_index.expand(chunk.stop - chunk.start))[0]
                      for chunk in batches(steps, batch_size)])


def _integrated_gradients(model, images, target, baseline, steps, batch_size):
    steps = check_int(steps, "steps")
    check_batch_size(batch_size)
    baseline = check_baseline(baseline, images)
    target, _ = _clean_target(model, images, target)
    attributions = [integrated_gradients(image - baseline[b],
                                         path_gradients(model, image, baseline[b], target[b], steps, batch_size))
                    for b, image in enumerate(images)]
    return torch.stack(attributions), target


def completeness_gaps(model, image, target=None, baseline=0.0, steps=(8, 16, 32, 64, 128), batch_size=16) -> dict:
    """Completeness checked for several step counts at the cost of the largest one.

    For one image (1, 3, H, W): ``m -> (sum_i IG_i, F^c(x) - F^c(x'))`` for each m in ``steps``;
    each m must divide the largest, so that its path points are a subset of the largest grid's.
    """
    steps = sorted(check_int(m, "steps") for m in steps)
    finest = steps[-1]
    if any(finest % m for m in steps):
        raise ValueError(f"every step count must divide the largest ({finest}), got {steps}")
    baseline = check_baseline(baseline, image)
    target, _ = _clean_target(model, image, target)
    gradients = path_gradients(model, image[0], baseline[0], target[0], finest, batch_size)
    with torch.no_grad():
        gap = (class_scores(model(image), target) - class_scores(model(baseline), target)).item()
    difference = image[0] - baseline[0]
    return {m: (integrated_gradients(difference, gradients[finest // m - 1 :: finest // m]).sum().item(), gap)
            for m in steps}


def integrated_gradients_of(function, x: torch.Tensor, baseline: torch.Tensor, steps: int = 50) -> torch.Tensor:
    """Integrated Gradients of any differentiable scalar ``function`` of a tensor ``x`` (toy examples)."""
    steps = check_int(steps, "steps")
    points = path_points(x, baseline, path_alphas(steps)).requires_grad_(True)
    with torch.enable_grad():
        gradients, = torch.autograd.grad(torch.stack([function(p) for p in points]).sum(), points)
    return integrated_gradients(x - baseline, gradients)


def integrated_gradients_attributions(model, images, target=None, baseline=0.0, steps=50,
                                      batch_size=16) -> torch.Tensor:
    """The raw Integrated Gradients of each pixel and colour channel, (B, 3, H, W).

    They sum, up to the Riemann sum's error, to ``F^c(x) - F^c(x')`` (completeness), with
    ``F^c`` the pre-softmax score of the target class and ``x'`` the baseline (default: black).
    """
    from ..plumbing import check_images

    return _integrated_gradients(model, check_images(images, model), target, baseline, steps, batch_size)[0]


def integrated_gradients_map(attributions: torch.Tensor) -> torch.Tensor:
    """A pixel's attribution: the absolute value of its colour channels' sum, (B, H, W)."""
    return attributions.sum(dim=1).abs()


@register("integrated-gradients", family=SMOOTHING, section="III", equation="Integrated Gradients",
          reference="sundararajan2017axiomatic", cost=lambda shape, steps, **_: {"forward": 1 + steps, "backward": steps}, needs_gradients=True)
def integrated_gradients_method(model, images, target=None, layer=None, *, baseline=0.0, steps=50, batch_size=16):
    """Integrated Gradients at input resolution; ``layer`` is unused."""
    attributions, target = _integrated_gradients(model, images, target, baseline, steps, batch_size)
    return integrated_gradients_map(attributions), target


# --- Integrated Grad-CAM --------------------------------------------------------------------

def integrated_gradcam_weights(path_gradients: torch.Tensor) -> torch.Tensor:
    """Eq. (3) integrated along the path: ``a_n = integral_0^1 mean_ij dS/dA^n_ij(x' + alpha (x - x')) d alpha``,
    a Riemann sum over the m path points on axis 0."""
    return gradcam_weights(path_gradients).mean(dim=0)


@register("integrated-gradcam", family=SMOOTHING, section="III", equation="eq. 2, eq. 3 integrated along a path",
          reference="sattarzadeh2021integrated", cost=lambda shape, steps, **_: {"forward": 1 + steps, "backward": 1 + steps}, needs_gradients=True)
def integrated_gradcam(model, images, target=None, layer=None, *, baseline=0.0, steps=16, batch_size=16):
    """Integrated Grad-CAM (Sattarzadeh et al.), in our reading: Grad-CAM's gradient term (eq. 3)
    replaced by its path integral from the baseline to the image, applied to the image's
    activations (eq. 2). With the image as its own baseline it is Grad-CAM."""
    steps = check_int(steps, "steps")
    check_batch_size(batch_size)
    baseline = check_baseline(baseline, images)
    activations, _, _, target = forward_and_backward(model, images, layer, target)
    alphas = path_alphas(steps)
    weights = []
    for b, image in enumerate(images):
        points = path_points(image, baseline[b], alphas)
        gradients = torch.cat([forward_and_backward(model, points[chunk], layer,
                                                    target[b].expand(chunk.stop - chunk.start))[1]
                               for chunk in batches(steps, batch_size)])
        weights.append(integrated_gradcam_weights(gradients))
    return gradcam_map(torch.stack(weights), activations), target


# --- IS-CAM ---------------------------------------------------------------------------------

def iscam_scales(steps: int) -> torch.Tensor:
    """The points ``i / N``, i = 1..N, on the path from a black image to ``X ⊙ mask`` (right Riemann sum)."""
    return torch.arange(1, steps + 1, dtype=torch.float32) / steps


def integrated_masked_scores(model, image, masks, class_index, scales, batch_size) -> torch.Tensor:
    """IS-CAM's integrated scores: ``1/N sum_i F^c(X ⊙ (s_i mask_k))`` for every mask k."""
    scores = torch.stack([masked_class_scores(model, image, masks * float(scale), class_index, batch_size)
                          for scale in scales])
    return scores.mean(dim=0)


@register("iscam", family=SMOOTHING, section="III", equation="eq. 4's scores integrated along a path",
          reference="naidu2020is", cost=lambda shape, steps, **_: {"forward": 1 + steps * shape.live}, needs_gradients=False)
def iscam(model, images, target=None, layer=None, *, steps=10, batch_size=64):
    """IS-CAM (Naidu et al.): Score-CAM whose channel scores are averaged over the masked input
    scaled by i/N, i = 1..N -- a Riemann sum of the score along the path from black to
    ``X ⊙ mask``. Costs N times Score-CAM."""
    steps = check_int(steps, "steps")
    check_batch_size(batch_size)
    activations, scores = forward_activations(model, images, layer)
    target = resolve_target(target, scores)
    scales = iscam_scales(steps)
    maps = []
    for b, image in enumerate(images):
        masks, valid = scorecam_masks(activations[b], image.shape[-2:])
        integrated = torch.zeros(len(masks), device=image.device)
        integrated[valid] = integrated_masked_scores(model, image, masks[valid], target[b], scales, batch_size)
        weights = scorecam_weights(integrated, scores[b, target[b]], valid)
        maps.append(scorecam_map(weights.unsqueeze(0), activations[b : b + 1])[0])
    return torch.stack(maps), target
