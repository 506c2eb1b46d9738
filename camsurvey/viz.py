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


LABEL_SIZE = 10  # points: panel titles and row labels, legible at the book's column width


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
        ax.set_title(title, fontsize=LABEL_SIZE)
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


def saliency_grid(images: torch.Tensor, maps: dict, row_labels=None, boxes=None, size: float = 1.9):
    """One row per image, a first column with the photo and one column per method, and a
    colour bar that reads the overlay's colours as saliency.

    ``maps``: ``method name -> (B, H, W)`` saliency tensor in [0, 1] (NaN: no overlay).
    """
    rows, columns = len(images), len(maps) + 1
    fig, axes = plt.subplots(rows, columns, figsize=(size * columns + 0.6, size * rows + 0.3), squeeze=False,
                             layout="constrained")
    for r in range(rows):
        box = boxes[r] if boxes is not None else None
        overlay(axes[r, 0], images[r], None, title="input" if r == 0 else None, box=box)
        if row_labels is not None:
            axes[r, 0].set_ylabel(row_labels[r], fontsize=LABEL_SIZE)
        for c, (name, saliency) in enumerate(maps.items(), start=1):
            overlay(axes[r, c], images[r], saliency[r], title=name if r == 0 else None, box=box)
    saliency_colorbar(fig, axes)
    return fig


def saliency_colorbar(fig, axes, cmap: str = "jet"):
    """The colour bar of :func:`overlay`'s maps: 0 (blue) to 1 (red), each map scaled to [0, 1]."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    bar = fig.colorbar(ScalarMappable(Normalize(0, 1), cmap), ax=np.asarray(axes).ravel().tolist(),
                       shrink=min(0.9, 0.45 + 0.15 * np.asarray(axes).shape[0]), aspect=25, pad=0.01)
    bar.set_label("saliency (map scaled to [0, 1])", fontsize=LABEL_SIZE)
    bar.ax.tick_params(labelsize=LABEL_SIZE - 1)
    return bar


def show_map(saliency: torch.Tensor, ax=None, title=None, cmap="viridis", vmin=None, vmax=None):
    """A single (h, w) map without the image (e.g. raw activations or masks); ``vmin``/``vmax``
    fix the colour scale (default: the map's own range)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(2.5, 2.5))
    ax.imshow(saliency.detach().cpu().numpy(), cmap=cmap, vmin=vmin, vmax=vmax)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=LABEL_SIZE)
    return ax


# SmoothGrad's authors show a sensitivity map with its top 1 % clipped (PAIR-code/saliency,
# VisualizeImageGrayscale, percentile=99): a few extreme gradients would leave the rest black.
SENSITIVITY_PERCENTILE = 99.0


def clip_percentile(saliency: torch.Tensor, percentile: float = SENSITIVITY_PERCENTILE) -> torch.Tensor:
    """A (..., H, W) pixel-level map scaled so that its minimum is 0 and its ``percentile``-th
    percentile is 1, the values above clipped: the authors' way of showing a sensitivity map."""
    flat = saliency.detach().flatten(-2).double()
    low = flat.min(-1).values[..., None, None]
    high = torch.quantile(flat, percentile / 100, dim=-1)[..., None, None]
    scaled = (saliency.double() - low) / (high - low).clamp_min(torch.finfo(torch.float64).tiny)
    return scaled.clamp(0, 1).to(saliency.dtype)


def show_sensitivity(saliency: torch.Tensor, ax=None, title=None):
    """A pixel-level (H, W) map as SmoothGrad's authors show one: grey on black, top 1 % clipped."""
    return show_map(clip_percentile(saliency), ax=ax, title=title, cmap="gray", vmin=0, vmax=1)


def overlay_row(images: torch.Tensor, saliency: torch.Tensor, titles=None, size: float = 2.2):
    """One row: each image with its map blended on top, and the maps' colour bar."""
    fig, axes = plt.subplots(1, len(images), figsize=(size * len(images) + 0.6, size + 0.3), squeeze=False,
                             layout="constrained")
    for i, ax in enumerate(axes[0]):
        overlay(ax, images[i], saliency[i], title=titles[i] if titles else None)
    saliency_colorbar(fig, axes)
    return fig


# --- overlays as images (cs.overlay, cs.save_overlay) ------------------------------------------

def rgb_array(image) -> np.ndarray:
    """An image as a float (H, W, 3) array in [0, 1]: a (3, H, W) or (1, 3, H, W) tensor in [0, 1],
    an (H, W, 3) array (uint8, or float in [0, 1]) or a PIL image."""
    if isinstance(image, torch.Tensor):
        if image.ndim == 4 and image.shape[0] == 1:
            image = image[0]
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"image must be a (3, H, W) or (1, 3, H, W) tensor, got shape {tuple(image.shape)}")
        return image.detach().float().cpu().permute(1, 2, 0).clamp(0, 1).numpy()
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ValueError(f"image must be (H, W, 3) RGB, got an array of shape {array.shape}")
    array = array[..., :3]
    return array.astype(np.float64) / 255.0 if array.dtype == np.uint8 else np.clip(array.astype(np.float64), 0, 1)


def overlay_image(image, saliency, alpha: float = 0.5, colormap: str = "jet") -> np.ndarray:
    """``image`` with ``saliency`` blended on top in ``colormap``: an (H, W, 3) uint8 RGB array
    (``camsurvey.overlay``; :func:`overlay` draws on matplotlib axes instead).

    ``saliency``: one (H, W) map in [0, 1] (a tensor, (1, H, W) too, or an array), resized
    bilinearly to the image's size if it differs. ``alpha``: the map's weight, 0 (image only)
    to 1 (map only). ``colormap``: any matplotlib colormap name.
    """
    from matplotlib import colormaps

    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
    if colormap not in colormaps:
        raise ValueError(f"unknown colormap {colormap!r}; use a matplotlib colormap such as 'jet', 'viridis', 'inferno'")
    pixels = rgb_array(image)
    heat = torch.as_tensor(np.asarray(saliency.detach().cpu() if isinstance(saliency, torch.Tensor) else saliency),
                           dtype=torch.float32)
    if heat.ndim == 3 and heat.shape[0] == 1:
        heat = heat[0]
    if heat.ndim != 2:
        raise ValueError(f"saliency must be one (H, W) map, got shape {tuple(heat.shape)}; pass saliency[b] for image b")
    if not torch.isfinite(heat).all() or heat.min() < 0 or heat.max() > 1:
        raise ValueError("saliency must be finite and in [0, 1] (what camsurvey.explain returns)")
    if tuple(heat.shape) != pixels.shape[:2]:
        heat = torch.nn.functional.interpolate(heat[None, None], size=pixels.shape[:2], mode="bilinear",
                                               align_corners=False)[0, 0].clamp(0, 1)
    colours = colormaps[colormap](heat.numpy())[..., :3]
    return np.round(255 * ((1 - alpha) * pixels + alpha * colours)).astype(np.uint8)


def save_overlay(path, image, saliency, alpha: float = 0.5, colormap: str = "jet", overwrite: bool = False):
    """Write :func:`overlay_image` as a PNG at ``path`` (``camsurvey.save_overlay``); returns the path.

    An existing file is replaced only with ``overwrite=True``; the PNG is written to a
    temporary file beside ``path`` and moved into place when complete, so a failure leaves no
    half-written file. The project's own ``data/`` and ``book/`` are refused.
    """
    import os
    import tempfile
    from pathlib import Path

    from PIL import Image

    from .files import PROTECTED

    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file path (str or pathlib.Path), got {type(path).__name__}")
    target = Path(path).expanduser()
    target = target.parent.resolve() / target.name
    if any(target == folder.resolve() or folder.resolve() in target.parents for folder in PROTECTED):
        raise ValueError(f"refusing to write {target}: it is inside the project's data/ or book/; choose a folder "
                         "of your own")
    if target.suffix.lower() != ".png":
        raise ValueError(f"save_overlay writes PNG files; give a name ending in .png, got {target.name!r}")
    if (target.exists() or target.is_symlink()) and not overwrite:
        raise FileExistsError(f"{target} exists; pass overwrite=True to replace it, or choose another name")
    pixels = overlay_image(image, saliency, alpha, colormap)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    os.close(handle)
    try:
        Image.fromarray(pixels).save(temporary, format="PNG")
        os.replace(temporary, target)  # a link at target is replaced, never written through
    finally:
        Path(temporary).unlink(missing_ok=True)
    return target
