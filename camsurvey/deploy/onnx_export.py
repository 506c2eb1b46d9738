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

What runs where: export needs torch; inference does not. :func:`load`, :class:`OnnxModel`
and the three methods live in :mod:`camsurvey.deploy.runtime`, which imports numpy, scipy,
scikit-image and onnxruntime only, so a serving image without torch can run them; every pass
through the network (the first forward pass, Score-CAM's masked inputs, Ablation-CAM's and
Recipro-CAM's batched head passes) runs in ONNX Runtime and the arithmetic around the passes
is numpy. ``camsurvey.explain`` on an :class:`OnnxModel` calls :func:`camsurvey.deploy.runtime.explain`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
import weakref
from pathlib import Path

import numpy as np
import torch

from .. import files
from ..common import check_int
from ..models.base import CamModel
from ..plumbing import check_layer
from ..typing import PathLike
from .runtime import FEATURES_FILE, FORMAT, HEAD_FILE, MANIFEST_FILE, OnnxModel, check_threads, load, sha256_of
from .runtime import METHODS as ONNX_METHODS

__all__ = ["ONNX_METHODS", "OnnxModel", "export", "load"]

DEFAULT_OPSET = 17


# --- export ---------------------------------------------------------------------------------

EXPORT_FILES = (FEATURES_FILE, HEAD_FILE, MANIFEST_FILE)  # the manifest last: it makes an export complete


def supported_opsets() -> tuple[int, int]:
    """The lowest and highest ONNX opset the TorchScript exporter of this torch writes."""
    try:
        from torch.onnx import _constants  # torch's own table of the exporter's range
    except ImportError:  # pragma: no cover - a torch without the table: the range of torch 2.x
        return 7, 20
    return _constants.ONNX_MIN_OPSET, getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", _constants.ONNX_MAX_OPSET)


def _check_folder(folder, overwrite: bool) -> Path:
    """The folder to export into, checked by the rule of :mod:`camsurvey.files` (not created yet):
    never the project's data/ or book/, and earlier export files only replaced with ``overwrite``."""
    if not isinstance(folder, (str, os.PathLike)):
        raise TypeError(f"folder must be a path (str or pathlib.Path) or None, got {type(folder).__name__}")
    path = files.check_output(folder, what="export folder")
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} exists and is not a folder; choose a folder to export into")
    path = path.resolve()
    existing = [name for name in EXPORT_FILES if (path / name).exists() or (path / name).is_symlink()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{path} already holds {existing}; pass overwrite=True to replace them or choose another folder"
        )
    return path


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


def _write_export(model: CamModel, layer: str, folder: Path, input_size: int, opset: int, threads) -> OnnxModel:
    """Write the two graphs and the manifest into ``folder`` and check them against the PyTorch model."""
    features, head = model.split(layer)
    device = model.device
    with torch.no_grad():  # the exporter restores each half's mode afterwards: split() gives them the model's
        example = torch.rand(1, 3, input_size, input_size, generator=torch.Generator().manual_seed(0)).to(device)
        activations = features(example)
        _export_graph(features, example, folder / FEATURES_FILE, "images", "activations", opset)
        _export_graph(head, activations, folder / HEAD_FILE, "activations", "scores", opset)
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
        "files": {role: {"file": name, "sha256": sha256_of(folder / name)}
                  for role, name in (("features", FEATURES_FILE), ("head", HEAD_FILE))},
    }
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1))
    onnx_model = load(folder, threads=threads)
    exported = onnx_model(check.cpu().numpy())
    largest = float(np.abs(exported - expected).max())
    if largest > 1e-3 * max(1.0, float(np.abs(expected).max())):
        raise RuntimeError(f"the exported graphs differ from the PyTorch model by up to {largest:.3g} in the "
                           "class scores; nothing was exported")
    return onnx_model


def export(model: CamModel, folder: PathLike | None = None, layer: str | None = None, *, input_size: int | None = None,
           opset: int = DEFAULT_OPSET, overwrite: bool = False, threads: int | None = None) -> OnnxModel:
    """Write ``model`` split at ``layer`` as ONNX into ``folder``; returns it loaded (:func:`load`).

    ``folder``: a folder of your choosing (created if needed), or ``None`` for a fresh temporary
    folder (``onnx_model.folder`` says where), removed when the returned model is garbage-collected
    or Python exits. Never the repository's ``data/`` or ``book/``.
    ``layer``: the CAM layer, ``None`` for the model's default; it must be a top-level stage.
    ``input_size``: the image side the graphs are traced for (the padding is fixed by it);
    ``None`` for the model's training resolution, ``model.resolution``.
    ``opset``: the ONNX opset version, within what this torch's exporter writes (:func:`supported_opsets`).
    ``overwrite``: replace the files of an earlier export in ``folder``; refused otherwise.
    ``threads``: ONNX Runtime's intra-op threads for the returned model (see :func:`load`).

    The export is written into a temporary folder beside ``folder`` and checked there: the ONNX
    graphs are run on a seeded random batch of two images and compared with the PyTorch model.
    Only a complete, checked export is moved into ``folder`` (file by file, the manifest last;
    a link in ``folder`` is replaced, never written through), so a failed export, a bad opset
    or a mismatch leaves an earlier export in ``folder`` as it was.
    """
    if not isinstance(model, CamModel):
        raise TypeError(f"model must be a camsurvey model (from camsurvey.load_model), got {type(model).__name__}")
    input_size = model.resolution if input_size is None else input_size
    check_int(input_size, "input_size", minimum=32, hint="it is the side of the square input in pixels")
    check_threads(threads)
    low, high = supported_opsets()
    check_int(opset, "opset", minimum=low, maximum=high, hint=f"the ONNX opset version, e.g. {DEFAULT_OPSET}")
    layer = model.default_layer if layer is None else layer
    model.split(layer)  # raises a ValueError listing the split points, before anything is written
    example = torch.rand(1, 3, input_size, input_size, generator=torch.Generator().manual_seed(0)).to(model.device)
    check_layer(model, layer, example)  # refuses a layer that is not a spatial feature map, listing those that are
    target = None if folder is None else _check_folder(folder, overwrite)
    if target is None:
        staging = Path(tempfile.mkdtemp(prefix="camsurvey-onnx-"))
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        onnx_model = _write_export(model, layer, staging, input_size, opset, threads)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if target is None:  # the temporary folder is the export; it goes when the model goes
        weakref.finalize(onnx_model, shutil.rmtree, str(staging), True)
        return onnx_model
    try:
        files.ensure_folder(target, what="export folder")
        for name in EXPORT_FILES:
            os.replace(staging / name, target / name)  # a link at target/name is replaced, not followed
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return load(target, threads=threads)
