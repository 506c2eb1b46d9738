"""Figures: saliency overlays and method-by-image grids (matplotlib)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch


def to_numpy_image(image: torch.Tensor) -> np.ndarray:
    """A (3, H, W) or (1, 3, H, W) tensor in [0, 1] as an (H, W, 3) array for imshow."""
    image = image.detach().cpu()
    if image.ndim == 4:
        image = image[0]
    return image.permute(1, 2, 0).clamp(0, 1).numpy()


def overlay(ax, image: torch.Tensor, saliency: torch.Tensor | None = None, title: str | None = None,
            alpha: float = 0.5, cmap: str = "jet", box=None):
    """Draw ``image`` with ``saliency`` (H, W) in [0, 1] blended on top, and an optional box."""
    ax.imshow(to_numpy_image(image))
    if saliency is not None:
        ax.imshow(saliency.detach().cpu().numpy(), cmap=cmap, alpha=alpha, vmin=0, vmax=1)
    if box is not None:
        x0, y0, x1, y1 = box
        ax.add_patch(plt.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor="white", lw=1.5))
    if title:
        ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


def saliency_grid(images: torch.Tensor, maps: dict, row_labels=None, boxes=None, size: float = 1.9):
    """One row per image, a first column with the photo and one column per method.

    ``maps``: ``method name -> (B, H, W)`` saliency tensor.
    """
    rows, columns = len(images), len(maps) + 1
    fig, axes = plt.subplots(rows, columns, figsize=(size * columns, size * rows), squeeze=False)
    for r in range(rows):
        box = boxes[r] if boxes is not None else None
        overlay(axes[r, 0], images[r], None, title="input" if r == 0 else None, box=box)
        if row_labels is not None:
            axes[r, 0].set_ylabel(row_labels[r], fontsize=8)
        for c, (name, saliency) in enumerate(maps.items(), start=1):
            overlay(axes[r, c], images[r], saliency[r], title=name if r == 0 else None, box=box)
    fig.tight_layout()
    return fig


def show_map(saliency: torch.Tensor, ax=None, title=None, cmap="viridis"):
    """A single (h, w) map without the image (e.g. raw activations or masks)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(2.5, 2.5))
    ax.imshow(saliency.detach().cpu().numpy(), cmap=cmap)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def overlay_row(images: torch.Tensor, saliency: torch.Tensor, titles=None, size: float = 2.2):
    """One row: each image with its map blended on top."""
    fig, axes = plt.subplots(1, len(images), figsize=(size * len(images), size), squeeze=False)
    for i, ax in enumerate(axes[0]):
        overlay(ax, images[i], saliency[i], title=titles[i] if titles else None)
    fig.tight_layout()
    return fig
