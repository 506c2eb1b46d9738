"""``camsurvey.load_image``: the bundled photos and any image file, as model-ready tensors.

The bundled photos ship inside scikit-image and matplotlib, so nothing is downloaded.
``data/photos.json`` records, for each, its ImageNet class and a ground-truth box that we
drew on the original photo (pixel corners ``x0, y0, x1, y1``, exclusive of x1/y1).
Every photo is resized (bicubic) to ``size`` x ``size`` without cropping, so the whole
object stays in view; :func:`load_box` scales the box the same way. (With this transform
EfficientNet-Lite0 gives ``chelsea`` "Egyptian cat" with p = 0.77, as its port reports.)
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .common import check_int
from .files import DATA_DIR

PHOTOS_FILE = DATA_DIR / "photos.json"


@lru_cache(maxsize=1)
def photo_annotations() -> dict:
    """``name -> {"source", "class_index", "class_name", "box"}`` for every bundled photo."""
    with open(PHOTOS_FILE) as handle:
        return json.load(handle)["photos"]


def bundled_photos() -> list[str]:
    """Names of the photos camsurvey ships with (through scikit-image and matplotlib)."""
    return list(photo_annotations())


def _read_bundled(name: str) -> np.ndarray:
    source = photo_annotations()[name]["source"]
    if source == "matplotlib":
        import matplotlib.cbook

        with matplotlib.cbook.get_sample_data(f"{name}.jpg", asfileobj=True) as handle:  # type: ignore[union-attr]
            return np.asarray(Image.open(handle).convert("RGB"))
    import skimage.data

    return getattr(skimage.data, name)()


def read_photo(name_or_path) -> np.ndarray:
    """The original (h, w, 3) uint8 RGB pixels of a bundled photo or an image file."""
    if isinstance(name_or_path, str) and name_or_path in photo_annotations():
        pixels = _read_bundled(name_or_path)
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise FileNotFoundError(
                f"no bundled photo or image file {str(name_or_path)!r}; bundled photos are "
                f"{bundled_photos()}, or give the path of a PNG/JPEG file"
            )
        try:
            with Image.open(path) as image:
                pixels = np.asarray(image.convert("RGB"))
        except (UnidentifiedImageError, OSError) as error:
            raise ValueError(f"{str(path)!r} is not an image file PIL can read: {error}") from None
    if pixels.ndim == 2:
        pixels = np.stack([pixels] * 3, axis=-1)
    return np.ascontiguousarray(pixels[..., :3])


def _check_size(size):
    check_int(size, "size", minimum=32, hint="the side of the square image in pixels")


def load_image(name_or_path, size: int = 224) -> torch.Tensor:
    """A (1, 3, size, size) float tensor in [0, 1]: a bundled photo's name or an image path."""
    _check_size(size)
    square = np.asarray(Image.fromarray(read_photo(name_or_path)).resize((size, size), Image.Resampling.BICUBIC))
    return torch.from_numpy(square.copy()).permute(2, 0, 1).float().div(255).unsqueeze(0)


def load_images(names, size: int = 224) -> torch.Tensor:
    """Several images stacked into one (B, 3, size, size) batch."""
    return torch.cat([load_image(name, size) for name in names])


def load_box(name: str, size: int = 224) -> tuple[int, int, int, int]:
    """The ground-truth box ``(x0, y0, x1, y1)`` of a bundled photo in :func:`load_image`'s frame."""
    _check_size(size)
    if name not in photo_annotations():
        raise ValueError(f"no box for {name!r}; boxes exist for the bundled photos {bundled_photos()}")
    height, width = read_photo(name).shape[:2]
    x0, y0, x1, y1 = photo_annotations()[name]["box"]
    return (round(x0 * size / width), round(y0 * size / height), round(x1 * size / width), round(y1 * size / height))


def box_mask(box, size: int = 224) -> torch.Tensor:
    """A (size, size) boolean mask that is True inside ``box``."""
    x0, y0, x1, y1 = box
    mask = torch.zeros(size, size, dtype=torch.bool)
    mask[y0:y1, x0:x1] = True
    return mask
