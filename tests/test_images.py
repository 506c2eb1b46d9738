"""Images: bundled photos, user files, boxes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import camsurvey as cs


def test_bundled_photos_load_as_unit_range_tensors():
    for name in cs.bundled_photos():
        image = cs.load_image(name, size=96)
        assert image.shape == (1, 3, 96, 96) and image.dtype == torch.float32
        assert 0 <= image.min() and image.max() <= 1


def test_every_bundled_photo_has_a_class_and_a_box_inside_the_image():
    categories = cs.imagenet_categories()
    for name, info in cs.photo_annotations().items():
        assert categories[info["class_index"]] == info["class_name"]
        x0, y0, x1, y1 = cs.load_box(name, 224)
        assert 0 <= x0 < x1 <= 224 and 0 <= y0 < y1 <= 224


def test_user_image_file_loads(tmp_path):
    pixels = (np.arange(40 * 50 * 3) % 256).astype(np.uint8).reshape(40, 50, 3)
    Image.fromarray(pixels).save(tmp_path / "mine.png")
    image = cs.load_image(tmp_path / "mine.png", size=32)
    assert image.shape == (1, 3, 32, 32)


def test_unknown_image_names_the_bundled_photos():
    with pytest.raises(FileNotFoundError, match="chelsea"):
        cs.load_image("no_such_photo")


def test_a_file_that_is_not_an_image_gives_a_clear_error(tmp_path):
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ValueError, match="not an image"):
        cs.load_image(tmp_path / "notes.png")


@pytest.mark.parametrize("size", [0, 8, 2.5, "224"])
def test_bad_sizes_are_rejected(size):
    with pytest.raises(ValueError, match="size"):
        cs.load_image("chelsea", size=size)


def test_box_mask_covers_the_box():
    mask = cs.box_mask((2, 3, 6, 5), size=8)
    assert mask.sum() == 4 * 2 and mask[3, 2] and not mask[5, 6]


# --- images load as a viewer shows them -----------------------------------------------------

def test_a_16_bit_grey_png_keeps_its_grey_levels(tmp_path):
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    pixels = cs.read_photo(tmp_path / "deep.png")
    assert pixels.shape == (64, 64, 3) and pixels[0, 0, 0] == 0 and pixels[-1, -1, 0] == 255
    assert abs(float(pixels.mean()) - 127.5) < 1  # not almost all white (clipped at 255)


def test_a_float_tiff_in_unit_range_is_not_black(tmp_path):
    ramp = np.linspace(0, 1, 64 * 64).reshape(64, 64).astype(np.float32)
    Image.fromarray(ramp).save(tmp_path / "float.tif")
    pixels = cs.read_photo(tmp_path / "float.tif")
    assert pixels.max() == 255 and abs(float(pixels.mean()) - 127.5) < 1
    Image.fromarray(ramp * 3 - 1).save(tmp_path / "odd.tif")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        cs.read_photo(tmp_path / "odd.tif")


def test_a_jpeg_with_exif_orientation_loads_upright(tmp_path):
    stored = np.zeros((20, 40, 3), np.uint8)  # 20 high, 40 wide: red left half, blue right half
    stored[:, :20, 0] = 255
    stored[:, 20:, 2] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(stored).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    pixels = cs.read_photo(tmp_path / "phone.jpg")
    assert pixels.shape == (40, 20, 3)  # upright: taller than wide
    assert pixels[2, 10, 0] > 200 and pixels[-3, 10, 2] > 200  # the left half is now on top


def png_claiming(width: int, height: int) -> bytes:
    """A PNG file whose header claims width x height pixels (and holds almost nothing)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00")) + chunk(b"IEND", b"")


def test_a_png_claiming_to_be_huge_is_refused_with_a_clear_message(tmp_path):
    (tmp_path / "bomb.png").write_bytes(png_claiming(30000, 30000))
    with pytest.raises(ValueError, match="too large"):
        cs.load_image(tmp_path / "bomb.png")


def test_images_in_memory_load_like_the_file(tmp_path):
    pixels = (np.arange(40 * 50 * 3) % 256).astype(np.uint8).reshape(40, 50, 3)
    Image.fromarray(pixels).save(tmp_path / "mine.png")
    from_file = cs.load_image(tmp_path / "mine.png", size=32)
    as_tensor = torch.from_numpy(pixels).permute(2, 0, 1).float() / 255
    for image in (Image.fromarray(pixels), pixels, pixels / 255.0, as_tensor, as_tensor[None],
                  (as_tensor * 255).to(torch.uint8)):
        assert torch.equal(cs.load_image(image, size=32), from_file), type(image).__name__
    grey = cs.load_image(pixels[..., 0], size=32)
    assert torch.equal(grey[:, 0], grey[:, 1])


@pytest.mark.parametrize("image, error, words", [
    (np.zeros((6, 5, 7), np.uint8), ValueError, "shape"),
    (np.full((8, 8, 3), 300.0), ValueError, r"\[0, 1\]"),
    (np.full((8, 8, 3), np.nan), ValueError, "NaN"),
    (np.zeros((8, 8, 3), np.complex64), TypeError, "dtype"),
    (3.5, TypeError, "PIL image"),
])
def test_bad_images_in_memory_are_refused_clearly(image, error, words):
    with pytest.raises(error, match=words):
        cs.load_image(image)


def test_load_images_of_one_name_says_to_give_a_list():
    with pytest.raises(TypeError, match=r"load_images\(\[image\]\)"):
        cs.load_images("chelsea")
    with pytest.raises(ValueError, match="at least one"):
        cs.load_images([])
    assert cs.load_images(("chelsea", "coffee"), size=32).shape == (2, 3, 32, 32)
