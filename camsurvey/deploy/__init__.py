"""Deployment: gradient-free CAMs on an exported model.

* :func:`export` (:mod:`camsurvey.deploy.onnx_export`, needs torch) writes a model, split at
  its CAM layer, as two ONNX graphs and a manifest;
* :mod:`camsurvey.deploy.runtime` (numpy, SciPy, scikit-image and ONNX Runtime; no torch)
  loads an export and runs Score-CAM, Ablation-CAM and Recipro-CAM on it.

``from camsurvey.deploy import runtime`` and ``camsurvey.deploy.load`` import no torch:
:func:`export` is loaded on first use.
"""

from __future__ import annotations

from typing import Any

from .runtime import METHODS as ONNX_METHODS
from .runtime import OnnxModel, load

__all__ = ["ONNX_METHODS", "OnnxModel", "export", "load"]


def __getattr__(name: str) -> Any:
    if name == "export":
        from .onnx_export import export

        return export
    raise AttributeError(f"module 'camsurvey.deploy' has no attribute {name!r}")
