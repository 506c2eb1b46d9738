"""``METHODS``, the one registry of every method, and ``explain``, the one way in.

Chapters, figures, metric tables, widgets and the benchmark all iterate over ``METHODS``
instead of keeping lists of their own.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..models.base import CamModel
from ..plumbing import check_images, normalize, upsample

FAMILIES = ("activation-based", "gradient-based", "gradient-free", "smoothing/integration", "helper")


@dataclass(frozen=True)
class Method:
    """A registered method: its equation, where the survey puts it, and what it costs.

    ``function(model, images, target, layer, **params)`` returns ``(maps, target)``: raw
    (B, h, w) maps at any resolution and the class index used for each image.
    ``cost(channels, positions, **params)`` counts the passes one image costs:
    full ``forward``/``backward`` passes and ``head`` passes (after the split).
    """

    name: str
    function: Callable
    family: str
    section: str
    equation: str
    reference: str
    passes: str
    cost: Callable
    needs_gradients: bool
    needs_head: bool = False
    params: dict = field(default_factory=dict)

    def describe(self) -> str:
        return f"{self.name}: {self.family}, survey {self.section}, {self.equation} [{self.reference}]; costs {self.passes}"


METHODS: dict[str, Method] = {}


def register(name, *, family, section, equation, reference, passes, cost, needs_gradients, needs_head=False):
    """Decorator adding a method function to :data:`METHODS` (its keyword defaults are its parameters)."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}")

    def decorate(function):
        signature = inspect.signature(function)
        params = {p.name: p.default for p in signature.parameters.values() if p.kind is p.KEYWORD_ONLY}
        METHODS[name] = Method(name, function, family, section, equation, reference, passes, cost,
                               needs_gradients, needs_head, params)
        return function

    return decorate


def get_method(name) -> Method:
    if not isinstance(name, str) or name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {sorted(METHODS)}")
    return METHODS[name]


def explain(method: str, model: CamModel, images: torch.Tensor, target=None, layer: str | None = None,
            **params) -> torch.Tensor:
    """Saliency maps of ``method`` for ``images``: a float tensor (B, H, W), each map in [0, 1].

    ``target``: ``None`` for each image's top-1 class, one class index, or one per image.
    ``layer``: ``None`` for the model's default CAM layer, or a layer name.
    ``params``: the method's own parameters (``camsurvey.METHODS[method].params``).
    """
    entry = get_method(method)
    unknown = set(params) - set(entry.params)
    if unknown:
        raise ValueError(
            f"method {method!r} has no parameter {sorted(unknown)}; its parameters are "
            f"{entry.params or 'none'}"
        )
    if not isinstance(model, CamModel):
        return _explain_deployed(entry, model, images, target, layer, params)
    if layer is not None:
        model.layer(layer)  # raises a ValueError listing the valid layers
    images = check_images(images, model)
    maps, _ = entry.function(model, images, target, layer, **params)
    maps = upsample(maps.detach().float(), images.shape[-2:])
    maps = torch.nan_to_num(maps, nan=0.0, posinf=0.0, neginf=0.0)
    return normalize(maps)


def _explain_deployed(entry: Method, model, images, target, layer, params) -> torch.Tensor:
    """``explain`` on an ONNX export: :func:`camsurvey.runtime.explain` (numpy and ONNX Runtime,
    no torch), with torch tensors in and out. A gradient method raises, naming those that run."""
    from .. import runtime

    if not isinstance(model, runtime.OnnxModel):
        raise TypeError(
            f"model must be a camsurvey model (from camsurvey.load_model or camsurvey.deploy.load), "
            f"got {type(model).__name__}"
        )
    if entry.name not in runtime.METHODS:
        why = ("needs gradients, and an ONNX model runs forward only (no autograd)" if entry.needs_gradients
               else "has no ONNX Runtime implementation")
        raise ValueError(
            f"method {entry.name!r} {why}; the gradient-free methods that run on an ONNX model are "
            f"{sorted(runtime.METHODS)}. Use the PyTorch model (camsurvey.load_model) for {entry.name!r}."
        )
    images = check_images(images).cpu().numpy()
    if isinstance(target, torch.Tensor):
        target = target.tolist()
    return torch.from_numpy(runtime.explain(entry.name, model, images, target, layer, **params))
