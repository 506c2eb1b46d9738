"""``cs.overlay`` and ``cs.save_overlay`` (issue 19): an RGB array, a PNG that never overwrites unasked."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import camsurvey as cs


def test_overlay_blends_the_colormap_over_the_image_with_alpha():
    image = torch.full((1, 3, 8, 8), 0.5)
    saliency = torch.zeros(8, 8)
    saliency[:4] = 1.0
    from matplotlib import colormaps

    expected_hot = np.round(255 * (0.7 * 0.5 + 0.3 * np.array(colormaps["viridis"](1.0)[:3])))
    out = cs.overlay(image, saliency, alpha=0.3, colormap="viridis")
    assert out.dtype == np.uint8 and out.shape == (8, 8, 3)
    assert np.array_equal(out[0, 0], expected_hot.astype(np.uint8))
    assert np.array_equal(cs.overlay(image, saliency, alpha=0.0), np.full((8, 8, 3), 128, dtype=np.uint8))


def test_overlay_takes_arrays_and_resizes_a_smaller_map():
    pixels = np.zeros((16, 12, 3), dtype=np.uint8)
    out = cs.overlay(pixels, np.ones((4, 3)) * 0.5)
    assert out.shape == (16, 12, 3)


@pytest.mark.parametrize("saliency, alpha, colormap, words", [
    (torch.full((8, 8), 2.0), 0.5, "jet", r"\[0, 1\]"),
    (torch.zeros(2, 8, 8), 0.5, "jet", "one"),
    (torch.zeros(8, 8), 1.5, "jet", "alpha"),
    (torch.zeros(8, 8), 0.5, "no-such-map", "colormap"),
])
def test_bad_overlay_arguments_are_refused(saliency, alpha, colormap, words):
    with pytest.raises(ValueError, match=words):
        cs.overlay(torch.rand(3, 8, 8), saliency, alpha=alpha, colormap=colormap)


def test_save_overlay_writes_a_png_and_never_overwrites_unless_asked(tmp_path):
    image, saliency = torch.rand(1, 3, 10, 10), torch.rand(10, 10)
    path = cs.save_overlay(tmp_path / "out" / "cat.png", image, saliency)
    assert np.array_equal(np.asarray(Image.open(path)), cs.overlay(image, saliency))
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        cs.save_overlay(path, image, torch.zeros(10, 10))
    assert path.read_bytes() == before
    cs.save_overlay(path, image, torch.zeros(10, 10), overwrite=True)
    assert path.read_bytes() != before
    assert [p.name for p in path.parent.iterdir()] == ["cat.png"]  # no temporary file left


def test_save_overlay_refuses_the_projects_data_folder_and_other_formats(tmp_path):
    from camsurvey.files import DATA_DIR

    with pytest.raises(ValueError, match="data/ or book/"):
        cs.save_overlay(DATA_DIR / "x.png", torch.rand(3, 8, 8), torch.rand(8, 8))
    with pytest.raises(ValueError, match=r"\.png"):
        cs.save_overlay(tmp_path / "x.jpg", torch.rand(3, 8, 8), torch.rand(8, 8))
