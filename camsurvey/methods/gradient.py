"""Gradient-based CAMs (survey Section II.B): one forward and one backward pass.

Each method weighs the layer's activation maps A^n with the gradient dy^c/dA^n of the
class score in its own way; all of them finish with ``ReLU(sum_n w_n A^n)`` (eq. 2) or, for
Layer-CAM, with a per-pixel weight.
"""

from __future__ import annotations

import torch

from ..plumbing import forward_and_backward
from .activation import weighted_sum
from .registry import register


def one_pass(shape) -> dict:
    """1 forward and 1 backward pass, whatever the layer."""
    return {"forward": 1, "backward": 1}


def gradcam_map(weights: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
    """Grad-CAM's map (eq. 2): ``L^c = ReLU(sum_n a_n A^n)``."""
    return torch.relu(weighted_sum(weights, activations))


def gradcam_weights(gradients: torch.Tensor) -> torch.Tensor:
    """Channel importance a_n (eq. 3): the mean of dy^c/dA^n over the Z pixels of A^n."""
    return gradients.mean(dim=(-2, -1))


def gradcampp_alphas_from_derivatives(second: torch.Tensor, third: torch.Tensor,
                                      activations: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++'s pixel coefficients from the score's own derivatives (Chattopadhyay et al., eq. 10):

    ``alpha_ij = d2Y_ij / (2 d2Y_ij + sum_ab A_ab d3Y_ij)``, with ``d2Y``, ``d3Y`` the second and
    third derivatives of the score Y with respect to ``A^n_ij``. Where the denominator
    vanishes alpha is taken as 0.
    """
    denominator = 2 * second + activations.sum(dim=(-2, -1), keepdim=True) * third
    safe = torch.where(denominator != 0, denominator, torch.ones_like(denominator))
    return torch.where(denominator != 0, second / safe, torch.zeros_like(second))


def gradcampp_alphas(gradients: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++'s alphas in closed form (Chattopadhyay et al., eq. 19).

    The closed form assumes the score is ``Y = exp(S)``: its n-th derivative is then
    ``exp(S) g^n`` with ``g = dS/dA``, the common factor ``exp(S)`` cancels, and
    ``alpha = g^2 / (2 g^2 + sum_ab A_ab g^3)``.
    """
    return gradcampp_alphas_from_derivatives(gradients.pow(2), gradients.pow(3), activations)


def gradcampp_weights_from_derivatives(first, second, third, activations) -> torch.Tensor:
    """``w_n = sum_ij alpha_ij ReLU(dY/dA^n_ij)`` with alphas from the score's own derivatives."""
    alphas = gradcampp_alphas_from_derivatives(second, third, activations)
    return (alphas * torch.relu(first)).sum(dim=(-2, -1))


def diagonal_derivatives(function, point: torch.Tensor, order: int = 3) -> torch.Tensor:
    """``d^n f / d x_k^n`` at ``point`` for n = 1..order and every coordinate k: an (order, K) tensor.

    Each coordinate is moved alone (``f(point + t e_k)``) and differentiated ``order`` times
    in t; this is what Grad-CAM++'s alphas need, with no exponential assumption.
    """
    def along(axis):
        derivatives, along_t = [], lambda t: function(point + t * axis)
        for _ in range(order):
            along_t = torch.func.grad(along_t)
            derivatives.append(along_t(torch.zeros((), dtype=point.dtype, device=point.device)))
        return torch.stack(derivatives)

    return torch.func.vmap(along)(torch.eye(len(point), dtype=point.dtype, device=point.device)).T


def gradcampp_weights(gradients: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++'s weights: ``w_n = sum_ij alpha_ij ReLU(dY/dA^n_ij)`` (a true weighted average).

    Under ``Y = exp(S)``, ``dY/dA = exp(S) g``; the positive factor ``exp(S)`` scales every
    weight alike and is dropped, as the map is normalised anyway.
    """
    alphas = gradcampp_alphas(gradients, activations)
    return (alphas * torch.relu(gradients)).sum(dim=(-2, -1))


def xgradcam_weights(gradients: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
    """XGrad-CAM's weights (Fu et al.): ``w_n = sum_ij (A^n_ij / sum_ab A^n_ab) dy^c/dA^n_ij``.

    This choice satisfies the sensitivity axiom (``y^c(A) - y^c(A without A^n) = sum_ij w_n A^n_ij``)
    and the conservation axiom (``y^c(A) = sum_ij sum_n w_n A^n_ij``) to first order; a channel
    whose activations sum to 0 gets weight 0.
    """
    totals = activations.sum(dim=(-2, -1), keepdim=True)
    shares = activations / torch.where(totals != 0, totals, torch.ones_like(totals))
    return (shares * gradients).sum(dim=(-2, -1))


def hirescam_map(gradients: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
    """HiResCAM (Draelos & Carin): ``ReLU(sum_n dy^c/dA^n_ij * A^n_ij)``, the gradient kept per pixel.

    Grad-CAM averages each channel's gradient over the map (eq. 3) before weighting; HiResCAM
    multiplies element by element, so a position counts only as much as it moves the score.
    The paper's formula (arXiv:2011.08891, Sec. 3) is the channel sum of the product; the ReLU
    is ours, as in eq. (2) and as pytorch-grad-cam's ``HiResCAM`` keeps it.
    """
    return torch.relu((gradients * activations).sum(dim=1))


def layercam_map(gradients: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
    """Layer-CAM (Jiang et al.): ``ReLU(sum_n ReLU(dy^c/dA^n_ij) A^n_ij)``, a weight per pixel."""
    return torch.relu((torch.relu(gradients) * activations).sum(dim=1))


@register("gradcam", family="gradient-based", section="II.B", equation="eq. 2, eq. 3",
          reference="selvaraju2017grad", cost=one_pass, needs_gradients=True)
def gradcam(model, images, target=None, layer=None):
    """Grad-CAM (Selvaraju et al.), eqs. (2) and (3).

    Source: Selvaraju et al., ICCV 2017, eqs. 1 and 2. Follows: the paper's formula.
    """
    activations, gradients, _, target = forward_and_backward(model, images, layer, target)
    return gradcam_map(gradcam_weights(gradients), activations), target


@register("gradcam++", family="gradient-based", section="II.B", equation="Grad-CAM++ weights (alphas in closed form)",
          reference="chattopadhay2018grad", cost=one_pass, needs_gradients=True)
def gradcampp(model, images, target=None, layer=None):
    """Grad-CAM++ (Chattopadhyay et al.): Grad-CAM with alpha-weighted positive gradients.

    Source: Chattopadhyay et al., WACV 2018, eq. 19 (the closed-form alphas under
    ``Y = exp(S)``). Follows: the paper's formula; where the alphas' denominator is exactly 0
    alpha is 0, and nothing is added to it. pytorch-grad-cam adds ``eps = 1e-6`` to the
    denominator: at ``conv_head`` its map agrees with ours (Pearson >= 0.9997), at ``stem``,
    where the true denominators are about that size, the eps moves it (see the CAM chapter's
    faithfulness table).
    """
    activations, gradients, _, target = forward_and_backward(model, images, layer, target)
    return gradcam_map(gradcampp_weights(gradients, activations), activations), target


@register("xgradcam", family="gradient-based", section="II.B", equation="XGrad-CAM weights",
          reference="fu2020axiom", cost=one_pass, needs_gradients=True)
def xgradcam(model, images, target=None, layer=None):
    """XGrad-CAM (Fu et al.): activation-weighted gradients.

    Source: Fu0511/XGrad-CAM, ``XGrad-CAM.py`` (``X_weights``). Follows: the authors' code, except
    that they add 1e-6 to each channel's activation sum and we give a channel whose activations
    sum to 0 the weight 0.
    """
    activations, gradients, _, target = forward_and_backward(model, images, layer, target)
    return gradcam_map(xgradcam_weights(gradients, activations), activations), target


@register("layercam", family="gradient-based", section="II.B", equation="Layer-CAM pixel weights",
          reference="jiang2021layercam", cost=one_pass, needs_gradients=True)
def layercam(model, images, target=None, layer=None):
    """Layer-CAM (Jiang et al.): each activation weighted by its own positive gradient.

    Source: PengtaoJiang/LayerCAM-jittor, ``cam/layercam.py`` (``activations * relu(gradients)``,
    summed over channels, ReLU). Follows: the authors' code, at one layer (the authors also fuse
    the maps of several layers, which this method leaves to the caller).
    """
    activations, gradients, _, target = forward_and_backward(model, images, layer, target)
    return layercam_map(gradients, activations), target


@register("hirescam", family="gradient-based", section="II.B", equation="HiResCAM: gradient x activation per pixel",
          reference="draelos2020hirescam", cost=one_pass, needs_gradients=True)
def hirescam(model, images, target=None, layer=None):
    """HiResCAM (Draelos & Carin): each activation weighted by its own gradient, summed over channels.

    On a head that is global average pooling and one linear layer, dy^c/dA^n_ij = w^c_n / Z at
    every position, so HiResCAM is CAM (eq. 1) divided by Z: the paper's "generalisation of CAM".

    Source: Draelos & Carin, arXiv:2011.08891, Sec. 3. Follows: the paper's formula, with a final
    ReLU (ours, as in eq. 2 and pytorch-grad-cam's ``HiResCAM``).
    """
    activations, gradients, _, target = forward_and_backward(model, images, layer, target)
    return hirescam_map(gradients, activations), target
