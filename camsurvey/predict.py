"""Class predictions: probabilities and top-k tables."""

from __future__ import annotations

import torch

from .common import batches, check_int
from .models.base import CamModel
from .plumbing import check_images


def predict(model: CamModel, images: torch.Tensor) -> torch.Tensor:
    """Softmax class probabilities, (B, classes)."""
    images = check_images(images, model)
    with torch.no_grad():
        return torch.softmax(model(images), dim=1)


def top_k(model: CamModel, images: torch.Tensor, k: int = 5) -> list[list[tuple[int, str, float]]]:
    """For each image, its ``k`` most probable classes as ``(index, name, probability)``."""
    check_int(k, "k", maximum=model.num_classes)
    probabilities, indices = predict(model, images).topk(k, dim=1)
    return [[(int(i), model.categories[int(i)], float(p)) for p, i in zip(row_p, row_i)]
            for row_p, row_i in zip(probabilities, indices)]


def predict_labels(model: CamModel, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """The top-1 class of each image, (B,) on the CPU, in batches of ``batch_size`` (no gradients)."""
    images = check_images(images, model)
    with torch.no_grad():
        return torch.cat([model(images[chunk]).argmax(1) for chunk in batches(len(images), batch_size)]).cpu()
