"""camsurvey: an executable textbook of Class Activation Map explainability.

    import camsurvey as cs
    model = cs.load_model("efficientnet_lite0")
    image = cs.load_image("chelsea")
    saliency = cs.explain("gradcam++", model, image)      # (B, H, W), in [0, 1]

The package has layers, and imports run one way, from the top of this list down:

* the book tooling, :mod:`camsurvey.book` (chapter runs, student edition, grading, widgets),
  and the command line, :mod:`camsurvey.cli`;
* the laboratory, :mod:`camsurvey.lab` (evaluation, experiments, benchmark, training);
* the library: :mod:`camsurvey.models`, :mod:`camsurvey.images`, :mod:`camsurvey.datasets`,
  :mod:`camsurvey.plumbing`, :mod:`camsurvey.methods`, :mod:`camsurvey.metrics`,
  :mod:`camsurvey.predict`, :mod:`camsurvey.viz`;
* deployment, :mod:`camsurvey.deploy` (ONNX export, and a runtime without torch), over the
  torch-free core :mod:`camsurvey.common` and :mod:`camsurvey.files`.

The names below are loaded on first use (the lazy loading of SPEC 1, Scientific Python), so
``from camsurvey.deploy import runtime`` in a serving image imports numpy and ONNX Runtime but
not torch. ``cs.explain`` and the rest import torch when first used.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("camsurvey")  # the one source: pyproject.toml
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0+unknown"

# public name -> the submodule that defines it
_NAMES = {
    "box_mask": "images", "bundled_photos": "images", "load_box": "images", "load_image": "images",
    "load_images": "images", "photo_annotations": "images", "read_photo": "images",
    "FAMILIES": "methods", "METHODS": "methods", "Method": "methods", "explain": "methods", "get_method": "methods",
    "MODELS": "models", "CamModel": "models", "imagenet_categories": "models", "load_model": "models",
    "register_model": "models",
    "predict": "predict", "predict_labels": "predict", "top_k": "predict",
    "WrappedModel": "models.wrap", "wrap": "models.wrap",
}
# public name -> (submodule, the name there), where the two differ (viz.overlay draws on matplotlib axes)
_ALIASES = {"overlay": ("viz", "overlay_image"), "save_overlay": ("viz", "save_overlay")}
_SUBMODULES = {"book", "cli", "common", "datasets", "deploy", "files", "images", "lab", "methods", "metrics", "models",
               "plumbing", "predict", "viz"}

__all__ = sorted(set(_NAMES) | set(_ALIASES))


def __getattr__(name: str):
    if name in _NAMES:
        value = getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
    elif name in _ALIASES:
        value = getattr(importlib.import_module(f".{_ALIASES[name][0]}", __name__), _ALIASES[name][1])
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'camsurvey' has no attribute {name!r}")
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_NAMES) | set(_ALIASES) | _SUBMODULES)
