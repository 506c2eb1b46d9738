"""``METHODS``, the one registry of every method, and ``explain``, the one way in.

Chapters, figures, metric tables, widgets and the benchmark all iterate over ``METHODS``
instead of keeping lists of their own. The registry lists the methods in the survey's order
(:data:`SECTIONS`), each section's methods in the order their module registers them.

What a method costs is written once, as its ``cost`` function: ``cost(shape, **params)`` gets
the explained layer's :class:`LayerShape` and every parameter of the method (its defaults,
overridden by what the caller gave) and returns the passes one image costs. Everything else
is derived from it: :meth:`Method.count_passes` for numbers, :attr:`Method.passes` for the
text the chapters print (the same function evaluated on symbols).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sympy
import torch

from ..models.base import CamModel
from ..plumbing import check_images, finish

FAMILIES = ("activation-based", "gradient-based", "gradient-free", "smoothing/integration", "helper")
SECTIONS = ("II.A", "II.B", "II.C", "III", "IV")  # the survey's sections that hold methods, in its order
PASS_KINDS = ("forward", "backward", "head")  # full forward passes, backward passes, passes of the head alone


@dataclass(frozen=True)
class LayerShape:
    """What a method's cost depends on at the explained layer A (K, h, w).

    ``live_channels``: the channels whose map is not constant (Score-CAM and its variants give
    the others no forward pass); ``None`` means all of them.
    """

    channels: Any
    positions: Any
    live_channels: Any = None

    @property
    def live(self) -> Any:
        """K_live: the channels with a non-constant map (all K when not measured)."""
        return self.channels if self.live_channels is None else self.live_channels


# The symbols the cost text is written in.
SYMBOLS = LayerShape(sympy.Symbol("K"), sympy.Symbol("HW"), sympy.Symbol("K_live"))
SYMBOLS_LEGEND = ("K: channels of the explained layer; HW: its positions h*w; "
                  "K_live: channels whose map is not constant")


def pass_counts(cost: dict) -> dict:
    """A cost as ``{"forward": f, "backward": b, "head": h}``, every kind present (0 if absent)."""
    unknown = set(cost) - set(PASS_KINDS)
    if unknown:
        raise ValueError(f"a cost counts only {PASS_KINDS} passes, got {sorted(unknown)}")
    return {kind: cost.get(kind, 0) for kind in PASS_KINDS}


def describe_passes(cost: dict) -> str:
    """``{"forward": K_live + 1, "head": 0}`` as ``"K_live + 1 forward"``."""
    parts = [f"{sympy.sympify(count)} {kind}" for kind, count in pass_counts(cost).items() if count != 0]
    return " + ".join(parts) or "no passes"


@dataclass(frozen=True)
class Method:
    """A registered method: its equation, where the survey puts it, and what it costs.

    ``function(model, images, target, layer, **params)`` returns ``(maps, target)``: raw
    (B, h, w) maps at any resolution and the class index used for each image.
    ``cost(shape, **params)`` counts the passes one image costs (see the module docstring).
    ``params``: the method's keyword parameters and their defaults (read off ``function``).
    """

    name: str
    function: Callable
    family: str
    section: str
    equation: str
    reference: str
    cost: Callable[..., dict]
    needs_gradients: bool
    params: dict = field(default_factory=dict)

    def with_defaults(self, params: dict) -> dict:
        """``params`` completed with the method's defaults; an unknown name raises a ValueError."""
        unknown = set(params) - set(self.params)
        if unknown:
            raise ValueError(f"method {self.name!r} has no parameter {sorted(unknown)}; its parameters are "
                             f"{self.params or 'none'}")
        return {**self.params, **params}

    def cost_at(self, shape: LayerShape, **params) -> dict:
        """Passes one image costs at a layer of ``shape``, with ``params`` (the rest at their defaults)."""
        return pass_counts(self.cost(shape, **self.with_defaults(params)))

    def count_passes(self, channels: int, positions: int, live_channels: int | None = None, **params) -> dict:
        """Passes one image costs at a layer of ``channels`` x ``positions`` (h*w), with ``params``."""
        return self.cost_at(LayerShape(channels, positions, live_channels), **params)

    @property
    def passes(self) -> str:
        """The cost in words, with the default parameters: ``cost`` evaluated on the symbols
        K, HW and K_live (:data:`SYMBOLS_LEGEND`)."""
        return describe_passes(self.cost_at(SYMBOLS))


METHODS: dict[str, Method] = {}


def register(name: str, *, family: str, section: str, equation: str, reference: str, cost: Callable[..., dict],
             needs_gradients: bool) -> Callable:
    """Decorator adding a method function to :data:`METHODS` (its keyword defaults are its parameters)."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}")
    if not section.startswith(SECTIONS):
        raise ValueError(f"section must start with one of {SECTIONS}, got {section!r}")

    def decorate(function):
        signature = inspect.signature(function)
        params = {p.name: p.default for p in signature.parameters.values() if p.kind is p.KEYWORD_ONLY}
        METHODS[name] = Method(name, function, family, section, equation, reference, cost, needs_gradients, params)
        in_survey_order = sorted(METHODS.values(), key=lambda entry: survey_rank(entry.section))  # stable
        METHODS.clear()
        METHODS.update((entry.name, entry) for entry in in_survey_order)
        return function

    return decorate


def survey_rank(section: str) -> int:
    """Where a section comes in the survey: the index in :data:`SECTIONS` of the one it starts with."""
    return next(rank for rank, start in enumerate(SECTIONS) if section.startswith(start))


def get_method(name: str) -> Method:
    if not isinstance(name, str) or name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {list(METHODS)}")
    return METHODS[name]


def explain(method: str, model, images: torch.Tensor, target=None, layer: str | None = None,
            **params) -> torch.Tensor:
    """Saliency maps of ``method`` for ``images``: a float tensor (B, H, W), each map in [0, 1].

    ``model``: a camsurvey model (:func:`camsurvey.load_model`) or an ONNX export
    (:func:`camsurvey.deploy.load`, gradient-free methods only).
    ``target``: ``None`` for each image's top-1 class, one class index, or one per image.
    ``layer``: ``None`` for the model's default CAM layer, or a layer name.
    ``params``: the method's own parameters (``camsurvey.METHODS[method].params``).
    """
    entry = get_method(method)
    entry.with_defaults(params)  # a clear ValueError for unknown parameters
    if not isinstance(model, CamModel):
        return explain_deployed(entry, model, images, target, layer, params)
    if layer is not None:
        model.layer(layer)  # raises a ValueError listing the valid layers
    images = check_images(images, model)
    maps, _ = entry.function(model, images, target, layer, **params)
    return finish(maps, images.shape[-2:])


def explain_deployed(entry: Method, model, images, target, layer, params) -> torch.Tensor:
    """``explain`` on an ONNX export: :func:`camsurvey.deploy.runtime.explain` (numpy and ONNX
    Runtime, no torch), with torch tensors in and out. A gradient method raises, naming those that run."""
    from ..deploy import runtime

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
