"""The figures' helpers: every saliency figure says how to read its colours."""

import matplotlib.pyplot as plt
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
