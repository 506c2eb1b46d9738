"""The explorer builds and updates headless: driven by setting widget values, read from its attributes."""

from __future__ import annotations

import datetime
import io

import numpy as np
import pytest
import torch
from PIL import Image

import camsurvey as cs
from camsurvey.book import widgets


@pytest.fixture(scope="module")
def view(model):
    return widgets.explorer(model, photo="chelsea", method="gradcam", size=SIZE)


SIZE = 112  # small images keep the tests quick


def test_explorer_lists_every_registered_method_and_shows_the_first_map(view):
    assert list(view.method.options) == list(cs.METHODS)
    assert view.last_map is not None and view.last_map.shape == (SIZE, SIZE) and torch.isfinite(view.last_map).all()
    assert view.figure is not None and view.overlay.value[:4] == b"\x89PNG"
    top_class = cs.top_k(view.model, cs.load_image("chelsea", SIZE), 1)[0][0][1]
    assert "1 forward" in view.cost.value and top_class in view.classes.value
    assert {"pool", "fc"}.isdisjoint(view.layer.options)


def test_explorer_map_equals_explain_and_changes_with_the_layer(view, model):
    view.method.value = "gradcam"
    view.layer.value = "conv_head"
    image = cs.load_image("chelsea", SIZE)
    assert torch.allclose(view.last_map, cs.explain("gradcam", model, image, target=view.target.value)[0], atol=1e-6)
    before = view.last_map
    view.layer.value = "block11"
    assert view.last_key[2] == "block11" and not torch.allclose(before, view.last_map)


def test_parameter_widgets_are_built_from_the_registry_defaults(view):
    for name, entry in cs.METHODS.items():
        for parameter, default in entry.params.items():
            widget = widgets.parameter_widget(parameter, default, name)
            assert widgets.parameter_value(widget) == default, (name, parameter)
    view.method.value = "smoothgrad"
    assert set(view.params) == set(cs.METHODS["smoothgrad"].params)
    assert "helper" not in {cs.METHODS[m].family for m in view.params["base"].options if m in cs.METHODS}


def test_expensive_methods_wait_for_compute_and_results_are_cached(view):
    view.auto_limit = 8
    view.method.value = "scorecam"
    view.layer.value = "block3"
    assert "press Compute" in view.message and "41 forward" in view.cost.value  # 1 + 40 channels: nothing ran
    computed = view.computations
    view.update(force=True)
    assert view.computations == computed + 1 and view.progress.value == view.progress.max == 41
    view.method.value = "gradcam"
    view.method.value = "scorecam"
    assert view.computations == computed + 2 and view.last_key[1] == "scorecam"  # gradcam ran once, scorecam cached
    view.auto_limit = 64


def test_target_and_photo_choices_update_predictions_and_map(view):
    view.method.value = "gradcam"
    view.photo.value = "coffee"
    assert cs.top_k(view.model, cs.load_image("coffee", SIZE), 1)[0][0][1] in view.classes.value
    assert view.last_key[0] == "coffee"
    second = view.target.options[1][1]
    view.target.value = second
    assert view.last_key[3] == second


def test_uploaded_image_is_explained(view):
    pixels = (np.random.default_rng(0).random((80, 100, 3)) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    view.upload.value = ({"name": "noise.png", "type": "image/png", "size": len(buffer.getvalue()),
                          "content": memoryview(buffer.getvalue()),
                          "last_modified": datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)},)
    assert view.photo.value == widgets.UPLOADED and view.last_key[0].startswith("upload:")
    with pytest.raises(ValueError, match="not an image"):
        widgets.image_from_bytes(b"not an image")


def test_a_method_that_cannot_run_reports_why_instead_of_raising(view):
    view.photo.value = "chelsea"
    view.layer.value = "block5"
    view.method.value = "cam"
    assert "cannot run" in view.message and "gradcam" in view.message
