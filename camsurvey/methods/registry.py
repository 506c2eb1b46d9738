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
from typing import TYPE_CHECKING, Any, Literal, overload

import sympy
import torch
from torch import nn

from ..models.base import CamModel
from ..models.wrap import WrappedModel, untouched, wrapped
from ..plumbing import TargetModel, check_images, check_layer, finish
from ..plumbing import normalize as normalize_maps
from ..typing import ClassTarget, Layer, SingleLayer, Target

if TYPE_CHECKING:
    from ..deploy.runtime import OnnxModel

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


FUSIONS = ("mean", "tanh-max")
UNSET = object()  # normalize / reshape not given


@overload
def explain(method: str, model: nn.Module | OnnxModel, images: torch.Tensor, target: Target = None,
            layer: Layer = None, *, fuse: Literal[True, "mean", "tanh-max"] = True, raw: Literal[False] = False,
            normalize: Any = UNSET, reshape: Any = UNSET, **params: Any) -> torch.Tensor: ...


@overload
def explain(method: str, model: nn.Module | OnnxModel, images: torch.Tensor, target: Target = None,
            layer: Layer = None, *, fuse: bool | str = True, raw: bool = False, normalize: Any = UNSET,
            reshape: Any = UNSET, **params: Any) -> torch.Tensor | list[torch.Tensor]: ...


def explain(method: str, model: nn.Module | OnnxModel, images: torch.Tensor, target: Target = None,
            layer: Layer = None, *, fuse: bool | str = True, raw: bool = False, normalize: Any = UNSET,
            reshape: Any = UNSET, **params: Any) -> torch.Tensor | list[torch.Tensor]:
    """Saliency maps of ``method`` for ``images``: a float tensor (B, H, W), each map in [0, 1].

    ``model``: a camsurvey model (:func:`camsurvey.load_model`), any ``torch.nn.Module``
    classifier (wrapped with :func:`camsurvey.wrap`; ``normalize`` and ``reshape`` are passed
    on to it), a :class:`~camsurvey.models.wrap.WrappedModel`, or an ONNX export
    (:func:`camsurvey.deploy.load`, gradient-free methods only).
    ``images``: RGB in [0, 1], (B, 3, H, W); never changed, never given a ``.grad``.
    ``target``: ``None`` for each image's top-1 class, one class index, one per image, or a
    callable turning the model's output into one score per image (a logit difference, a
    probability, a sum over a region of a segmentation output; see
    :class:`camsurvey.plumbing.TargetModel`).
    ``layer``: ``None`` for the model's default CAM layer, a layer name or sub-module, or a
    list of them: then the maps of every layer at input resolution are fused (``fuse``).
    ``fuse``: for a list of layers, ``True`` or ``"mean"`` (the mean of the per-layer maps, as
    pytorch-grad-cam fuses), ``"tanh-max"`` (each map scaled by ``tanh(2 M)``, then the
    element-wise maximum: the Layer-CAM paper's fusion as torchcam implements it), or
    ``False`` for the list of per-layer maps.
    ``raw``: the method's map before upsampling and normalisation, (B, h, w), signed where the
    method is (a list for several layers, with ``fuse=False``).
    ``params``: the method's own parameters (``camsurvey.METHODS[method].params``).

    The model is explained in evaluation mode with frozen parameters; its training flags,
    ``requires_grad``, ``.grad`` and buffers are as before after the call, also when it raises.
    Under ``torch.inference_mode()`` the call works (it leaves inference mode inside).
    """
    entry = get_method(method)
    entry.with_defaults(params)  # a clear ValueError for unknown parameters
    layers, several = check_layers(layer)
    fusion = check_fuse(fuse, several, raw)
    if not isinstance(model, (CamModel, nn.Module)):
        if callable(target) or not isinstance(layer, (str, type(None))) or raw or normalize is not UNSET \
                or reshape is not UNSET:
            raise ValueError("an ONNX export takes a class index target and its one exported layer; target "
                             "callables, layer lists, raw=True, normalize and reshape need a PyTorch model")
        assert not callable(target)  # refused just above
        return explain_deployed(entry, model, images, target, layer, params)
    with torch.inference_mode(False):  # under the caller's inference mode too: gradients need autograd
        model = camsurvey_model(model, normalize, reshape)
    with torch.inference_mode(False), untouched(model):
        images = check_images(images, model)
        scored, index = (TargetModel(model, target), 0) if callable(target) else (model, target)
        names = [resolve_layer(model, each, images, scored) for each in layers]
        for name in names:
            check_layer(model, name, images)
        maps = [entry.function(scored, images, index, name, **params)[0].detach().float() for name in names]
    if raw:
        return maps if several else maps[0]
    finished = [finish(each, images.shape[-2:]) for each in maps]
    if not several:
        return finished[0]
    return finished if fusion is None else fuse_maps(torch.stack(finished), fusion)


def check_layers(layer: Layer) -> tuple[list, bool]:
    """``layer`` as a list, and whether several were asked for (a list or tuple)."""
    if isinstance(layer, (list, tuple)):
        if len(layer) == 0:
            raise ValueError("layer is an empty list; give one layer name, several, or None for the default")
        return list(layer), True
    return [layer], False


def check_fuse(fuse: bool | str, several: bool, raw: bool) -> str | None:
    """The fusion rule for a list of layers (:data:`FUSIONS`), or ``None`` for the per-layer maps."""
    if fuse is True:
        fuse = "mean"
    if fuse is not False and fuse not in FUSIONS:
        raise ValueError(f"fuse must be True, False or one of {FUSIONS}, got {fuse!r}")
    if not isinstance(raw, bool):
        raise TypeError(f"raw must be True or False, got {raw!r}")
    if raw and several and fuse is not False:
        raise ValueError("raw maps of several layers have their own sizes and cannot be fused; pass fuse=False "
                         "for the list of raw maps")
    return None if fuse is False else fuse


def fuse_maps(maps: torch.Tensor, fusion: str) -> torch.Tensor:
    """Fuse (L, B, H, W) per-layer maps in [0, 1] into (B, H, W), normalised again (:func:`normalize`).

    ``"mean"``: the mean over layers (pytorch-grad-cam's ``aggregate_multi_layers``).
    ``"tanh-max"``: ``max_l tanh(2 M_l)`` -- the Layer-CAM paper's scaling of shallow layers' maps
    (its eq. 9, gamma = 2) and element-wise maximum, as torchcam's ``LayerCAM.fuse_cams`` computes
    it (the authors' released code, PengtaoJiang/LayerCAM-jittor, shows one layer at a time).
    """
    fused = maps.mean(dim=0) if fusion == "mean" else torch.tanh(2 * maps).amax(dim=0)
    return normalize_maps(fused)


def camsurvey_model(model: nn.Module, normalize: Any = UNSET, reshape: Any = UNSET) -> CamModel | WrappedModel:
    """A camsurvey model as it is; a plain ``torch.nn.Module`` wrapped (:func:`camsurvey.models.wrap.wrapped`)."""
    if isinstance(model, (CamModel, WrappedModel)):
        if normalize is not UNSET or reshape is not UNSET:
            raise ValueError(f"normalize and reshape describe a plain torch.nn.Module; {type(model).__name__} "
                             "already knows its input normalisation and layers (give them to camsurvey.wrap)")
        return model
    return wrapped(model, "imagenet" if normalize is UNSET else normalize, None if reshape is UNSET else reshape)


def resolve_layer(model: CamModel | WrappedModel, layer: SingleLayer, images: torch.Tensor,
                  scored: Callable | None = None) -> str:
    """The layer's name: ``None`` is the model's default (found by a probe for a wrapped module without
    one, with the score ``scored`` explains), a sub-module object is looked up, a name is checked
    (unknown names list the valid ones)."""
    if isinstance(model, WrappedModel):
        if layer is not None:
            return model.layer_name(layer)
        if isinstance(scored, TargetModel):
            return model.find_default_layer(images, lambda output: scored.scores(output, 1)[:, 0])
        return model.find_default_layer(images)
    if layer is None:
        return model.default_layer
    if isinstance(layer, nn.Module):
        for name, module in model.named_modules():
            if module is layer and name:
                return name
        raise ValueError(f"the layer given ({type(layer).__name__}) is not a sub-module of model {model.name!r}")
    model.layer(layer)  # raises a ValueError listing the valid layers
    return layer


def explain_deployed(entry: Method, model: OnnxModel, images: torch.Tensor, target: ClassTarget, layer: str | None,
                     params: dict) -> torch.Tensor:
    """``explain`` on an ONNX export: :func:`camsurvey.deploy.runtime.explain` (numpy and ONNX
    Runtime, no torch), with torch tensors in and out. A gradient method raises, naming those that run."""
    from ..deploy import runtime

    if not isinstance(model, runtime.OnnxModel):
        raise TypeError(
            f"model must be a camsurvey model (camsurvey.load_model), a torch.nn.Module classifier or an ONNX "
            f"export (camsurvey.deploy.load), got {type(model).__name__}"
        )
    if entry.name not in runtime.METHODS:
        why = ("needs gradients, and an ONNX model runs forward only (no autograd)" if entry.needs_gradients
               else "has no ONNX Runtime implementation")
        raise ValueError(
            f"method {entry.name!r} {why}; the gradient-free methods that run on an ONNX model are "
            f"{sorted(runtime.METHODS)}. Use the PyTorch model (camsurvey.load_model) for {entry.name!r}."
        )
    pixels = check_images(images).cpu().numpy()
    classes = target.tolist() if isinstance(target, torch.Tensor) else target
    return torch.from_numpy(runtime.explain(entry.name, model, pixels, classes, layer, **params))
