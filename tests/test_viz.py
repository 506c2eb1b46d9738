"""The figures' helpers: every saliency figure says how to read its colours."""

import matplotlib.pyplot as plt
import numpy as np
import torch

from camsurvey import viz


def colorbar_labels(fig) -> list[str]:
    return [ax.get_ylabel() for ax in fig.axes if ax.get_label() == "<colorbar>"]


def test_a_saliency_grid_has_one_colour_bar_and_legible_titles():
    images = torch.rand(2, 3, 32, 32)
    maps = {"a": torch.rand(2, 32, 32), "b": torch.full((2, 32, 32), float("nan"))}
    fig = viz.saliency_grid(images, maps, row_labels=["x", "y"])
    assert colorbar_labels(fig) == ["saliency (map scaled to [0, 1])"]
    titles = [ax.title for ax in fig.axes if ax.get_title()]
    assert [t.get_text() for t in titles] == ["input", "a", "b"]
    assert all(t.get_fontsize() >= viz.LABEL_SIZE for t in titles)
    plt.close(fig)


def test_an_overlay_row_has_a_colour_bar():
    fig = viz.overlay_row(torch.rand(3, 3, 32, 32), torch.rand(3, 32, 32), titles=["p", "q", "r"])
    assert len(colorbar_labels(fig)) == 1
    plt.close(fig)


def test_clip_percentile_sets_the_99th_percentile_to_one_and_clips_above_it():
    torch.manual_seed(0)
    saliency = torch.rand(2, 50, 40) ** 8  # heavy-tailed, like a gradient map
    saliency[0, 0, 0] = 1000.0  # one extreme pixel
    shown = viz.clip_percentile(saliency)
    assert shown.shape == saliency.shape and shown.dtype == saliency.dtype
    for image, original in zip(shown, saliency):
        assert image.min() == 0 and image.max() == 1
        bright = (image == 1).float().mean().item()
        assert 0.009 <= bright <= 0.012  # the brightest 1 % (and the pixel at the percentile itself)
        below = original < np.percentile(original.numpy(), 99)
        expected = (original[below] - original.min()) / (np.percentile(original.numpy(), 99) - original.min())
        assert torch.allclose(image[below], expected.float(), atol=1e-6)
    assert saliency[0, 0, 0] == 1000.0  # the caller's map is unchanged
    assert (viz.clip_percentile(torch.zeros(1, 4, 4)) == 0).all()  # a constant map stays finite
