"""Gradient-free CAMs on a deployed model: export to ONNX, explain with ONNX Runtime.

A deployed network runs forward only: ONNX Runtime keeps no autograd graph, so no method
that needs dy^c/dA can run there. Score-CAM, Ablation-CAM and Recipro-CAM need forward passes
alone, through the network (Score-CAM) or through its head (the other two). This module makes
that concrete:

    import camsurvey as cs
    model = cs.load_model("efficientnet_lite0")
    onnx_model = cs.deploy.export(model, "exported/lite0")   # features.onnx, head.onnx, manifest
    onnx_model = cs.deploy.load("exported/lite0")            # later, elsewhere
    saliency = cs.explain("reciprocam", onnx_model, images)  # (B, H, W) in [0, 1], as ever

:func:`export` splits the model at its CAM layer (``model.split(layer)``) and writes the two
halves as ``features.onnx`` (images in [0, 1] -> activations A; the input normalisation is
the first stage, so it is inside the graph) and ``head.onnx`` (A -> class scores), both with a
dynamic batch axis, plus ``camsurvey-onnx.json``, a manifest with the model's name, layer,
categories, input size, feature shape, the versions that wrote it and the sha256 of each file.
:func:`load` checks all of that before it opens two ONNX Runtime sessions.

What runs where: every pass through the network (the first forward pass, Score-CAM's masked
inputs, Ablation-CAM's and Recipro-CAM's batched head passes) runs in ONNX Runtime; no torch
module runs and no autograd graph is built. The equations are *the same functions* the
PyTorch methods use (``scorecam_maps``, ``ablationcam_maps``, ``reciprocam_maps`` in
:mod:`camsurvey.methods.perturbation`), and so are the final ``up(.)`` and ``norm(.)`` of
:func:`camsurvey.explain`: they do their arithmetic on torch tensors that share memory with
ONNX Runtime's numpy arrays. Torch is thus used as an array library here, never as a network
runtime; one formula serves both paths, which is why the maps agree.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from .methods import perturbation
from .models import sha256_of
from .models.base import CamModel
from .plumbing import resolve_target

ROOT = Path(__file__).resolve().parent.parent
PROTECTED = ("data", "book")  # the repository's folders that an export never writes into
FEATURES_FILE, HEAD_FILE, MANIFEST_FILE = "features.onnx", "head.onnx", "camsurvey-onnx.json"
FORMAT = "camsurvey-onnx/1"
DEFAULT_OPSET = 17


# --- export ---------------------------------------------------------------------------------

def _check_folder(folder, overwrite: bool) -> Path:
    """The folder to export into, created; refuses the repository's data/ and book/ and existing files."""
    if folder is None:
        return Path(tempfile.mkdtemp(prefix="camsurvey-onnx-"))
    if not isinstance(folder, (str, os.PathLike)):
        raise TypeError(f"folder must be a path (str or pathlib.Path) or None, got {type(folder).__name__}")
    path = Path(folder).expanduser().resolve()
    for name in PROTECTED:
        protected = (ROOT / name).resolve()
        if path == protected or protected in path.parents:
            raise ValueError(
                f"refusing to export into {path}: the repository's {name}/ folder holds the book's own "
                "files; choose a folder of your own (or folder=None for a fresh temporary one)"
            )
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} exists and is not a folder; choose a folder to export into")
    existing = [name for name in (FEATURES_FILE, HEAD_FILE, MANIFEST_FILE) if (path / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{path} already holds {existing}; pass overwrite=True to replace them or choose another folder"
        )
    path.mkdir(parents=True, exist_ok=True)
    return path


def _check_threads(threads):
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}")


def _export_graph(module, example, path, input_name, output_name, opset):
    """One ``torch.onnx.export`` with a dynamic batch axis (the TorchScript exporter, ``dynamo=False``).

    The tracer warns that the "same" padding of EfficientNet's strided convolutions becomes a
    constant: it is one, for the fixed input size the manifest records.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(module, (example,), str(path), input_names=[input_name], output_names=[output_name],
                          dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}},
                          opset_version=opset, dynamo=False)


def export(model: CamModel, folder=None, layer: str | None = None, *, input_size: int = 224,
           opset: int = DEFAULT_OPSET, overwrite: bool = False, threads: int | None = None) -> "OnnxModel":
    """Write ``model`` split at ``layer`` as ONNX into ``folder``; returns it loaded (:func:`load`).

    ``folder``: a folder of your choosing (created if needed), or ``None`` for a fresh temporary
    folder (``onnx_model.folder`` says where). Never the repository's ``data/`` or ``book/``.
    ``layer``: the CAM layer, ``None`` for the model's default; it must be a top-level stage.
    ``input_size``: the image side the graphs are traced for (the padding is fixed by it).
    ``overwrite``: replace the files of an earlier export in ``folder``; refused otherwise.
    ``threads``: ONNX Runtime's intra-op threads for the returned model (see :func:`load`).

    After writing, the ONNX graphs are run on a seeded random batch of two images and compared
    with the PyTorch model; a mismatch raises instead of leaving a wrong export behind.
    """
    if not isinstance(model, CamModel):
        raise TypeError(f"model must be a camsurvey model (from camsurvey.load_model), got {type(model).__name__}")
    if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 32:
        raise ValueError(f"input_size must be an integer of at least 32 pixels, got {input_size!r}")
    _check_threads(threads)
    if isinstance(opset, bool) or not isinstance(opset, int):
        raise TypeError(f"opset must be an integer ONNX opset version, got {opset!r}")
    layer = model.default_layer if layer is None else layer
    features, head = model.split(layer)  # raises a ValueError listing the split points
    path = _check_folder(folder, overwrite)
    (path / MANIFEST_FILE).unlink(missing_ok=True)  # an export that fails half-way must not look complete

    device = model.device
    with torch.no_grad():  # the exporter restores each half's mode afterwards: split() gives them the model's
        example = torch.rand(1, 3, input_size, input_size, generator=torch.Generator().manual_seed(0)).to(device)
        activations = features(example)
        _export_graph(features, example, path / FEATURES_FILE, "images", "activations", opset)
        _export_graph(head, activations, path / HEAD_FILE, "activations", "scores", opset)
        check = torch.rand(2, 3, input_size, input_size, generator=torch.Generator().manual_seed(1)).to(device)
        expected = model(check).cpu().numpy()

    import camsurvey
    manifest = {
        "format": FORMAT,
        "model": model.name,
        "layer": layer,
        "categories": list(model.categories),
        "input_size": [input_size, input_size],
        "feature_shape": list(activations.shape[1:]),
        "opset": opset,
        "versions": {"camsurvey": camsurvey.__version__, "torch": torch.__version__},
        "files": {role: {"file": name, "sha256": sha256_of(path / name)}
                  for role, name in (("features", FEATURES_FILE), ("head", HEAD_FILE))},
    }
    (path / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1))
    onnx_model = load(path, threads=threads)
    exported = onnx_model(check).numpy()
    largest = float(np.abs(exported - expected).max())
    if largest > 1e-3 * max(1.0, float(np.abs(expected).max())):
        (path / MANIFEST_FILE).unlink()
        raise RuntimeError(f"the exported graphs differ from the PyTorch model by up to {largest:.3g} in the "
                           f"class scores; the export in {path} is not usable")
    return onnx_model


# --- load -----------------------------------------------------------------------------------

def _reexport_hint(folder: Path) -> str:
    return f"export the model again with camsurvey.deploy.export(model, {str(folder)!r}, overwrite=True)"


def _read_manifest(folder: Path) -> dict:
    manifest_path = folder / MANIFEST_FILE
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{folder} has no {MANIFEST_FILE}, so it is not a camsurvey ONNX export; "
                                + _reexport_hint(folder))
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{manifest_path} is not valid JSON ({error}); " + _reexport_hint(folder)) from None
    needed = {"format", "model", "layer", "categories", "input_size", "feature_shape", "files"}
    if not isinstance(manifest, dict) or not needed <= set(manifest) or manifest["format"] != FORMAT:
        raise ValueError(f"{manifest_path} is not a {FORMAT} manifest; " + _reexport_hint(folder))
    return manifest


def _open_session(folder: Path, entry: dict, threads: int | None):
    import onnxruntime

    path = folder / entry["file"]
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the export; " + _reexport_hint(folder))
    if sha256_of(path) != entry["sha256"]:
        raise ValueError(f"{path} does not match the sha256 in {MANIFEST_FILE}: the file is corrupt or was "
                         "changed after the export; " + _reexport_hint(folder))
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only
    if threads is not None:
        options.intra_op_num_threads = threads
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types for unreadable graphs
        raise ValueError(f"ONNX Runtime cannot open {path} ({error}); " + _reexport_hint(folder)) from None


def load(folder, *, threads: int | None = None) -> "OnnxModel":
    """Open an export written by :func:`export`, after checking its manifest, files and checksums.

    ``threads``: ONNX Runtime's intra-op threads; ``None`` for its default (one per core).
    A missing or corrupt file raises an error that says how to export again.
    """
    if not isinstance(folder, (str, os.PathLike)):
        raise TypeError(f"folder must be a path (str or pathlib.Path), got {type(folder).__name__}")
    _check_threads(threads)
    path = Path(folder).expanduser().resolve()
    if not path.is_dir():
        raise FileNotFoundError(f"no folder {str(path)!r}; export a model there with camsurvey.deploy.export(model, folder)")
    manifest = _read_manifest(path)
    sessions = [_open_session(path, manifest["files"][role], threads) for role in ("features", "head")]
    return OnnxModel(path, manifest, *sessions)


class OnnxModel:
    """A model exported by :func:`export`: two ONNX Runtime sessions and what the manifest says.

    It answers the part of :class:`~camsurvey.models.base.CamModel`'s interface that the
    gradient-free methods use: ``features(images)``, ``head(activations)``, calling it on
    images for class scores, ``name``, ``default_layer`` (the one layer it was split at),
    ``categories``. Inputs and outputs are torch tensors, handed to ONNX Runtime as numpy arrays.
    """

    def __init__(self, folder: Path, manifest: dict, features_session, head_session):
        self.folder = folder
        self.manifest = manifest
        self.features_session = features_session
        self.head_session = head_session
        self.name = manifest["model"]
        self.default_layer = manifest["layer"]
        self.layer_names = [manifest["layer"]]
        self.categories = list(manifest["categories"])
        self.input_size = tuple(manifest["input_size"])
        self.feature_shape = tuple(manifest["feature_shape"])
        self.device = torch.device("cpu")

    @property
    def num_classes(self) -> int:
        return len(self.categories)

    def __repr__(self) -> str:
        return (f"OnnxModel(name={self.name!r}, layer={self.default_layer!r}, classes={self.num_classes}, "
                f"folder={str(self.folder)!r})")

    @staticmethod
    def _run(session, array: torch.Tensor) -> torch.Tensor:
        inputs = np.ascontiguousarray(array.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(session.run(None, {session.get_inputs()[0].name: inputs})[0])

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Activations A of the export's layer for a (B, 3, H, W) batch in [0, 1] (ONNX Runtime)."""
        if tuple(images.shape[-2:]) != self.input_size:
            raise ValueError(
                f"this ONNX export takes {self.input_size[0]} x {self.input_size[1]} images, got "
                f"{tuple(images.shape[-2:])}; load the images with size={self.input_size[0]} or export "
                "again with the input_size you need"
            )
        return self._run(self.features_session, images)

    def head(self, activations: torch.Tensor) -> torch.Tensor:
        """Class scores (before the softmax) for a (N, K, h, w) batch of activations (ONNX Runtime)."""
        return self._run(self.head_session, activations)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


# --- the gradient-free methods, on ONNX Runtime ---------------------------------------------
# Each has the PyTorch method's name and parameters, and calls the same equation functions.

def scorecam(model: OnnxModel, images, target=None, layer=None, *, batch_size=perturbation.SCORECAM_BATCH_SIZE):
    """Score-CAM, eq. (4), with every forward pass (1 + K per image) in ONNX Runtime."""
    perturbation._check_batch_size(batch_size)
    activations = model.features(images)
    scores = model.head(activations)
    target = resolve_target(target, scores)
    return perturbation.scorecam_maps(model, images, activations, scores, target, batch_size), target


def ablationcam(model: OnnxModel, images, target=None, layer=None, *, batch_size=perturbation.ABLATIONCAM_BATCH_SIZE):
    """Ablation-CAM, with its 1 forward and K head passes per image in ONNX Runtime."""
    perturbation._check_batch_size(batch_size)
    activations = model.features(images)
    scores = model.head(activations)
    target = resolve_target(target, scores)
    return perturbation.ablationcam_maps(model.head, activations, scores, target, batch_size), target


def reciprocam(model: OnnxModel, images, target=None, layer=None, *, kernel="gaussian",
               batch_size=perturbation.RECIPROCAM_BATCH_SIZE):
    """Recipro-CAM, with its 1 forward and h*w head passes per image in ONNX Runtime."""
    perturbation._check_batch_size(batch_size)
    activations = model.features(images)
    target = resolve_target(target, model.head(activations))
    return perturbation.reciprocam_maps(model.head, activations, target, kernel, batch_size), target


ONNX_METHODS = {"scorecam": scorecam, "ablationcam": ablationcam, "reciprocam": reciprocam}


def onnx_method(entry, model: OnnxModel, layer):
    """The ONNX Runtime implementation of the registered method ``entry`` (used by ``explain``).

    A method without one, gradient-based above all, raises a ValueError naming those that exist.
    """
    if entry.name not in ONNX_METHODS:
        why = ("needs gradients, and an ONNX model runs forward only (no autograd)" if entry.needs_gradients
               else "has no ONNX Runtime implementation")
        raise ValueError(
            f"method {entry.name!r} {why}; the gradient-free methods that run on an ONNX model are "
            f"{sorted(ONNX_METHODS)}. Use the PyTorch model (camsurvey.load_model) for {entry.name!r}."
        )
    if layer is not None and layer != model.default_layer:
        raise ValueError(
            f"this ONNX export is split at layer {model.default_layer!r} only, got layer={layer!r}; "
            f"export again with camsurvey.deploy.export(model, folder, layer={layer!r})"
        )
    return ONNX_METHODS[entry.name]
