"""Gradient-free CAMs on an ONNX export (camsurvey.deploy): same maps, clear errors, safe files.

Recipro-CAM and Ablation-CAM run at the default layer on every bundled photo. Score-CAM costs
1 + K forward passes a photo in *each* runtime, so it is compared on an export split at the
layer "stem" (32 channels) of 96 x 96 photos, where it costs 33; the book's deployment page
compares it at the default layer.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from oracles import pearson

import camsurvey as cs
from camsurvey import deploy, files, plumbing
from camsurvey.deploy import runtime
from camsurvey.methods import perturbation

SMALL = 96  # the photo size of the Score-CAM comparison


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    """EfficientNet-Lite0 exported at its default layer, with one ONNX Runtime thread."""
    return deploy.export(model, tmp_path_factory.mktemp("onnx") / "lite0", threads=1)


@pytest.fixture()
def copy_of_export(exported, tmp_path):
    """A copy of the export that a test may damage."""
    return shutil.copytree(exported.folder, tmp_path / "copy")


def test_export_writes_the_two_graphs_and_the_manifest_into_the_folder_the_user_chose(exported, model):
    assert sorted(p.name for p in exported.folder.iterdir()) == ["camsurvey-onnx.json", "features.onnx", "head.onnx"]
    manifest = json.loads((exported.folder / "camsurvey-onnx.json").read_text())
    assert manifest["model"] == model.name and manifest["layer"] == model.default_layer == exported.default_layer
    assert manifest["categories"] == model.categories and manifest["input_size"] == [224, 224]
    assert manifest["feature_shape"] == [1280, 7, 7]
    assert manifest["versions"]["torch"] == torch.__version__
    assert manifest["files"]["head"]["sha256"] == cs.models.sha256_of(exported.folder / "head.onnx")


def test_export_without_a_folder_uses_a_fresh_temporary_folder_outside_the_repository(model):
    onnx_model = deploy.export(model, layer="block15", threads=1)
    try:
        assert files.ROOT not in onnx_model.folder.parents
        assert (onnx_model.folder / "features.onnx").is_file()
    finally:
        shutil.rmtree(onnx_model.folder)


def test_export_leaves_every_module_of_the_model_in_eval_mode(exported, model):
    assert not any(module.training for module in model.modules())


@pytest.mark.parametrize("protected", ["data", "book"])
def test_export_into_the_repositorys_data_or_book_folder_is_refused(model, protected):
    target = files.ROOT / protected / "onnx-export-test"
    with pytest.raises(ValueError, match=f"{protected}/ folder"):
        deploy.export(model, target)
    assert not target.exists()


def test_export_refuses_to_overwrite_an_earlier_export_unless_asked(model, tmp_path):
    first = deploy.export(model, tmp_path, layer="block15", threads=1)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        deploy.export(model, tmp_path, threads=1)
    assert deploy.load(tmp_path).default_layer == first.default_layer == "block15"
    assert deploy.export(model, tmp_path, overwrite=True, threads=1).default_layer == "conv_head"


@pytest.mark.parametrize("name", ["reciprocam", "ablationcam"])
def test_head_methods_on_onnx_runtime_equal_pytorch_on_every_bundled_photo(exported, model, photos, name):
    on_onnx, on_torch = cs.explain(name, exported, photos), cs.explain(name, model, photos)
    assert on_onnx.shape == on_torch.shape == photos.shape[:1] + photos.shape[-2:]
    assert 0 <= on_onnx.min() and on_onnx.max() <= 1
    assert all(pearson(a, b) >= 0.999 for a, b in zip(on_onnx, on_torch))


@pytest.mark.parametrize("kernel", ["gaussian", "gaussian-window"])
def test_reciprocam_kernels_on_onnx_runtime_equal_pytorch(exported, model, photos, kernel):
    on_onnx = cs.explain("reciprocam", exported, photos[:2], kernel=kernel)
    on_torch = cs.explain("reciprocam", model, photos[:2], kernel=kernel)
    assert all(pearson(a, b) >= 0.999 for a, b in zip(on_onnx, on_torch))


def test_runtime_refuses_an_unknown_reciprocam_kernel(exported, photos):
    with pytest.raises(ValueError, match="gaussian-window"):
        runtime.explain("reciprocam", exported, photos[:1].numpy(), kernel="box")


@pytest.fixture(scope="module")
def small_export(model, tmp_path_factory):
    """The export for Score-CAM: split at "stem" (32 channels), for 96 x 96 photos."""
    return deploy.export(model, tmp_path_factory.mktemp("onnx") / "stem", "stem", input_size=SMALL, threads=1)


def test_scorecam_on_onnx_runtime_equals_pytorch_on_every_bundled_photo(model, small_export):
    photos = cs.load_images(cs.bundled_photos(), size=SMALL)
    on_onnx = cs.explain("scorecam", small_export, photos, batch_size=16)
    on_torch = cs.explain("scorecam", model, photos, layer="stem", batch_size=16)
    assert all(pearson(a, b) >= 0.999 for a, b in zip(on_onnx, on_torch))


NO_TORCH_SCRIPT = """
import sys
sys.modules["torch"] = None  # from here on, any import of torch raises ImportError
import numpy as np
from camsurvey.deploy import runtime

images = np.load(sys.argv[2])
model = runtime.load(sys.argv[1], threads=1)
maps = {name: runtime.explain(name, model, images) for name in ("reciprocam", "ablationcam")}
np.savez(sys.argv[3], **maps)
print(sorted(name for name, module in sys.modules.items()
             if module is not None and name.split(".")[0] in ("torch", "torchvision")))
"""


def test_onnx_methods_run_in_a_process_where_torch_cannot_be_imported(exported, model, photos, tmp_path):
    np.save(tmp_path / "photos.npy", photos[:2].numpy())
    done = subprocess.run([sys.executable, "-c", NO_TORCH_SCRIPT, str(exported.folder), str(tmp_path / "photos.npy"),
                           str(tmp_path / "maps.npz")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"  # neither torch nor torchvision was imported
    maps = np.load(tmp_path / "maps.npz")
    for name in ("reciprocam", "ablationcam"):
        on_torch = cs.explain(name, model, photos[:2])
        assert maps[name].dtype == np.float32 and maps[name].shape == (2, 224, 224)
        assert all(pearson(torch.from_numpy(a), b) >= 0.999 for a, b in zip(maps[name], on_torch))


def test_onnx_methods_take_the_same_parameters_and_defaults_as_the_pytorch_ones():
    for name in runtime.METHODS:
        assert runtime.parameters(name) == cs.METHODS[name].params
    assert runtime.SCORECAM_BATCH_SIZE == perturbation.SCORECAM_BATCH_SIZE
    assert runtime.ABLATIONCAM_BATCH_SIZE == perturbation.ABLATIONCAM_BATCH_SIZE
    assert runtime.RECIPROCAM_BATCH_SIZE == perturbation.RECIPROCAM_BATCH_SIZE


def test_the_numpy_formulas_equal_the_torch_ones():
    maps = torch.rand(2, 5, 7, 7, generator=torch.Generator().manual_seed(0))
    maps[0, 1] = 0.25  # a constant map: norm(.) gives zeros in both
    assert np.allclose(runtime.up(maps.numpy(), (224, 224)), plumbing.upsample(maps, (224, 224)).numpy(), atol=1e-6)
    assert np.allclose(runtime.up(maps.numpy(), (50, 31)), plumbing.upsample(maps, (50, 31)).numpy(), atol=1e-6)
    assert np.allclose(runtime.norm(maps.numpy()), plumbing.normalize(maps).numpy(), atol=1e-6)
    assert not runtime.norm(maps.numpy())[0, 1].any()
    assert runtime.RECIPROCAM_KERNELS == tuple(perturbation.RECIPROCAM_KERNELS)
    features = torch.rand(5, 4, 6, generator=torch.Generator().manual_seed(1))
    for kernel in runtime.RECIPROCAM_KERNELS:
        masks = perturbation.reciprocam_masks(4, 6, kernel)
        assert np.allclose(runtime.reciprocam_masks(4, 6, kernel), masks.numpy())
        for chunk in (slice(0, 24), slice(7, 13)):
            assert np.allclose(runtime.reciprocam_features(features.numpy(), masks.numpy(), chunk, kernel),
                               perturbation.reciprocam_features(features, masks, chunk, kernel).numpy())
    scores, valid = torch.randn(6), torch.tensor([True, False, True, True, False, True])
    assert np.allclose(runtime.scorecam_weights(scores.numpy(), 0.5, valid.numpy()),
                       perturbation.scorecam_weights(scores, torch.tensor(0.5), valid).numpy(), atol=1e-6)
    assert np.allclose(runtime.ablationcam_weights(2.0, scores.numpy()),
                       perturbation.ablationcam_weights(torch.tensor(2.0), scores).numpy())


def test_runtime_explain_takes_numpy_and_says_what_to_change(exported, photos):
    images = photos[:1].numpy()
    maps = runtime.explain("reciprocam", exported, images, target=285)
    assert isinstance(maps, np.ndarray) and maps.dtype == np.float32 and maps.shape == (1, 224, 224)
    assert 0 <= maps.min() and maps.max() == 1
    with pytest.raises(TypeError, match="numpy array"):
        runtime.explain("reciprocam", exported, photos[:1])
    with pytest.raises(TypeError, match="astype"):
        runtime.explain("reciprocam", exported, (images * 255).astype(np.uint8))
    with pytest.raises(ValueError, match="transpose"):
        runtime.explain("reciprocam", exported, images[0])
    with pytest.raises(ValueError, match="divide by 255"):
        runtime.explain("reciprocam", exported, images * 255)
    with pytest.raises(ValueError, match="NaN"):
        runtime.explain("reciprocam", exported, np.full_like(images, np.nan))
    with pytest.raises(ValueError, match="out of range"):
        runtime.explain("reciprocam", exported, images, target=1000)
    with pytest.raises(TypeError, match="integer class index"):
        runtime.explain("reciprocam", exported, images, target=2.5)
    with pytest.raises(ValueError, match="2 entries for a batch of 1"):
        runtime.explain("reciprocam", exported, images, target=[1, 2])
    with pytest.raises(ValueError, match="no parameter"):
        runtime.explain("reciprocam", exported, images, sigma=1)
    with pytest.raises(ValueError, match="gradient-free methods"):
        runtime.explain("gradcam", exported, images)
    with pytest.raises(ValueError, match="batch_size"):
        runtime.explain("ablationcam", exported, images, batch_size=0)


def test_gradient_method_on_an_onnx_model_names_the_gradient_free_methods(exported, photos):
    for name in ("gradcam", "layercam"):
        with pytest.raises(ValueError, match="needs gradients") as error:
            cs.explain(name, exported, photos[:1])
        assert all(method in str(error.value) for method in ("scorecam", "ablationcam", "reciprocam"))
    with pytest.raises(ValueError, match="no ONNX Runtime implementation"):
        cs.explain("eigencam", exported, photos[:1])


def test_onnx_model_refuses_another_layer_and_another_image_size(exported):
    with pytest.raises(ValueError, match="split at layer 'conv_head' only"):
        cs.explain("reciprocam", exported, cs.load_images(["coffee"]), layer="block10")
    with pytest.raises(ValueError, match="224 x 224"):
        cs.explain("reciprocam", exported, cs.load_images(["coffee"], size=96))


@pytest.mark.parametrize("missing", ["head.onnx", "camsurvey-onnx.json"])
def test_missing_file_gives_an_error_that_says_how_to_export_again(copy_of_export, missing):
    (copy_of_export / missing).unlink()
    with pytest.raises(FileNotFoundError, match="export"):
        deploy.load(copy_of_export)


def test_missing_folder_gives_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no folder"):
        deploy.load(tmp_path / "nothing-here")


def test_corrupt_file_fails_its_checksum(copy_of_export):
    with open(copy_of_export / "features.onnx", "r+b") as handle:
        handle.seek(1000)
        handle.write(b"\x00" * 16)
    with pytest.raises(ValueError, match=r"corrupt.*export the model again"):
        deploy.load(copy_of_export)


def test_unreadable_graph_with_a_matching_checksum_gives_a_clear_error(copy_of_export):
    (copy_of_export / "head.onnx").write_bytes(b"not an onnx graph")
    manifest = json.loads((copy_of_export / "camsurvey-onnx.json").read_text())
    manifest["files"]["head"]["sha256"] = cs.models.sha256_of(copy_of_export / "head.onnx")
    (copy_of_export / "camsurvey-onnx.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="ONNX Runtime cannot open"):
        deploy.load(copy_of_export)


def test_corrupt_manifest_gives_a_clear_error(copy_of_export):
    (copy_of_export / "camsurvey-onnx.json").write_text("{ not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        deploy.load(copy_of_export)
