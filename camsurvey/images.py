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
import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .common import check_int
from .files import DATA_DIR
from .typing import Box, ImageLike

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
            return pil_to_rgb(Image.open(handle))
    import skimage.data

    return getattr(skimage.data, name)()


def _unit_to_uint8(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] as 8-bit pixels (rounded)."""
    return np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8)


def _float_to_unit(values: np.ndarray, what: str) -> np.ndarray:
    """Floating-point pixels scaled to [0, 1]: as they are when they lie in [0, 1], divided by 255
    when they lie in [0, 255]; anything else (NaN, negative, larger) is refused."""
    values = values.astype(np.float64)
    if not np.isfinite(values).all():
        raise ValueError(f"{what} contains NaN or Inf pixels; replace them first")
    low, high = float(values.min()), float(values.max())
    if low >= 0 and high <= 1:
        return values
    if low >= 0 and high <= 255:
        return values / 255.0
    raise ValueError(f"{what} has floating-point pixels in [{low:.3g}, {high:.3g}]; camsurvey reads float images "
                     "in [0, 1] (or 0..255); rescale it first")


def pil_to_rgb(image: Image.Image, what: str = "the image") -> np.ndarray:
    """A PIL image as (h, w, 3) uint8 RGB pixels, read the way a viewer shows it.

    EXIF orientation is applied (a phone photo is upright); 16-bit images (``I;16``, ``I``)
    are scaled from 0..65535 and float images (``F``, e.g. a TIFF) from [0, 1] to 8 bits,
    instead of being clipped at 255 (all white) or truncated to 0/1 (all black).
    """
    image = ImageOps.exif_transpose(image)
    if image.mode.startswith("I;16") or image.mode == "I":
        values = np.asarray(image).astype(np.float64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise ValueError(f"{what} holds 32-bit integer pixels outside 0..65535; convert it to 8 or 16 bits first")
        grey = _unit_to_uint8(values / 65535.0)
    elif image.mode == "F":
        grey = _unit_to_uint8(_float_to_unit(np.asarray(image), what))
    else:
        return np.asarray(image.convert("RGB"))
    return np.stack([grey] * 3, axis=-1)


def array_to_rgb(pixels: np.ndarray, what: str = "the array") -> np.ndarray:
    """An image held in memory as a numpy array, as (h, w, 3) uint8 RGB pixels.

    Accepted: (h, w) grey or (h, w, 3|4) colour (channels last; (3, h, w) channels-first too), as
    uint8 (0..255), uint16 (0..65535), bool, or floats in [0, 1].
    """
    if pixels.ndim == 3 and pixels.shape[0] in (1, 3, 4) and pixels.shape[-1] not in (1, 3, 4):
        pixels = np.moveaxis(pixels, 0, -1)  # channels first, as torch keeps them
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    if pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[-1] not in (3, 4)) or 0 in pixels.shape:
        raise ValueError(f"{what} has shape {pixels.shape}; an image is (H, W) grey or (H, W, 3) RGB "
                         "(channels last; (3, H, W) is read too)")
    if pixels.dtype == np.bool_:
        pixels = pixels.astype(np.uint8) * 255
    elif pixels.dtype == np.uint16:
        pixels = _unit_to_uint8(pixels / 65535.0)
    elif np.issubdtype(pixels.dtype, np.floating):
        pixels = _unit_to_uint8(_float_to_unit(pixels, what))
    elif pixels.dtype != np.uint8:
        raise TypeError(f"{what} has dtype {pixels.dtype}; give uint8 (0..255), uint16 or floats in [0, 1]")
    if pixels.ndim == 2:
        pixels = np.stack([pixels] * 3, axis=-1)
    return np.ascontiguousarray(pixels[..., :3])


def _open_file(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return pil_to_rgb(image, repr(str(path)))
    except Image.DecompressionBombError as error:
        raise ValueError(f"{str(path)!r} is too large to read safely ({error}); resize it below "
                         f"{Image.MAX_IMAGE_PIXELS} pixels first") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ValueError(f"{str(path)!r} is not an image file PIL can read: {error}") from None


def read_photo(image: ImageLike) -> np.ndarray:
    """The original (h, w, 3) uint8 RGB pixels of ``image``: a bundled photo's name, an image
    file's path, or an image already in memory (a PIL image, a numpy array, a torch tensor
    (3, H, W) or (1, 3, H, W) with values in [0, 1])."""
    if isinstance(image, str) and image in photo_annotations():
        pixels = _read_bundled(image)
    elif isinstance(image, Image.Image):
        pixels = pil_to_rgb(image, "the PIL image")
    elif isinstance(image, np.ndarray):
        pixels = array_to_rgb(image, "the numpy array")
    elif isinstance(image, torch.Tensor):
        tensor = image.detach()
        if tensor.ndim == 4 and tensor.shape[0] == 1:
            tensor = tensor[0]
        if tensor.layout != torch.strided or tensor.is_meta:
            raise TypeError("the image tensor must be an ordinary dense tensor; use tensor.to_dense()")
        pixels = array_to_rgb(tensor.cpu().numpy(), "the image tensor")
    elif isinstance(image, (str, os.PathLike)):
        path = Path(image).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"no bundled photo or image file {str(image)!r}; bundled photos are "
                f"{bundled_photos()}, or give the path of a PNG/JPEG file"
            )
        pixels = _open_file(path)
    else:
        raise TypeError(f"an image is a bundled photo's name, a file path, a PIL image, a numpy array or a tensor, "
                        f"got {type(image).__name__}")
    if pixels.ndim == 2:
        pixels = np.stack([pixels] * 3, axis=-1)
    return np.ascontiguousarray(pixels[..., :3])


def _check_size(size):
    check_int(size, "size", minimum=32, hint="the side of the square image in pixels")


def load_image(image: ImageLike, size: int = 224) -> torch.Tensor:
    """A (1, 3, size, size) float tensor in [0, 1] from a bundled photo's name, an image path, or an
    image in memory (PIL image, numpy array, tensor; see :func:`read_photo`).

    The image is resized (bicubic, from 8-bit pixels) to ``size`` x ``size`` without cropping.
    """
    _check_size(size)
    square = np.asarray(Image.fromarray(read_photo(image)).resize((size, size), Image.Resampling.BICUBIC))
    return torch.from_numpy(square.copy()).permute(2, 0, 1).float().div(255).unsqueeze(0)


def load_images(images: Sequence[ImageLike], size: int = 224) -> torch.Tensor:
    """Several images (a list of anything :func:`load_image` takes) stacked into one (B, 3, size, size) batch."""
    if isinstance(images, (str, os.PathLike, Image.Image, np.ndarray, torch.Tensor)):
        raise TypeError(f"load_images takes a list of images, got one {type(images).__name__} ({str(images)[:40]!r}); "
                        "use load_images([image]) or load_image(image)")
    images = list(images)
    if not images:
        raise ValueError("load_images needs at least one image (a list of photo names or paths)")
    return torch.cat([load_image(image, size) for image in images])


def load_box(name: str, size: int = 224) -> tuple[int, int, int, int]:
    """The ground-truth box ``(x0, y0, x1, y1)`` of a bundled photo in :func:`load_image`'s frame."""
    _check_size(size)
    if name not in photo_annotations():
        raise ValueError(f"no box for {name!r}; boxes exist for the bundled photos {bundled_photos()}")
    height, width = read_photo(name).shape[:2]
    x0, y0, x1, y1 = photo_annotations()[name]["box"]
    return (round(x0 * size / width), round(y0 * size / height), round(x1 * size / width), round(y1 * size / height))


def box_mask(box: Box, size: int = 224) -> torch.Tensor:
    """A (size, size) boolean mask that is True inside ``box``."""
    x0, y0, x1, y1 = box
    mask = torch.zeros(size, size, dtype=torch.bool)
    mask[y0:y1, x0:x1] = True
    return mask
