"""The peer libraries (pytorch-grad-cam, torchcam; dev-only, imported lazily) and Score-CAM's slow
reference: what our maps and times are compared with."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import torch
from torch import nn

from ...plumbing import check_images, forward_activations, is_constant, normalize, resolve_target, upsample

PEERS = {
    "pytorch-grad-cam": {"gradcam": "GradCAM", "gradcam++": "GradCAMPlusPlus", "xgradcam": "XGradCAM",
                         "layercam": "LayerCAM", "eigencam": "EigenCAM", "scorecam": "ScoreCAM",
                         "ablationcam": "AblationCAM"},
    "torchcam": {"cam": "CAM", "gradcam": "GradCAM", "gradcam++": "GradCAMpp", "xgradcam": "XGradCAM",
                 "layercam": "LayerCAM", "scorecam": "ScoreCAM"},
}


PEER_MODULES = {"pytorch-grad-cam": "pytorch_grad_cam", "torchcam": "torchcam.methods"}


PEER_NEEDS_GRADIENTS = {"gradcam", "gradcam++", "xgradcam", "layercam"}


def scorecam_reference(model, images, target=None, layer=None) -> torch.Tensor:
    """Eq. (4) one channel at a time, written plainly, as a check on the fast Score-CAM.

    Our convention: mask n is ``norm(up(A^n))``; a constant channel has no mask and gets no
    weight; the weights are the softmax over the other channels of ``F^c(X ⊙ mask_n) - F^c(X)``.
    Returns ``norm(up(ReLU(sum_n w_n A^n)))``, (B, H, W).
    """
    images = check_images(images, model)
    activations, scores = forward_activations(model, images, layer)
    target = resolve_target(target, scores)
    maps = []
    with torch.no_grad():
        for b in range(len(images)):
            image, c = images[b : b + 1], int(target[b])
            increases, channels = [], []
            for n in range(activations.shape[1]):
                upsampled = upsample(activations[b, n][None], images.shape[-2:])
                if bool(is_constant(upsampled)):
                    continue
                masked_score = model(image * normalize(upsampled)[:, None])[0, c]
                increases.append(masked_score - scores[b, c])
                channels.append(n)
            saliency = torch.zeros(activations.shape[-2:], device=images.device)
            if channels:
                weights = torch.softmax(torch.stack(increases), dim=0)
                for weight, n in zip(weights, channels):
                    saliency = saliency + weight * activations[b, n]
            maps.append(torch.relu(saliency))
    return normalize(upsample(torch.stack(maps), images.shape[-2:]))


def peer_available(library: str) -> str | None:
    """``None`` when the peer library imports, else a note saying why it is skipped."""
    import importlib

    try:
        importlib.import_module(PEER_MODULES[library])
    except ImportError as error:
        return f"{library} is not installed ({error}); `pip install -e .[dev]` installs it"
    return None


def last_linear(model) -> nn.Module | None:
    """The model's last linear layer (CAM's class weights), or None."""
    linears = [module for module in model.modules() if isinstance(module, nn.Linear)]
    return linears[-1] if linears else None


def peer_explain(library: str, method: str, model, images, target: torch.Tensor, layer: str) -> torch.Tensor:
    """The peer's map of ``method`` for ``images`` and classes ``target``: (B, H, W) in [0, 1].

    Peers run with their own default settings. Our models are frozen, so the peers' gradient
    methods get an input that requires gradients (their hooks need a graph to hang on).
    """
    import importlib

    cls = getattr(importlib.import_module(PEER_MODULES[library]), PEERS[library][method])
    inputs = images.detach().clone()
    if method in PEER_NEEDS_GRADIENTS:
        inputs.requires_grad_(True)
    with contextlib.redirect_stderr(io.StringIO()), torch.set_grad_enabled(method in PEER_NEEDS_GRADIENTS):
        if library == "pytorch-grad-cam":
            from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

            with cls(model=model, target_layers=[model.layer(layer)]) as extractor:
                maps = extractor(input_tensor=inputs, targets=[ClassifierOutputTarget(int(c)) for c in target])
            maps = torch.from_numpy(np.asarray(maps)).float()
        else:
            # layers as module objects: a wrapped module's names are not the plain module's
            options = {"fc_layer": last_linear(model)} if method == "cam" else {}
            with cls(model, target_layer=model.layer(layer), input_shape=tuple(images.shape[1:]),
                     **options) as extractor:
                scores = model(inputs)
                maps = extractor(class_idx=[int(c) for c in target], scores=scores)[0].detach().float().cpu()
    return normalize(upsample(maps, images.shape[-2:]))
