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
    """Plain input gradients (Simonyan et al.), at input resolution; ``layer`` is unused.

    Source: Simonyan et al., ICLR workshop 2014, Sec. 3.1 (the maximum over colour channels of
    ``|dy^c/dx|``). Follows: the paper's formula.
    """
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
    """SmoothGrad (Smilkov et al.), eq. (5): the base method's maps averaged over noisy copies.

    Source: Smilkov et al., arXiv:1706.03825, eq. 3 (``sigma`` a fraction of the input's range,
    Sec. 3). Follows: the paper's formula; the class is chosen once, on the clean image.
    """
    maps, target = smoothgrad_samples(model, images, target, layer, base=base, samples=samples, sigma=sigma,
                                      seed=seed, batch_size=batch_size)
    return smoothgrad_average(maps), target


# --- Smooth Grad-CAM++ ----------------------------------------------------------------------

def gradient_moments(gradients: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The averages over the N noisy copies (axis 0) of g, g^2 and g^3, with ``g = dS/dA``."""
    return gradients.mean(dim=0), gradients.pow(2).mean(dim=0), gradients.pow(3).mean(dim=0)


def smoothgradcampp_alphas(mean_g2: torch.Tensor, mean_g3: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
    """Smooth Grad-CAM++'s pixel coefficients, Grad-CAM++'s closed form on averaged powers of g:
    ``alpha = <g^2> / (2 <g^2> + sum_ab A_ab <g^3>)``, its denominator floored at ``2 <g^2>``.

    The guard: for one copy at a position with a positive gradient (the positions the ReLU in
    the weights keeps) and non-negative activations (a layer after a ReLU, as Grad-CAM++'s
    derivation assumes), ``sum_ab A_ab g^3 >= 0``, so the denominator is at least ``2 g^2`` and
    alpha lies in (0, 1/2]. Averaged over noisy copies, ``<g^3>`` can be negative where ``<g>``
    is positive; the denominator then passes through 0 and alpha jumps by orders of magnitude,
    so that a change of the input far too small to see changes the map (measured in the
    smoothing chapter). Flooring the denominator at ``2 <g^2>`` (alpha clamped to [0, 1/2])
    keeps alpha continuous in the input. For one copy at a layer with non-negative activations
    it changes nothing; where activations are negative (the linear outputs of EfficientNet's
    blocks) Grad-CAM++'s own alphas can exceed 1/2 or change sign, and the guard clamps them too.
    """
    denominator = 2 * mean_g2 + activations.sum(dim=(-2, -1), keepdim=True) * mean_g3
    guarded = torch.maximum(denominator, 2 * mean_g2)
    safe = torch.where(guarded > 0, guarded, torch.ones_like(guarded))
    return torch.where(guarded > 0, mean_g2 / safe, torch.zeros_like(mean_g2))


def smoothgradcampp_weights(mean_g, mean_g2, mean_g3, activations) -> torch.Tensor:
    """Smooth Grad-CAM++'s weights (Omeiza et al.): ``w_n = sum_ij alpha_ij ReLU(<g>_ij)`` with
    :func:`smoothgradcampp_alphas`. With one copy and no noise this is Grad-CAM++
    (``gradcampp_weights``) at every layer whose activations are not negative."""
    return (smoothgradcampp_alphas(mean_g2, mean_g3, activations) * torch.relu(mean_g)).sum(dim=(-2, -1))


@register("smoothgradcam++", family=SMOOTHING, section="III", equation="eq. 5 on Grad-CAM++'s gradients",
          reference="omeiza2019smooth", cost=lambda shape, samples, **_: {"forward": 1 + samples, "backward": 1 + samples}, needs_gradients=True)
def smoothgradcampp(model, images, target=None, layer=None, *, samples=4, sigma=0.07, seed=0, batch_size=16):
    """Smooth Grad-CAM++: the gradients dS/dA and their 2nd and 3rd powers averaged over N noisy
    copies of the input, then Grad-CAM++'s formula on the clean image's activations A.

    Source: Omeiza et al., arXiv:1908.01224, Sec. 3 (the alphas and weights from averaged
    derivatives). Follows: the paper's formula, with three choices of ours. (1) The paper prints
    the alphas' numerator with the averaged *first* derivative; like torchcam we use the
    second-derivative form of Grad-CAM++ it derives from, ``<g^2>``. (2) Grad-CAM++'s closed
    form assumes ``Y = exp(S)``; its per-copy factor ``exp(S)`` is dropped, as for Grad-CAM++,
    although over noisy copies it would weight each copy differently. (3) The alphas' denominator
    is floored at ``2 <g^2>`` (:func:`smoothgradcampp_alphas`), so that a tiny change of the
    input gives a tiny change of the map. ``sigma`` is a fraction of the image's range: the default 0.07 is about
    torchcam's ``std=0.3`` in normalised units (0.3 times ImageNet's pixel std 0.226 is 0.068).
    After EfficientNet-Lite0's ``conv_head`` the gradient does not depend on the input (global
    pooling and one linear layer), so there the method *is* Grad-CAM++, whatever the noise.
    """
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


SSCAM_NOISE = ("masks", "input")


@register("sscam", family=SMOOTHING, section="III", equation="eq. 5 on eq. 4's masks",
          reference="wang2020ss", cost=lambda shape, samples, **_: {"forward": 1 + samples * shape.live}, needs_gradients=False)
def sscam(model, images, target=None, layer=None, *, samples=35, sigma=2.0, noise="masks", seed=0, batch_size=64):
    """SS-CAM (Wang et al.): Score-CAM whose channel scores are averaged over N noisy copies.

    ``noise="masks"`` (the paper's SS-CAM(1), torchcam's ``SSCAM``): each mask
    ``norm(up(A^n)) + N(0, sigma^2)``, noise per pixel shared by the colour channels, scores
    ``F^c(X ⊙ (mask + noise))``. ``noise="input"`` (the paper's SS-CAM(2)): the image gets the
    noise, ``F^c((X + N(0, (sigma range)^2)) ⊙ mask)``, with ``sigma`` a fraction of the image's
    range as for SmoothGrad (choose about 0.1-0.2 there). The defaults N = 35, sigma = 2 are
    torchcam's for the masks. Costs N times Score-CAM.

    Source: Wang, Naidu et al., arXiv:2006.14255 (both variants); torchcam's ``SSCAM`` for the
    first. Follows: the paper's formula for noise on the masks; for noise on the input our
    reading (the noisy image masked by the clean mask), as we could read only the paper's summary.
    """
    sigma, samples = check_sigma(sigma), check_int(samples, "samples")
    if noise not in SSCAM_NOISE:
        raise ValueError(f"noise must be one of {SSCAM_NOISE} (what SS-CAM adds the noise to), got {noise!r}")
    check_seed(seed), check_batch_size(batch_size)
    activations, scores = forward_activations(model, images, layer)
    target = resolve_target(target, scores)
    generator = torch.Generator().manual_seed(seed)
    stds = noise_scale(images, sigma)
    maps = []
    for b, image in enumerate(images):
        masks, valid = scorecam_masks(activations[b], image.shape[-2:])
        if noise == "masks":
            noises = (gaussian_noise(masks.shape, sigma, generator, image.device)[valid] for _ in range(samples))
            smoothed_scores = smoothed_masked_scores(model, image, masks[valid], target[b], noises, batch_size)
        else:
            noisy = (image + gaussian_noise(image.shape, stds[b].cpu(), generator, image.device) for _ in range(samples))
            smoothed_scores = smoothed_input_scores(model, noisy, masks[valid], target[b], batch_size)
        smoothed = torch.zeros(len(masks), device=image.device)
        smoothed[valid] = smoothed_scores
        weights = scorecam_weights(smoothed, scores[b, target[b]], valid)
        maps.append(scorecam_map(weights.unsqueeze(0), activations[b : b + 1])[0])
    return torch.stack(maps), target


def smoothed_input_scores(model, noisy_images, masks, class_index, batch_size) -> torch.Tensor:
    """SS-CAM(2)'s smoothed scores: ``1/N sum_n F^c((X + noise_n) ⊙ mask_k)`` for every mask k;
    ``noisy_images`` yields the N noisy (3, H, W) images, one held at a time."""
    total, count = torch.zeros(len(masks), device=masks.device), 0
    for noisy in noisy_images:
        total += masked_class_scores(model, noisy, masks, class_index, batch_size)
        count += 1
    return total / count


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
    """Integrated Gradients at input resolution; ``layer`` is unused.

    Source: Sundararajan et al., ICML 2017, eq. 1 and its Riemann sum, Sec. 5. Follows: the
    paper's formula (the right Riemann sum, as Captum's ``riemann_right``); the map, the absolute
    value of the colour channels' sum, is our choice.
    """
    attributions, target = _integrated_gradients(model, images, target, baseline, steps, batch_size)
    return integrated_gradients_map(attributions), target


# --- Integrated Grad-CAM --------------------------------------------------------------------

def integrated_gradcam_alphas(steps: int) -> torch.Tensor:
    """The authors' path points ``i / m``, i = 0..m-1 (a left Riemann sum): the baseline is the
    first point and the image itself is not one (smstrzd/IntegratedGradCAM, ``integrated_gradcam``)."""
    return torch.arange(steps, dtype=torch.float32) / steps


def integrated_gradcam_terms(gradients: torch.Tensor, activations: torch.Tensor,
                             baseline_activations: torch.Tensor | None = None) -> torch.Tensor:
    """A whole Grad-CAM map at each path point x_i, (m, h, w):
    ``ReLU(sum_k GAP(dy^c/dA^k)(x_i) (A^k(x_i) - A^k(x')))``, with the gradients *and* the
    activations taken at x_i (eqs. 2 and 3 at x_i); ``A(x')`` is subtracted only when given."""
    if baseline_activations is not None:
        activations = activations - baseline_activations
    return gradcam_map(gradcam_weights(gradients), activations)


def integrated_gradcam_map(terms: torch.Tensor) -> torch.Tensor:
    """Integrated Grad-CAM: ``L^c = sum_i`` of the per-point Grad-CAM maps (axis 0)."""
    return terms.sum(dim=0)


def check_flag(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


@register("integrated-gradcam", family=SMOOTHING, section="III", equation="eqs. 2 and 3 summed along a path",
          reference="sattarzadeh2021integrated", cost=lambda shape, steps, **_: {"forward": 1 + steps, "backward": steps}, needs_gradients=True)
def integrated_gradcam(model, images, target=None, layer=None, *, baseline=0.0, steps=50, subtract_baseline=False,
                       batch_size=16):
    """Integrated Grad-CAM (Sattarzadeh et al.): Grad-CAM maps summed along the straight path from
    the baseline x' (default black) to the image, ``L = sum_i ReLU(sum_k GAP(dy^c/dA^k)(x_i) A^k(x_i))``
    at the points ``x_i = x' + (i/m)(x - x')``, i = 0..m-1 (:func:`integrated_gradcam_alphas`).

    Source: smstrzd/IntegratedGradCAM, ``Integrated_Grad_CAM.ipynb`` (``integrated_gradcam``,
    ``gradient_to_grad_cam_saliency``) and its architecture figure ``docs/IGCAM-arch.svg``.
    Follows: the authors' code: 50 steps, a black baseline, the baseline as the first point and
    the image not among them, a ReLU at every point. Their figure also subtracts the baseline's
    activations A(x') from A(x_i); their notebook, which they give to replicate the paper's
    results, does not (its saliency function is called without a baseline), so neither does
    our default; ``subtract_baseline=True`` gives the figure's form (A(x') is the first point's,
    so it costs nothing more). The class is chosen on the clean image.
    """
    steps = check_int(steps, "steps")
    check_flag(subtract_baseline, "subtract_baseline")
    check_batch_size(batch_size)
    baseline = check_baseline(baseline, images)
    target, _ = _clean_target(model, images, target)
    alphas = integrated_gradcam_alphas(steps)
    maps = []
    for b, image in enumerate(images):
        points = path_points(image, baseline[b], alphas)
        total, reference = None, None
        for chunk in batches(steps, batch_size):
            activations, gradients, _, _ = forward_and_backward(model, points[chunk], layer,
                                                                target[b].expand(chunk.stop - chunk.start))
            if subtract_baseline and reference is None:
                reference = activations[:1]  # the first point is the baseline itself (alpha = 0)
            part = integrated_gradcam_map(integrated_gradcam_terms(gradients, activations, reference))
            total = part if total is None else total + part
        maps.append(total)
    return torch.stack(maps), target


# --- IS-CAM ---------------------------------------------------------------------------------

def iscam_scales(steps: int, accumulate: bool = True) -> torch.Tensor:
    """The factors the masked input ``X ⊙ mask`` is scaled by, one per step.

    ``accumulate`` (the authors'): the running sums of ``i / N``, i = 1..N, that is
    1/N, 3/N, 6/N, ... up to (N + 1)/2, as the paper's algorithm accumulates the mask and its
    first author asked torchcam to do (frgfm/torch-cam#13). Without it (ours): ``i / N``, the
    points of a right Riemann sum along the path from black to ``X ⊙ mask``.
    """
    points = torch.arange(1, steps + 1, dtype=torch.float32) / steps
    return torch.cumsum(points, 0) if accumulate else points


def integrated_masked_scores(model, image, masks, class_index, scales, batch_size) -> torch.Tensor:
    """IS-CAM's integrated scores: ``1/N sum_i F^c(X ⊙ (s_i mask_k))`` for every mask k."""
    scores = torch.stack([masked_class_scores(model, image, masks * float(scale), class_index, batch_size)
                          for scale in scales])
    return scores.mean(dim=0)


@register("iscam", family=SMOOTHING, section="III", equation="eq. 4's scores integrated along a path",
          reference="naidu2020is", cost=lambda shape, steps, **_: {"forward": 1 + steps * shape.live}, needs_gradients=False)
def iscam(model, images, target=None, layer=None, *, steps=10, accumulate=True, batch_size=64):
    """IS-CAM (Naidu et al.): Score-CAM whose channel scores are averaged over N copies of the
    masked input scaled by :func:`iscam_scales`. Costs N times Score-CAM.

    Source: Naidu et al., arXiv:2010.03023, Algorithm 1; its first author's request in
    frgfm/torch-cam#13. Follows: the paper's formula: the mask accumulates, so the scales are
    1/N, 3/N, 6/N, ... (``accumulate=True``, what torchcam's ``ISCAM`` computes). The scales rise
    above 1, off the path from black to ``X ⊙ mask`` that the name "integrated" suggests;
    ``accumulate=False`` is our variant that stays on it (scales i/N).
    """
    steps = check_int(steps, "steps")
    check_flag(accumulate, "accumulate")
    check_batch_size(batch_size)
    activations, scores = forward_activations(model, images, layer)
    target = resolve_target(target, scores)
    scales = iscam_scales(steps, accumulate)
    maps = []
    for b, image in enumerate(images):
        masks, valid = scorecam_masks(activations[b], image.shape[-2:])
        integrated = torch.zeros(len(masks), device=image.device)
        integrated[valid] = integrated_masked_scores(model, image, masks[valid], target[b], scales, batch_size)
        weights = scorecam_weights(integrated, scores[b, target[b]], valid)
        maps.append(scorecam_map(weights.unsqueeze(0), activations[b : b + 1])[0])
    return torch.stack(maps), target
