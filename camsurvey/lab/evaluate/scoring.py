"""Every metric of a protocol for one image and one method: the book's own metric functions
(:mod:`camsurvey.metrics`, :func:`camsurvey.lab.evaluation.evaluate`), fed as the protocol says.

``"pixels"`` masking and ``"input"``-resolution maps are the book's protocol and go straight to
:func:`~camsurvey.lab.evaluation.evaluate`. The Recipro-CAM authors' protocol (``"model-input"``
masking, ``"layer"``-resolution maps) is assembled here from the same functions: the
confidences (:func:`~camsurvey.metrics.confidence`), the drop of eq. (8)
(:func:`~camsurvey.metrics.confidence_drop`), Coherency's formula
(:func:`~camsurvey.metrics.coherency_of_maps`), Complexity (:func:`~camsurvey.metrics.complexity`)
and eq. (10) (:func:`~camsurvey.metrics.adcc`).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from ...methods import explain, get_method
from ...metrics import (
    adcc,
    box_iou,
    check_saliency,
    coherency_of_maps,
    complexity,
    confidence,
    confidence_drop,
    energy_pointing_game,
    estimated_box,
)
from ...plumbing import check_images, finish, upsample
from ..evaluation import evaluate
from .protocol import Protocol


def native_maps(method: str, model, images: torch.Tensor, target, layer=None, **params) -> torch.Tensor:
    """The method's maps at its own resolution (the layer's h x w for a CAM), each normalised to
    [0, 1]: ``norm(L)`` without ``up(.)``, the map the Recipro-CAM code scores."""
    entry = get_method(method)
    entry.with_defaults(params)
    if layer is not None:
        model.layer(layer)
    images = check_images(images, model)
    maps, _ = entry.function(model, images, target, layer, **params)
    return finish(maps, maps.shape[-2:]).cpu()


def bicubic_pil(maps: torch.Tensor, size) -> torch.Tensor:
    """Each (h, w) map resized to ``size`` = (H, W) by PIL's bicubic filter on a float image, as the
    Recipro-CAM code does (``to_pil_image(cam, mode='F').resize(..., BICUBIC)``); the result may
    overshoot [0, 1] slightly."""
    height, width = size
    resized = [np.asarray(Image.fromarray(m.numpy().astype(np.float32), mode="F").resize(
        (width, height), Image.Resampling.BICUBIC)) for m in maps.detach().cpu()]
    return torch.from_numpy(np.stack(resized).copy())


def model_input_explanation(model, images: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """The image whose *normalised* version is ``normalise(x) * map``: ``mean + (x - mean) * map``.

    The model's first stage is its affine normalisation ``(x - mean) / std``, so the model sees
    exactly the normalised image times the map: a masked pixel is the normalisation's mean
    colour (what zero means in the model's input space), not black.
    """
    mean = model[0].mean.to(images.device)
    return mean + (images - mean) * maps.to(images.device).unsqueeze(1)


def paper_scores(model, images, target, method: str, chosen: Protocol) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Average Drop, Increase in Confidence, Coherency, Complexity and ADCC per image, as the
    Recipro-CAM authors' ``ADCC`` function computes them (see :mod:`.protocol`), and the
    upsampled map they were computed from."""
    params = chosen.params_of(method)
    low = native_maps(method, model, images, target, chosen.layer, **params)
    size = images.shape[-2:]
    up = bicubic_pil(low, size) if chosen.upsampling == "bicubic-pil" else upsample(low, size)
    explained = model_input_explanation(model, images, up)
    full, masked = confidence(model, images, target), confidence(model, explained, target)
    again = native_maps(method, model, explained.clamp(0, 1), target, chosen.layer, **params)
    scores = {"average_drop": confidence_drop(full, masked), "increase_in_confidence": (full < masked).double(),
              "coherency": coherency_of_maps(low, again).per_image, "complexity": complexity(low).per_image}
    scores["adcc"] = adcc(scores["coherency"], scores["complexity"], scores["average_drop"])
    return scores, up


def best_box_iou(saliency: torch.Tensor, boxes: torch.Tensor, threshold: float) -> float:
    """Eq. (7) against several ground-truth boxes: the IoU of the map's box with the best-matching one."""
    found = estimated_box(saliency, threshold)
    return max(box_iou(found, tuple(box.tolist())) for box in boxes)


def localisation_scores(saliency: torch.Tensor, boxes: torch.Tensor, wanted, threshold: float) -> dict:
    """Pointing game (eq. 6, on the union of the boxes) and IoU (eq. 7, best box) of one (1, H, W) map."""
    scores: dict[str, torch.Tensor] = {}
    if len(boxes) == 0:  # the crop removed every box: no localisation for this image
        return {name: torch.tensor([float("nan")], dtype=torch.float64) for name in wanted}
    height, width = saliency.shape[-2:]
    union = torch.zeros(1, height, width, dtype=torch.bool)
    for x0, y0, x1, y1 in boxes.tolist():
        union[0, y0:y1, x0:x1] = True
    if "pointing_game" in wanted:
        scores["pointing_game"] = energy_pointing_game(saliency, union).per_image
    if "iou" in wanted:
        scores["iou"] = torch.tensor([best_box_iou(saliency[0], boxes, threshold)], dtype=torch.float64)
    return scores


def score_image(model, image: torch.Tensor, boxes: torch.Tensor | None, target: torch.Tensor, method: str,
                chosen: Protocol) -> dict[str, float]:
    """Every metric of ``chosen`` for one image (1, 3, H, W) and one method: ``{metric: value}``.

    ``boxes`` (n, 4) in the image's frame, or ``None`` (no localisation metrics then).
    """
    wanted = set(chosen.metrics)
    localisation = {"pointing_game", "iou"} & wanted if boxes is not None else set()
    params = chosen.params_of(method)
    scores: dict[str, torch.Tensor] = {}
    if chosen.masking == "pixels" and chosen.map_resolution == "input":
        saliency = explain(method, model, image, target=target, layer=chosen.layer, **params).cpu()

        def explainer(images, again_target):
            return explain(method, model, images, target=again_target, layer=chosen.layer, **params)

        found = evaluate(model, image.cpu(), saliency, target, explainer, steps=chosen.steps,
                         threshold=chosen.threshold, metrics=wanted - {"pointing_game", "iou"})
        scores = {name: value.per_image for name, value in found.items() if name in wanted}
    elif chosen.masking == "model-input" and chosen.map_resolution == "layer":
        found_paper, up = paper_scores(model, image, target, method, chosen)
        scores = {name: value for name, value in found_paper.items() if name in wanted}
        saliency = check_saliency(up.clamp(0, 1))  # the other metrics take maps in [0, 1]
        extra = wanted - set(found_paper) - {"pointing_game", "iou"}
        if extra:
            found = evaluate(model, image.cpu(), saliency, target, method, steps=chosen.steps, metrics=extra)
            scores.update({name: found[name].per_image for name in extra})
    else:
        raise ValueError(f"masking {chosen.masking!r} with map_resolution {chosen.map_resolution!r} is no protocol "
                         "we implement; use pixels + input (the book's) or model-input + layer (Recipro-CAM's code)")
    if localisation and boxes is not None:
        scores.update(localisation_scores(saliency, boxes, localisation, chosen.threshold))
    return {name: float(value.reshape(-1)[0]) for name, value in scores.items()}
