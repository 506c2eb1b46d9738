"""Reliability: bad input gives clear errors, no NaN maps, no leaked hooks, a build that cannot lie."""

from __future__ import annotations

import gc
import subprocess
import sys
import tracemalloc
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import camsurvey as cs
from camsurvey.book import notebooks
from camsurvey.models.base import CamModel, GlobalAvgPool, Normalize

ROOT = Path(__file__).resolve().parent.parent


def tiny_model(seed=0, channels=6, classes=4, dead=False) -> CamModel:
    """A small GAP-linear CNN; ``dead=True`` zeroes the last conv so its layer is all zeros."""
    torch.manual_seed(seed)
    stages = OrderedDict(
        normalize=Normalize([0.5] * 3, [0.25] * 3),
        conv1=nn.Sequential(nn.Conv2d(3, channels, 3, padding=1), nn.ReLU()),
        conv2=nn.Sequential(nn.Conv2d(channels, channels, 3, stride=2, padding=1), nn.ReLU()),
        pool=GlobalAvgPool(),
        fc=nn.Linear(channels, classes),
    )
    model = CamModel(stages, name="tiny", default_layer="conv2", categories=[f"c{i}" for i in range(classes)])
    if dead:
        with torch.no_grad():
            model.conv2[0].weight.zero_()
            model.conv2[0].bias.fill_(-1.0)
    return model.eval().requires_grad_(False)


FAST_METHODS = [name for name, entry in cs.METHODS.items()]


# --- a table of bad inputs -------------------------------------------------------------------

def _image():
    return cs.load_image("chelsea", size=64)


BAD_API_CALLS = [
    ("unknown method", lambda m: cs.explain("gradcam+++", m, _image()), ValueError, "choose one of"),
    ("method name not a string", lambda m: cs.explain(None, m, _image()), ValueError, "unknown method"),
    ("unknown model", lambda m: cs.load_model("resnet1000"), ValueError, "choose one of"),
    ("unknown image", lambda m: cs.load_image("no_such_photo"), FileNotFoundError, "bundled photos"),
    ("unknown layer", lambda m: cs.explain("gradcam", m, _image(), layer="layer99"), ValueError, "choose one of"),
    ("split at a sub-module", lambda m: cs.explain("ablationcam", m, _image(), layer="conv2.0"), ValueError, "split points|choose one of"),
    ("class index too large", lambda m: cs.explain("gradcam", m, _image(), target=4), ValueError, "out of range"),
    ("class index negative", lambda m: cs.explain("scorecam", m, _image(), target=-1), ValueError, "out of range"),
    ("class index a float", lambda m: cs.explain("gradcam", m, _image(), target=1.0), TypeError, "integer"),
    ("one target per image mismatch", lambda m: cs.explain("gradcam", m, _image(), target=[0, 1]), ValueError, "entries"),
    ("image without batch dim", lambda m: cs.explain("gradcam", m, _image()[0]), ValueError, "unsqueeze"),
    ("grey image", lambda m: cs.explain("gradcam", m, _image()[:, :1]), ValueError, "RGB"),
    ("uint8 image", lambda m: cs.explain("gradcam", m, (_image() * 255).to(torch.uint8)), TypeError, "255"),
    ("0..255 floats", lambda m: cs.explain("gradcam", m, _image() * 255), ValueError, r"\[0, 1\]"),
    ("negative values", lambda m: cs.explain("gradcam", m, _image() - 0.5), ValueError, r"\[0, 1\]"),
    ("NaN pixel", lambda m: cs.explain("gradcam", m, _image().index_fill(3, torch.tensor([0]), float("nan"))), ValueError, "NaN"),
    ("Inf pixel", lambda m: cs.explain("gradcam", m, _image().index_fill(3, torch.tensor([0]), float("inf"))), ValueError, "Inf"),
    ("empty batch", lambda m: cs.explain("gradcam", m, _image()[:0]), ValueError, "empty"),
    ("a numpy array", lambda m: cs.explain("gradcam", m, _image().numpy()), TypeError, "torch.Tensor"),
    ("image too small", lambda m: cs.explain("gradcam", m, torch.rand(1, 3, 8, 8)), ValueError, "too small"),
    ("not a classifier", lambda m: cs.explain("gradcam", nn.Identity(), _image()), ValueError, "not class scores"),
    ("not a model", lambda m: cs.explain("gradcam", "resnet50", _image()), TypeError, "load_model"),
    ("unknown method parameter", lambda m: cs.explain("gradcam", m, _image(), sigma=0.1), ValueError, "no parameter"),
    ("batch_size of the wrong type", lambda m: cs.explain("scorecam", m, _image(), batch_size="8"), ValueError, "batch_size"),
    ("batch_size zero", lambda m: cs.explain("ablationcam", m, _image(), batch_size=0), ValueError, "batch_size"),
    ("unknown Recipro-CAM kernel", lambda m: cs.explain("reciprocam", m, _image(), kernel="box"), ValueError, "gaussian"),
    ("CAM on a head that is not GAP-linear", lambda m: cs.explain("cam", m, _image(), layer="conv1"), ValueError, "gradcam"),
    ("load_image size too small", lambda m: cs.load_image("chelsea", size=4), ValueError, "size"),
    ("load_image size not an int", lambda m: cs.load_image("chelsea", size="224"), ValueError, "size"),
    ("top_k k too large", lambda m: cs.top_k(m, _image(), k=5), ValueError, "k must be"),
    ("box for an unknown photo", lambda m: cs.load_box("no_such_photo"), ValueError, "bundled photos"),
    ("missing weights file", lambda m: cs.load_model("efficientnet_lite0", weights="/no/such/file.pth"), FileNotFoundError, "does not exist"),
    ("unknown chapter", lambda m: notebooks.run_chapter("no_such_chapter"), ValueError, "choose one of"),
    ("unknown chapter parameter", lambda m: notebooks.run_chapter("intro", {"nope": 1}, "/tmp/never"), ValueError, "no parameter"),
    ("chapter parameter of the wrong type", lambda m: notebooks.run_chapter("intro", {"top": "5"}, "/tmp/never"), ValueError, "must be like"),
    ("chapter output inside book/", lambda m: notebooks.run_chapter("intro", {}, ROOT / "book"), ValueError, "outside book"),
]


@pytest.mark.parametrize("call, error, words", [c[1:] for c in BAD_API_CALLS], ids=[c[0] for c in BAD_API_CALLS])
def test_bad_input_gives_a_clear_error(call, error, words):
    with pytest.raises(error, match=words):
        call(tiny_model())


def test_the_table_covers_at_least_thirty_bad_inputs():
    assert len(BAD_API_CALLS) >= 30


def test_a_corrupt_user_file_is_reported_and_left_untouched(tmp_path):
    weights = tmp_path / "mine.pth"
    weights.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="could not"):
        cs.load_model("efficientnet_lite0", weights=weights)
    assert weights.read_bytes() == b"not a checkpoint"


def test_cli_bad_value_leaves_no_half_written_file(tmp_path):
    result = subprocess.run([sys.executable, "-m", "camsurvey", "run", "intro", "-p", "photos", "3", "-o", str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "must be like its default" in result.stderr
    assert list(tmp_path.iterdir()) == []


# --- no NaN maps, ever ------------------------------------------------------------------------

@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), kind=st.sampled_from(["random", "constant", "black", "white"]),
       dead=st.booleans(), size=st.sampled_from([32, 40]))
def test_no_method_returns_a_nan_map(seed, kind, dead, size):
    model = tiny_model(seed, dead=dead)
    generator = torch.Generator().manual_seed(seed)
    images = {"random": torch.rand(2, 3, size, size, generator=generator),
              "constant": torch.full((2, 3, size, size), 0.37), "black": torch.zeros(2, 3, size, size),
              "white": torch.ones(2, 3, size, size)}[kind]
    for name in FAST_METHODS:
        saliency = cs.explain(name, model, images, **_small_params(name))
        assert saliency.shape == (2, size, size), name
        assert torch.isfinite(saliency).all(), name
        assert saliency.min() >= 0 and saliency.max() <= 1, name


def _small_params(name):
    """Keep sampling methods small on the tiny model (only parameters the method has)."""
    wanted = {"n_samples": 3, "samples": 3, "steps": 3, "n": 3}
    return {k: v for k, v in wanted.items() if k in cs.METHODS[name].params}


# --- no leaks ---------------------------------------------------------------------------------

def _hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


def test_a_thousand_calls_leave_no_hooks_and_bounded_memory():
    model = tiny_model()
    images = torch.rand(1, 3, 32, 32)
    for _ in range(50):  # warm-up: allocator caches, lazy imports
        cs.explain("gradcam", model, images)
    gc.collect()
    tracemalloc.start()
    start, _ = tracemalloc.get_traced_memory()
    for i in range(1000):
        if i % 10 == 0:
            with pytest.raises(ValueError):
                cs.explain("gradcam", model, images, target=99)
        else:
            cs.explain(["gradcam", "layercam", "reciprocam"][i % 3], model, images)
    gc.collect()
    end, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert _hooks(model) == 0
    assert end - start < 2_000_000, f"memory grew by {end - start} bytes over 1000 calls"


# --- determinism ------------------------------------------------------------------------------

def test_every_method_is_deterministic():
    model = tiny_model(3)
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    for name in FAST_METHODS:
        first = cs.explain(name, model, images, **_small_params(name))
        torch.manual_seed(12345)  # a changed global seed must not matter
        second = cs.explain(name, model, images, **_small_params(name))
        assert torch.equal(first, second), name


def _text_outputs(path):
    """The text a notebook's cells print, compared the way nbval compares it.

    The kernel may deliver one ``print`` as several stream messages, split wherever its
    output buffer was flushed; nbval merges each cell's streams before comparing, so we do too.
    """
    import nbformat
    from nbval.plugin import coalesce_streams

    texts = []
    for cell in nbformat.read(str(path), as_version=4).cells:
        if "nbval-ignore-output" in cell.get("metadata", {}).get("tags", []):
            continue
        for output in coalesce_streams(cell.get("outputs", [])):
            texts.append(output.get("text") or output.get("data", {}).get("text/plain"))
    return texts


def test_text_outputs_merge_a_print_the_kernel_split_in_two(tmp_path):
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    whole = new_notebook(cells=[new_code_cell(outputs=[new_output("stream", name="stdout", text="gradcam maps\n")])])
    split = new_notebook(cells=[new_code_cell(outputs=[new_output("stream", name="stdout", text="gradcam"),
                                                      new_output("stream", name="stdout", text=" maps\n")])])
    nbformat.write(whole, str(tmp_path / "whole.ipynb"))
    nbformat.write(split, str(tmp_path / "split.ipynb"))
    assert _text_outputs(tmp_path / "whole.ipynb") == _text_outputs(tmp_path / "split.ipynb") == ["gradcam maps\n"]


def test_a_chapter_executed_twice_gives_identical_text_outputs(tmp_path):
    first = notebooks.run_chapter("intro", {"photos": ["coffee", "chelsea"]}, tmp_path / "one")
    second = notebooks.run_chapter("intro", {"photos": ["coffee", "chelsea"]}, tmp_path / "two")
    assert _text_outputs(first) == _text_outputs(second)
    assert any("espresso" in "".join(t or "") for t in _text_outputs(first))


# --- the build cannot lie ---------------------------------------------------------------------

def test_a_chapter_that_raises_fails_the_book_build(tmp_path):
    import nbformat

    book = tmp_path / "book"
    book.mkdir()
    config = (ROOT / "_config.yml").read_text().replace("bibtex_bibfiles:\n  - references.bib\n", "")
    (book / "_config.yml").write_text(config)
    (book / "_toc.yml").write_text("format: jb-book\nroot: index\nchapters:\n  - file: broken\n")
    (book / "index.md").write_text("# A book\n\nIt has one chapter.\n")
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_markdown_cell("# Broken"), nbformat.v4.new_code_cell("raise RuntimeError('this chapter is broken')")]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, book / "broken.ipynb")
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    result = subprocess.run([str(jupyter_book), "build", str(book), "-W", "-n", "--keep-going"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode != 0
    assert "this chapter is broken" in result.stdout + result.stderr


# --- a constant map is zeros, never noise (decided before upsampling, relative tolerance) -------

def constant_layer_model(value=0.7) -> CamModel:
    """The tiny model with a layer whose activations are the same number everywhere."""
    model = tiny_model()
    with torch.no_grad():
        model.conv2[0].weight.zero_()
        model.conv2[0].bias.fill_(value)
    return model


@pytest.mark.parametrize("value", [3.7, 1e-6, 2e5])
def test_a_constant_map_upsampled_and_normalised_is_zeros_not_a_pattern(value):
    from camsurvey import plumbing

    constant = torch.full((1, 7, 7), value)
    assert not plumbing.normalize(plumbing.upsample(constant, (40, 40))).any()
    assert not plumbing.finish(constant, (40, 40)).any()
    ramp = constant + torch.linspace(0, value * 1e-3, 7)  # a real (if small) gradient is kept
    assert plumbing.finish(ramp, (40, 40)).max() == 1


def test_a_one_by_one_feature_map_gives_zeros(model):
    image = cs.load_image("chelsea", 32)  # EfficientNet-Lite0's conv_head is 1 x 1 at 32 px
    for name in ("gradcam", "gradcam++", "xgradcam", "layercam", "eigencam"):
        assert not cs.explain(name, model, image).any(), name


@pytest.mark.parametrize("name", [n for n in FAST_METHODS if n != "reciprocam"])
def test_a_layer_with_constant_activations_gives_zeros(name):
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    saliency = cs.explain(name, constant_layer_model(), images, **_small_params(name))
    assert saliency.shape == (2, 32, 32) and not saliency.any(), name


def test_reciprocam_on_constant_activations_shows_only_what_its_kernel_makes():
    images = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    model = constant_layer_model()
    assert not cs.explain("reciprocam", model, images).any()  # the authors' point mask (the default)
    # our Gaussian window keeps less of A at the border than inside: a symmetric frame, not noise
    framed = cs.explain("reciprocam", model, images, kernel="gaussian-window")[0]
    assert torch.allclose(framed, framed.flip(0), atol=5e-3) and torch.allclose(framed, framed.T, atol=5e-3)
    assert framed[16, 16] > 0.9 and framed[0, 0] < 0.1


# --- the long tail: one clear message that names the argument -------------------------------

def _tiny_images():
    return torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _onnx_stand_in():
    from camsurvey.deploy.runtime import OnnxModel

    return object.__new__(OnnxModel)  # an OnnxModel as metrics would receive it (no files needed)


def _box_metric(boxes):
    return cs.metrics.energy_pointing_game(torch.rand(1, 32, 32), boxes)


LONG_TAIL = [
    ("target True", lambda m: cs.explain("gradcam", m, _tiny_images(), target=True), TypeError, "target"),
    ("target 10**20", lambda m: cs.explain("gradcam", m, _tiny_images(), target=10**20), ValueError, "out of range"),
    ("target empty", lambda m: cs.explain("gradcam", m, _tiny_images(), target=[]), ValueError, "target is empty"),
    ("target nested", lambda m: cs.explain("gradcam", m, _tiny_images(), target=[[0]]), TypeError, "target"),
    ("seed 2**64", lambda m: cs.explain("smoothgrad", m, _tiny_images(), seed=2**64, samples=2), ValueError, "seed"),
    ("IG baseline 2", lambda m: cs.explain("integrated-gradients", m, _tiny_images(), baseline=2.0), ValueError,
     r"baseline.*\[0, 1\]"),
    ("IG baseline image out of range", lambda m: cs.explain("integrated-gradients", m, _tiny_images(),
                                                            baseline=-_tiny_images()), ValueError, r"\[0, 1\]"),
    ("SESS smooth 'no'", lambda m: cs.explain("sess", m, _tiny_images(), smooth="no", scales=[32], window=32, step=32),
     TypeError, "smooth must be True or False"),
    ("sparse images", lambda m: cs.explain("gradcam", m, _tiny_images().to_sparse()), TypeError, "to_dense"),
    ("meta images", lambda m: cs.explain("gradcam", m, _tiny_images().to("meta")), TypeError, "meta"),
    ("device tpu", lambda m: cs.load_model("efficientnet_lite0", device="tpu"), ValueError, "device"),
    ("device nonsense", lambda m: cs.load_model("efficientnet_lite0", device="gpu0"), ValueError, "device"),
    ("boxes None", lambda m: _box_metric(None), TypeError, "boxes"),
    ("boxes a string", lambda m: _box_metric("0 0 4 4"), TypeError, "boxes"),
    ("boxes ragged", lambda m: _box_metric([[0, 0, 4], [1]]), TypeError, "boxes"),
    ("a 2-D mask", lambda m: _box_metric(torch.ones(32, 32, dtype=torch.bool)), ValueError, r"mask\[None\]"),
    ("metric batch_size 0", lambda m: cs.metrics.insertion_auc(m, _tiny_images(), torch.rand(1, 32, 32), batch_size=0),
     ValueError, "batch_size"),
    ("metric baseline of the wrong shape", lambda m: cs.metrics.deletion_auc(m, _tiny_images(), torch.rand(1, 32, 32),
                                                                            baseline=torch.zeros(3, 5, 5)),
     ValueError, "baseline has shape"),
    ("metric baseline out of range", lambda m: cs.metrics.deletion_auc(m, _tiny_images(), torch.rand(1, 32, 32),
                                                                      baseline=torch.full((1, 3, 32, 32), 3.0)),
     ValueError, r"\[0, 1\]"),
    ("metric baseline NaN", lambda m: cs.metrics.deletion_auc(m, _tiny_images(), torch.rand(1, 32, 32),
                                                             baseline=torch.full((1, 3, 32, 32), float("nan"))),
     ValueError, "NaN"),
    ("adcc of NaN", lambda m: cs.metrics.adcc(float("nan"), 0.2, 0.2), ValueError, "coherency"),
    ("coherency 1.5", lambda m: cs.metrics.adcc(1.5, 0.2, 0.2), ValueError, r"coherency must lie in \[0, 1\]"),
    ("average drop as a percentage", lambda m: cs.metrics.adcc(0.5, 0.2, 30.0), ValueError, "percentage"),
    ("trivial map sigma 0", lambda m: cs.metrics.trivial_map("centre", _tiny_images(), sigma=0), ValueError, "sigma"),
    ("average drop on an ONNX model", lambda m: cs.metrics.average_drop(_onnx_stand_in(), _tiny_images(),
                                                                       torch.rand(1, 32, 32)),
     TypeError, "PyTorch model it was exported from"),
    ("an unknown photo in evaluate_photos", lambda m: __import__("camsurvey.lab.evaluation").lab.evaluation
     .evaluate_photos(m, {"gradcam": ["nope"]}), ValueError, "bundled photos"),
    ("register_model with a non-function", lambda m: cs.models.register_model("x", 3), TypeError, "loader"),
]


@pytest.mark.parametrize("call, error, words", [c[1:] for c in LONG_TAIL], ids=[c[0] for c in LONG_TAIL])
def test_the_long_tail_gives_one_clear_error(call, error, words):
    with pytest.raises(error, match=words):
        call(tiny_model())


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the CPU-only message cannot be shown")
def test_asking_for_cuda_without_a_gpu_says_to_use_the_cpu():
    with pytest.raises(ValueError, match="device='cpu'"):
        cs.load_model("efficientnet_lite0", device="cuda")


def test_a_registered_loader_that_returns_no_classifier_is_named():
    cs.models.register_model("not-a-classifier", lambda weights=None: nn.Linear(2, 2))
    try:
        with pytest.raises(TypeError, match="'not-a-classifier' returned Linear, not a camsurvey CamModel"):
            cs.load_model("not-a-classifier", device="cpu")
    finally:
        del cs.models.MODELS["not-a-classifier"]


def test_numpy_masks_are_ground_truth_masks_not_boxes():
    saliency = torch.zeros(1, 32, 32)
    saliency[0, :8, :8] = 1
    mask = np.zeros((1, 32, 32), bool)
    mask[0, :8, :8] = True
    assert cs.metrics.energy_pointing_game(saliency, mask).mean == 1.0


def test_every_chapter_parameter_can_be_set_whatever_its_comment_says(tmp_path):
    import nbformat

    for chapter, names in (("helpers", {"sess_scales"}), ("smoothing", {"ig_size"})):
        assert names <= set(notebooks.chapter_parameters(notebooks.chapter_path(chapter))), chapter
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "size = 128  # pixels (smaller = cheaper)\nscales: list = [1, 2]  # a = b, c = d\nnot_literal = max(1, 2)  # x\n",
        metadata={"tags": ["parameters"]})])
    nbformat.write(notebook, tmp_path / "odd.ipynb")
    found = notebooks.chapter_parameters(tmp_path / "odd.ipynb")
    assert found == {"size": (128, "pixels (smaller = cheaper)"), "scales": ([1, 2], "a = b, c = d"),
                     "not_literal": ("max(1, 2)", "x")}
