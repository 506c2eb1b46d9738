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
