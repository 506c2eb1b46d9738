"""The ONNX runtime follows the PyTorch path's rules: one constancy rule, checked manifests and shapes.

These tests export a tiny model (a second each), not EfficientNet, so they stay fast.
"""

from __future__ import annotations

import json
import shutil
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

import camsurvey as cs
from camsurvey import common, deploy, plumbing
from camsurvey.deploy import runtime
from camsurvey.models.base import CamModel, GlobalAvgPool, Normalize


def tiny_model(constant: float | None = None) -> CamModel:
    torch.manual_seed(0)
    stages = OrderedDict(normalize=Normalize([0.5] * 3, [0.25] * 3),
                         conv=nn.Sequential(nn.Conv2d(3, 6, 3, stride=2, padding=1), nn.ReLU()),
                         pool=GlobalAvgPool(), fc=nn.Linear(6, 4))
    model = CamModel(stages, name="tiny", default_layer="conv", categories=list("abcd")).eval().requires_grad_(False)
    if constant is not None:
        with torch.no_grad():
            model.conv[0].weight.zero_()
            model.conv[0].bias.fill_(constant)
    return model


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return deploy.export(tiny_model(), tmp_path_factory.mktemp("tiny") / "e", input_size=32, threads=1)


def maps_to_judge():
    generator = torch.Generator().manual_seed(0)
    maps = torch.rand(12, 7, 7, generator=generator)
    for i, value in enumerate((3.7, 1e-6, 2e5, 0.0)):
        maps[i] = value  # constant at any scale
    maps[4] = 3.7 + 1e-7 * torch.rand(7, 7, generator=generator)  # rounding noise: constant
    maps[5] = 3.7 + 1e-4 * torch.rand(7, 7, generator=generator)  # a small but real pattern
    maps[6] = -2.0  # constant and negative
    return maps


def test_the_runtime_decides_constancy_by_the_same_rule_and_tolerance_as_torch():
    maps = maps_to_judge()
    assert runtime.CONSTANT_RTOL == plumbing.CONSTANT_RTOL == common.CONSTANT_RTOL
    assert np.array_equal(runtime.is_constant(maps.numpy()), plumbing.is_constant(maps).numpy())
    assert plumbing.is_constant(maps)[[0, 1, 2, 3, 4, 6]].all() and not plumbing.is_constant(maps)[5]


@pytest.mark.parametrize("size", [(7, 7), (40, 40), (50, 31)])
def test_the_runtime_finishes_a_map_as_torch_does(size):
    maps = maps_to_judge()
    ours, theirs = runtime.finish(maps.numpy(), size), plumbing.finish(maps, size).numpy()
    assert ours.shape == theirs.shape == (12, *size)
    ordinary = [i for i in range(12) if i != 5]
    assert np.allclose(ours[ordinary], theirs[ordinary], atol=1e-5)
    # a pattern of 1e-4 on 3.7: both paths keep it; float rounding is a few thousandths of its range
    assert np.allclose(ours[5], theirs[5], atol=1e-2)
    assert not ours[[0, 1, 2, 3, 4, 6]].any() and ours[5].max() == 1
    assert not runtime.norm(runtime.up(np.full((1, 7, 7), 3.7, np.float32), (40, 40))).any()


def test_both_paths_give_zeros_on_a_layer_with_constant_activations(tmp_path):
    model = tiny_model(constant=0.7)
    exported = deploy.export(model, tmp_path / "constant", input_size=32, threads=1)
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    for name, params in (("scorecam", {}), ("ablationcam", {}), ("reciprocam", {"kernel": "point"})):
        on_onnx, on_torch = cs.explain(name, exported, images, **params), cs.explain(name, model, images, **params)
        assert not on_onnx.any() and not on_torch.any(), name


def test_both_paths_agree_on_an_ordinary_layer(export):
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    for name in ("scorecam", "ablationcam", "reciprocam"):
        assert torch.allclose(cs.explain(name, export, images), cs.explain(name, tiny_model(), images), atol=1e-3), name


# --- the manifest and the shapes ---------------------------------------------------------------

def damaged(export, tmp_path, change):
    folder = shutil.copytree(export.folder, tmp_path / "copy")
    manifest = json.loads((folder / runtime.MANIFEST_FILE).read_text())
    change(manifest)
    (folder / runtime.MANIFEST_FILE).write_text(json.dumps(manifest))
    return folder


@pytest.mark.parametrize("file", ["../other/head.onnx", "/etc/passwd", "sub/head.onnx", "..", ""])
def test_a_manifest_whose_file_points_outside_the_export_is_refused(export, tmp_path, file):
    folder = damaged(export, tmp_path, lambda m: m["files"]["head"].update(file=file))
    with pytest.raises(ValueError, match="file name inside the export folder"):
        deploy.load(folder)


def test_a_graph_linked_from_outside_the_export_is_refused(export, tmp_path):
    folder = shutil.copytree(export.folder, tmp_path / "copy")
    outside = tmp_path / "elsewhere.onnx"
    shutil.move(folder / "head.onnx", outside)
    (folder / "head.onnx").symlink_to(outside)
    with pytest.raises(ValueError, match="link out of the export folder"):
        deploy.load(folder)


@pytest.mark.parametrize("field, value, words", [
    ("categories", "abcd", "categories"), ("input_size", [32], "input_size"), ("input_size", [32, -1], "input_size"),
    ("feature_shape", ["6", 16, 16], "feature_shape"), ("layer", 3, "layer"), ("files", [], "files"),
])
def test_a_manifest_with_malformed_fields_is_refused_with_the_field_named(export, tmp_path, field, value, words):
    folder = damaged(export, tmp_path, lambda m: m.update({field: value}))
    with pytest.raises(ValueError, match=words):
        deploy.load(folder)


def test_a_manifest_with_a_malformed_checksum_is_refused(export, tmp_path):
    folder = damaged(export, tmp_path, lambda m: m["files"]["features"].update(sha256="not hex"))
    with pytest.raises(ValueError, match="sha256"):
        deploy.load(folder)


def test_an_onnx_model_called_with_the_wrong_shape_says_what_it_takes(export):
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\)"):
        export(np.zeros((3, 32, 32), np.float32))
    with pytest.raises(ValueError, match="32 x 32"):
        export(np.zeros((1, 3, 40, 40), np.float32))
    with pytest.raises(ValueError, match=r"\(N, 6, 16, 16\)"):
        export.head(np.zeros((1, 5, 16, 16), np.float32))
    assert export(np.zeros((2, 3, 32, 32), np.float32)).shape == (2, 4)


@pytest.mark.parametrize("opset", [99, 3, 17.0, True])
def test_an_opset_the_exporter_cannot_write_is_refused_before_anything_is_written(tmp_path, opset):
    with pytest.raises(ValueError, match="opset"):
        deploy.export(tiny_model(), tmp_path / "e", opset=opset, input_size=32)
    assert not (tmp_path / "e").exists()
