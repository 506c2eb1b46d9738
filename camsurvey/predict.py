"""Class predictions: probabilities and top-k tables."""

from __future__ import annotations

import torch

from .models.base import CamModel
from .plumbing import check_images


def predict(model: CamModel, images: torch.Tensor) -> torch.Tensor:
    """Softmax class probabilities, (B, classes)."""
    images = check_images(images, model)
    with torch.no_grad():
        return torch.softmax(model(images), dim=1)


def top_k(model: CamModel, images: torch.Tensor, k: int = 5) -> list[list[tuple[int, str, float]]]:
    """For each image, its ``k`` most probable classes as ``(index, name, probability)``."""
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= model.num_classes:
        raise ValueError(f"k must be an integer from 1 to {model.num_classes}, got {k!r}")
    probabilities, indices = predict(model, images).topk(k, dim=1)
    return [[(int(i), model.categories[int(i)], float(p)) for p, i in zip(row_p, row_i)]
            for row_p, row_i in zip(probabilities, indices)]
