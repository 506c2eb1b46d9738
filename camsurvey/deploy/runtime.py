"""Gradient-free CAMs where the model is deployed: ONNX Runtime and numpy, no torch.

A serving image holds ONNX Runtime, not torch. This module is everything such an image
needs to explain a prediction of a model exported by :func:`camsurvey.deploy.export`; it
imports numpy, scipy, scikit-image and onnxruntime, and nothing that imports torch
(``import camsurvey`` loads its torch parts lazily, on first use)::

    import numpy as np
    from camsurvey.deploy import runtime
    onnx_model = runtime.load("exported/lite0")                # checks the manifest and checksums
    images = np.stack([photo]).astype(np.float32)               # (B, 3, H, W) in [0, 1]
    saliency = runtime.explain("reciprocam", onnx_model, images)  # (B, H, W) in [0, 1], numpy

Every pass through the network runs in ONNX Runtime: ``features.onnx`` (images -> A at the
export's layer) and ``head.onnx`` (A -> class scores). The few lines of arithmetic around the
passes are numpy, one small function per formula, the same formulas as the PyTorch methods of
:mod:`camsurvey.methods.perturbation` (eq. 4 and the weights of Ablation-CAM and Recipro-CAM);
``tests/test_deploy.py`` checks that the two agree on every bundled photo, and runs this
module in a Python process where torch cannot be imported at all.

With torch tensors, ``camsurvey.explain(method, onnx_model, images)`` calls :func:`explain`
and returns a tensor, like every other method.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.ndimage import correlate
from scipy.special import softmax

from ..common import (
    ABLATIONCAM_BATCH_SIZE,
    CONSTANT_RTOL,
    RECIPROCAM_BATCH_SIZE,
    SCORECAM_BATCH_SIZE,
    batches,
    check_batch_size,
    check_int,
    sha256_of,
)
from ..typing import IndexTarget, PathLike

FEATURES_FILE, HEAD_FILE, MANIFEST_FILE = "features.onnx", "head.onnx", "camsurvey-onnx.json"
FORMAT = "camsurvey-onnx/1"
GAUSSIAN_3X3 = np.array([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]], dtype=np.float32) / 16


# --- the exported model ---------------------------------------------------------------------

def check_threads(threads: int | None) -> None:
    if threads is not None:
        check_int(threads, "threads", hint="or None for ONNX Runtime's choice")


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
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{manifest_path} is not a {FORMAT} manifest; " + _reexport_hint(folder))
    problems = manifest_problems(manifest)
    if problems:
        raise ValueError(f"{manifest_path} is malformed ({'; '.join(problems)}); " + _reexport_hint(folder))
    return manifest


def execution_providers(available: Sequence[str] | None = None) -> list[str]:
    """ONNX Runtime's providers for a session: CUDA first where this onnxruntime has it (the
    ``onnxruntime-gpu`` build), the CPU always as the fallback for what CUDA does not run.

    ``available``: the providers to choose from (default: ``onnxruntime.get_available_providers()``).
    """
    if available is None:
        import onnxruntime

        available = onnxruntime.get_available_providers()
    return (["CUDAExecutionProvider"] if "CUDAExecutionProvider" in available else []) + ["CPUExecutionProvider"]


def _is_sizes(value, count: int) -> bool:
    return (isinstance(value, list) and len(value) == count
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value))


def manifest_problems(manifest: dict) -> list[str]:
    """What is wrong with a manifest's fields (empty when nothing is): each field's type, and that
    each graph's ``file`` is a plain file name inside the export folder (no ``..``, no absolute path)."""
    problems = []
    for key in ("model", "layer"):
        if not isinstance(manifest.get(key), str) or not manifest.get(key):
            problems.append(f"{key!r} must be a non-empty string")
    categories = manifest.get("categories")
    if not isinstance(categories, list) or not categories or not all(isinstance(c, str) for c in categories):
        problems.append("'categories' must be a non-empty list of class names")
    if not _is_sizes(manifest.get("input_size"), 2):
        problems.append("'input_size' must be [height, width] in pixels")
    if not _is_sizes(manifest.get("feature_shape"), 3):
        problems.append("'feature_shape' must be [channels, height, width]")
    graphs = manifest.get("files")
    for role in ("features", "head"):
        entry = graphs.get(role) if isinstance(graphs, dict) else None
        if not isinstance(entry, dict):
            problems.append(f"'files' must describe the {role} graph")
            continue
        name, digest = entry.get("file"), entry.get("sha256")
        if not isinstance(name, str) or name in ("", ".", "..") or Path(name).name != name or "\\" in name:
            problems.append(f"the {role} graph's file must be a file name inside the export folder, got {name!r}")
        if not isinstance(digest, str) or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            problems.append(f"the {role} graph's sha256 must be 64 hexadecimal digits")
    return problems


def _open_session(folder: Path, entry: dict, threads: int | None):
    import onnxruntime

    path = folder / entry["file"]
    if path.is_symlink() and path.resolve().parent != folder.resolve():
        raise ValueError(f"{path} is a link out of the export folder (to {path.resolve()}); an export's graphs "
                         "live in its folder. " + _reexport_hint(folder))
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
        return onnxruntime.InferenceSession(str(path), options, providers=execution_providers())
    except Exception as error:  # onnxruntime raises its own exception types for unreadable graphs
        raise ValueError(f"ONNX Runtime cannot open {path} ({error}); " + _reexport_hint(folder)) from None


def load(folder: PathLike, *, threads: int | None = None) -> OnnxModel:
    """Open an export written by :func:`camsurvey.deploy.export`, after checking its manifest,
    files and checksums. ``threads``: ONNX Runtime's intra-op threads; ``None`` for its default
    (one per core). A missing or corrupt file raises an error that says how to export again.
    """
    if not isinstance(folder, (str, os.PathLike)):
        raise TypeError(f"folder must be a path (str or pathlib.Path), got {type(folder).__name__}")
    check_threads(threads)
    path = Path(folder).expanduser().resolve()
    if not path.is_dir():
        raise FileNotFoundError(f"no folder {str(path)!r}; export a model there with camsurvey.deploy.export(model, folder)")
    manifest = _read_manifest(path)
    sessions = [_open_session(path, manifest["files"][role], threads) for role in ("features", "head")]
    return OnnxModel(path, manifest, *sessions)


class OnnxModel:
    """A model exported by :func:`camsurvey.deploy.export`: two ONNX Runtime sessions and its manifest.

    ``features(images)`` gives the activations A of the export's layer, ``head(A)`` the class
    scores (before the softmax), ``model(images)`` both in turn. They take anything numpy can
    read as a float32 array (a CPU torch tensor too) and return numpy arrays.
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

    @property
    def num_classes(self) -> int:
        return len(self.categories)

    def __repr__(self) -> str:
        return (f"OnnxModel(name={self.name!r}, layer={self.default_layer!r}, classes={self.num_classes}, "
                f"folder={str(self.folder)!r})")

    @staticmethod
    def _run(session, array) -> np.ndarray:
        inputs = np.ascontiguousarray(array, dtype=np.float32)
        return session.run(None, {session.get_inputs()[0].name: inputs})[0]

    def features(self, images) -> np.ndarray:
        """Activations A of the export's layer for a (B, 3, H, W) batch in [0, 1]."""
        shape = np.shape(images)
        if len(shape) != 4 or shape[1] != 3 or shape[0] == 0:
            raise ValueError(f"this ONNX export takes a (B, 3, {self.input_size[0]}, {self.input_size[1]}) batch of "
                             f"images with B >= 1, got shape {tuple(shape)}; for one image use image[None]")
        if tuple(np.shape(images)[-2:]) != self.input_size:
            raise ValueError(
                f"this ONNX export takes {self.input_size[0]} x {self.input_size[1]} images, got "
                f"{tuple(np.shape(images)[-2:])}; resize the images to that size or export again "
                "with the input_size you need"
            )
        return self._run(self.features_session, images)

    def head(self, activations) -> np.ndarray:
        """Class scores (before the softmax) for a (N, K, h, w) batch of activations."""
        shape = tuple(np.shape(activations))
        if len(shape) != 4 or shape[1:] != self.feature_shape or shape[0] == 0:
            raise ValueError(f"this ONNX export's head takes a (N, {', '.join(map(str, self.feature_shape))}) batch of "
                             f"activations (its layer {self.default_layer!r}) with N >= 1, got shape {shape}")
        return self._run(self.head_session, activations)

    def __call__(self, images) -> np.ndarray:
        return self.head(self.features(images))


# --- checking what a caller passes ----------------------------------------------------------

def check_images(images: np.ndarray) -> np.ndarray:
    """``images`` as a float32 (B, 3, H, W) numpy array in [0, 1], or an error that says what to change."""
    if not isinstance(images, np.ndarray):
        raise TypeError(
            f"images must be a numpy array of shape (B, 3, H, W) with values in [0, 1], got "
            f"{type(images).__name__}; camsurvey.explain takes torch tensors, this module numpy arrays"
        )
    if images.ndim != 4 or images.shape[1] != 3 or images.shape[0] == 0:
        raise ValueError(
            f"images must have shape (B, 3, H, W) with B >= 1 (RGB), got {images.shape}; "
            "for one H x W x 3 photo use photo.transpose(2, 0, 1)[None]"
        )
    if not np.issubdtype(images.dtype, np.floating):
        raise TypeError(f"images must be floating point in [0, 1], got dtype {images.dtype}; "
                        "for 8-bit pixels use images.astype(np.float32) / 255")
    if not np.isfinite(images).all():
        raise ValueError("images contain NaN or Inf values; replace them before explaining")
    if images.min() < 0 or images.max() > 1:
        raise ValueError(f"images must lie in [0, 1] (the exported graph normalises them itself), got values in "
                         f"[{images.min():.3g}, {images.max():.3g}]; for 0..255 pixels divide by 255")
    return images.astype(np.float32, copy=False)


def check_target(target: IndexTarget, scores: np.ndarray) -> np.ndarray:
    """Class index per image: ``None`` for each image's top-1, one index for all, or one per image."""
    batch, classes = scores.shape
    if target is None:
        return scores.argmax(axis=1)
    index = np.asarray(target).reshape(-1)
    if isinstance(target, bool) or not np.issubdtype(index.dtype, np.integer):
        raise TypeError(f"target must be None, an integer class index or one per image, got {target!r}")
    if index.size == 1:
        index = np.repeat(index, batch)
    if index.size != batch:
        raise ValueError(f"target has {index.size} entries for a batch of {batch} images; give one or {batch}")
    if (index < 0).any() or (index >= classes).any():
        raise ValueError(f"target class index out of range: the model has classes 0..{classes - 1}, got {index.tolist()}")
    return index


# --- the formulas -----------------------------------------------------------------------------

def up(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``up(.)``: bilinear resizing of (..., h, w) maps to ``size`` = (H, W), pixel centres aligned
    (what ``torch.nn.functional.interpolate(..., mode="bilinear", align_corners=False)`` does)."""
    from skimage.transform import resize

    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return resize(maps, (*maps.shape[:-2], *size), order=1, mode="edge", anti_aliasing=False).astype(np.float32)


def spread(maps: np.ndarray) -> np.ndarray:
    """max - min of each (..., h, w) map."""
    return maps.max(axis=(-2, -1)) - maps.min(axis=(-2, -1))


def is_constant(maps: np.ndarray, rtol: float = CONSTANT_RTOL) -> np.ndarray:
    """True where a (..., h, w) map is the same value everywhere, up to float rounding: its spread is at
    most ``rtol`` times its largest magnitude (the rule of :func:`camsurvey.plumbing.is_constant`)."""
    return spread(maps) <= rtol * np.abs(maps).max(axis=(-2, -1))


def norm(maps: np.ndarray) -> np.ndarray:
    """``norm(.)``: min-max scale each map into [0, 1]; a constant map (:func:`is_constant`) becomes zeros, never NaN."""
    low = maps.min(axis=(-2, -1), keepdims=True)
    span = spread(maps)[..., None, None]
    scaled = (maps - low) / np.where(span > 0, span, 1)
    return np.where(is_constant(maps)[..., None, None], 0, scaled).astype(np.float32)


def finish(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``norm(up(L))``: raw (B, h, w) maps as (B, H, W) maps in [0, 1] (:func:`camsurvey.plumbing.finish`).

    Constancy is decided on the raw map, before upsampling, which is not exactly constant in
    float32; a constant map becomes zeros.
    """
    maps = np.nan_to_num(maps.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    constant = is_constant(maps)
    return np.where(constant[..., None, None], 0, norm(up(maps, size))).astype(np.float32)


def weighted_sum(weights: np.ndarray, activations: np.ndarray) -> np.ndarray:
    """``sum_k w_k A^k``: (K,) weights times (K, h, w) activations, summed over channels."""
    return np.einsum("k,khw->hw", weights, activations)


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0)


def scorecam_weights(masked_scores: np.ndarray, score: float | np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Eq. (4)'s weights: ``softmax_n(F^c(X'_n) - F^c(X))`` over the channels with a mask."""
    weights = np.zeros_like(masked_scores)
    if valid.any():
        weights[valid] = softmax(masked_scores[valid] - score)
    return weights


def ablationcam_weights(score: float | np.ndarray, ablated_scores: np.ndarray) -> np.ndarray:
    """Ablation-CAM's weights: ``w_k = (y^c - y^c_k) / y^c``, the relative drop of the class
    score when channel k of A is zeroed."""
    return (score - ablated_scores) / (score if score != 0 else 1.0)


RECIPROCAM_KERNELS = ("point", "gaussian", "gaussian-window")  # as camsurvey.methods.perturbation.RECIPROCAM_KERNELS


def check_kernel(kernel: str) -> str:
    if not isinstance(kernel, str) or kernel not in RECIPROCAM_KERNELS:
        raise ValueError(f"kernel must be one of {sorted(RECIPROCAM_KERNELS)} ('point' is the authors' default), "
                         f"got {kernel!r}")
    return kernel


def reciprocam_masks(height: int, width: int, kernel: str = "point") -> np.ndarray:
    """Recipro-CAM's h*w spatial weights (h*w, h, w): one position, or its 3x3 Gaussian neighbourhood."""
    check_kernel(kernel)
    points = np.eye(height * width, dtype=np.float32).reshape(height * width, height, width)
    if kernel == "point":
        return points
    return correlate(points, GAUSSIAN_3X3[None], mode="constant", cval=0.0)


def reciprocam_features(activations: np.ndarray, masks: np.ndarray, positions: slice, kernel: str) -> np.ndarray:
    """The masked feature maps (n, K, h, w) for ``positions``: the centre's feature vector times the
    mask (the authors' ``"point"`` and ``"gaussian"``) or each position's own features times it
    (our ``"gaussian-window"``); as :func:`camsurvey.methods.perturbation.reciprocam_features`."""
    chunk = masks[positions][:, None]  # (n, 1, h, w)
    if kernel == "gaussian-window":
        return activations[None] * chunk
    centres = activations.reshape(len(activations), -1).T[positions]  # (n, K)
    return centres[:, :, None, None] * chunk


# --- the methods: (model, images, target, **params) -> raw (B, h, w) maps ---------------------

def first_pass(model: OnnxModel, images: np.ndarray, target: IndexTarget,
               batch_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What every method starts with: one forward pass for A and the class scores, the target checked."""
    check_batch_size(batch_size)
    activations = model.features(images)
    scores = model.head(activations)
    return activations, scores, check_target(target, scores)


def scorecam(model: OnnxModel, images: np.ndarray, target: IndexTarget, *,
             batch_size: int = SCORECAM_BATCH_SIZE) -> np.ndarray:
    """Score-CAM, eq. (4): ``ReLU(sum_n w_n A^n)`` with 1 + K forward passes a photo (K = channels
    whose upsampled map is not constant; the others have no normalised mask and no weight)."""
    activations, scores, classes = first_pass(model, images, target, batch_size)
    maps = []
    for b, image in enumerate(images):
        valid = ~is_constant(activations[b])  # decided before upsampling, as in perturbation.scorecam_masks
        masks = norm(up(activations[b], image.shape[-2:]))
        masked_scores = np.zeros(len(masks), dtype=np.float32)
        if valid.any():  # F^c(X ⊙ norm(up(A^n))) for each channel n with a mask
            masks = masks[valid][:, None]
            masked_scores[valid] = np.concatenate([model(masks[chunk] * image)[:, classes[b]]
                                                   for chunk in batches(len(masks), batch_size)])
        weights = scorecam_weights(masked_scores, scores[b, classes[b]], valid)
        maps.append(relu(weighted_sum(weights, activations[b])))
    return np.stack(maps)


def ablationcam(model: OnnxModel, images: np.ndarray, target: IndexTarget, *,
                batch_size: int = ABLATIONCAM_BATCH_SIZE) -> np.ndarray:
    """Ablation-CAM: ``ReLU(sum_k w_k A^k)``, each channel zeroed in turn: 1 forward and K head passes."""
    activations, scores, classes = first_pass(model, images, target, batch_size)
    maps = []
    for b, a in enumerate(activations):
        keep = 1 - np.eye(len(a), dtype=np.float32)[:, :, None, None]  # row k: every channel but k
        ablated = np.concatenate([model.head(a * keep[chunk])[:, classes[b]] for chunk in batches(len(a), batch_size)])
        maps.append(relu(weighted_sum(ablationcam_weights(scores[b, classes[b]], ablated), a)))
    return np.stack(maps)


def reciprocam(model: OnnxModel, images: np.ndarray, target: IndexTarget, *, kernel: str = "point",
               batch_size: int = RECIPROCAM_BATCH_SIZE) -> np.ndarray:
    """Recipro-CAM: each position's softmax score for class c when the head sees only the features
    at it (``kernel``: the authors' ``"point"`` default and ``"gaussian"``, or our
    ``"gaussian-window"``): 1 forward and h*w head passes."""
    check_kernel(kernel)
    activations, _, classes = first_pass(model, images, target, batch_size)
    height, width = activations.shape[-2:]
    masks = reciprocam_masks(height, width, kernel)
    maps = []
    for b, a in enumerate(activations):
        probabilities = np.concatenate([softmax(model.head(reciprocam_features(a, masks, chunk, kernel)), axis=1)[:, classes[b]]
                                        for chunk in batches(len(masks), batch_size)])
        maps.append(probabilities.reshape(height, width))
    return np.stack(maps)


METHODS = {"scorecam": scorecam, "ablationcam": ablationcam, "reciprocam": reciprocam}


def parameters(method: str) -> dict:
    """A method's parameters and their defaults (the same as ``camsurvey.METHODS[method].params``)."""
    signature = inspect.signature(METHODS[method]).parameters.values()
    return {p.name: p.default for p in signature if p.kind is p.KEYWORD_ONLY}


def explain(method: str, model: OnnxModel, images: np.ndarray, target: IndexTarget = None, layer: str | None = None,
            **params: Any) -> np.ndarray:
    """Maps of a gradient-free ``method`` for ``images`` on ONNX Runtime: float32 (B, H, W), each in [0, 1].

    The same convention as ``camsurvey.explain``: ``target`` is ``None`` (each image's top-1),
    one class index or one per image; ``layer`` is ``None`` or the layer the export was split at.
    """
    if method not in METHODS:
        raise ValueError(f"method {method!r} does not run on an ONNX model: the gradient-free methods that do "
                         f"are {sorted(METHODS)} (gradient methods need autograd, which ONNX Runtime has not)")
    if not isinstance(model, OnnxModel):
        raise TypeError(f"model must be an OnnxModel (from camsurvey.deploy.load), got {type(model).__name__}")
    unknown = set(params) - set(parameters(method))
    if unknown:
        raise ValueError(f"method {method!r} has no parameter {sorted(unknown)}; its parameters are {parameters(method)}")
    if layer is not None and layer != model.default_layer:
        raise ValueError(
            f"this ONNX export is split at layer {model.default_layer!r} only, got layer={layer!r}; "
            f"export again with camsurvey.deploy.export(model, folder, layer={layer!r})"
        )
    images = check_images(images)
    maps = METHODS[method](model, images, target, **params)
    return finish(maps, images.shape[-2:])
