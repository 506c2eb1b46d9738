"""Any ``torch.nn.Module`` classifier as a camsurvey model: ``cs.wrap(module, layer="layer4")``.

Every method of the book needs four things of a model: its class scores for RGB images in
[0, 1], a layer by name (to capture A and dy/dA with a hook), the layer's output as
(B, C, h, w) maps, and -- for Ablation-CAM and Recipro-CAM -- the network *after* the layer,
to re-run on perturbed maps. :class:`WrappedModel` gives a plain module (torchvision, timm,
your own) exactly that interface, without changing it::

    import torchvision, camsurvey as cs
    model = cs.wrap(torchvision.models.resnet50(), layer="layer4")   # ImageNet normalisation inside
    saliency = cs.explain("ablationcam", model, images)              # or cs.explain(..., module, ...)

**The caller's module is not changed.** Every forward pass through the wrapper runs the module
in evaluation mode with its parameters frozen (:func:`untouched`), and gives back each
sub-module's training flag, each parameter's ``requires_grad`` and ``.grad`` and every buffer
exactly as they were, also when the call raises; the hooks a method adds are removed. So an
unfrozen module in training mode gives the maps of its evaluation mode, and its BatchNorm
statistics do not move.

**The network after the layer** (:meth:`WrappedModel.image_heads`) comes in one of two ways:

* ``torch.fx`` (where the module traces): the module is traced with torchvision's
  feature-extraction tracer (the one ``create_feature_extractor`` uses), the layer kept whole,
  and the graph is cut at the layer's node into a features part and a head part. A head pass
  then costs only the layers after the cut, as on a camsurvey model. Where the rest of the
  network also reads tensors computed before the layer (a residual stream around a
  Transformer block's ``norm1``), those tensors are computed once per image and fed to the
  head with the perturbed maps.
* a forward hook (where it does not trace, or ``split="hook"``): the whole module is re-run on
  the image, repeated, with the layer's output replaced by the perturbed maps. Same maps, but
  each head pass costs a *full* forward pass instead of the layers after the cut: for
  Ablation-CAM at ResNet-50's ``layer4`` that is 2048 full passes instead of 2048 passes
  through pooling and ``fc``.

The fx split is checked once per layer against the module's own forward on the first image
(features, head and the class scores); a mismatch falls back to the hook, with a warning.
"""

from __future__ import annotations

import difflib
import math
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import fx, nn

from ..typing import Normalization, Reshape, SingleLayer
from .layouts import Layout, channels_first, detect_layout

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SPLITS = ("auto", "fx", "hook")
LISTED_LAYERS = 12  # how many layer names an error message lists before "and N more"


# --- the caller's module, unchanged --------------------------------------------------------

@contextmanager
def untouched(module: nn.Module, buffers: bool = True) -> Iterator[nn.Module]:
    """Run ``module`` in evaluation mode with frozen parameters; restore everything on exit.

    Restored exactly: every sub-module's ``training`` flag (set directly, so no overridden
    ``train()`` runs), every parameter's ``requires_grad`` and ``.grad``, and (with
    ``buffers``) every buffer's values, in place, where a pass changed them. Nested uses are
    harmless. ``explain`` keeps the buffers once per call; each forward pass of a
    :class:`WrappedModel` keeps the rest (in evaluation mode no standard layer writes a buffer,
    and comparing buffers at every pass would cost a device synchronisation on a GPU).
    """
    modules = list(module.modules())
    modes = [m.training for m in modules]
    parameters = list(module.parameters())
    flags = [p.requires_grad for p in parameters]
    grads = [p.grad for p in parameters]
    saved = [(b, b.detach().clone()) for b in module.buffers()] if buffers else []
    try:
        for m in modules:
            m.training = False
        for p, flag in zip(parameters, flags):
            if flag:
                p.requires_grad_(False)
        yield module
    finally:
        for m, mode in zip(modules, modes):
            m.training = mode
        for p, flag, grad in zip(parameters, flags, grads):
            if flag:
                p.requires_grad_(True)
            if p.grad is not grad:
                p.grad = grad
        with torch.no_grad():
            for b, value in saved:
                if b.shape != value.shape or not torch.equal(b, value):
                    b.copy_(value)


# --- normalisation -----------------------------------------------------------------------------

def normalization(normalize) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(mean, std)`` as (1, 3, 1, 1) tensors from ``"imagenet"``, a ``(mean, std)`` pair, or ``None``."""
    if normalize is None:
        return None
    if isinstance(normalize, str):
        if normalize != "imagenet":
            raise ValueError(f"normalize must be 'imagenet', a (mean, std) pair or None, got {normalize!r}")
        normalize = (IMAGENET_MEAN, IMAGENET_STD)
    try:
        mean, std = (torch.as_tensor(v, dtype=torch.float32).flatten() for v in normalize)
    except (TypeError, ValueError):
        raise ValueError(f"normalize must be 'imagenet', a (mean, std) pair of 3 numbers each, or None, "
                         f"got {normalize!r}") from None
    if mean.numel() not in (1, 3) or std.numel() not in (1, 3) or not torch.isfinite(mean).all() \
            or not torch.isfinite(std).all() or (std <= 0).any():
        raise ValueError(f"normalize needs one or three finite means and positive standard deviations, "
                         f"got {normalize!r}")
    return mean.expand(3).reshape(1, 3, 1, 1).clone(), std.expand(3).reshape(1, 3, 1, 1).clone()


# --- the output -------------------------------------------------------------------------------

def check_scores(scores, batch: int | None = None) -> None:
    """The model's output must be class scores, (B, K); otherwise say what to do (a target callable)."""
    if not isinstance(scores, torch.Tensor) or scores.ndim != 2 or (batch is not None and scores.shape[0] != batch):
        shape = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise ValueError(f"the model's output is {shape}, not class scores of shape (B, K) for a batch of "
                         f"{batch if batch is not None else 'B'} images: it is not a classifier. To explain another "
                         "output, pass target=a callable that turns it into one score per image, e.g. "
                         "target=lambda out: out['out'][:, 15].sum(dim=(1, 2))")


def top_score(output) -> torch.Tensor:
    """The first image's top class score (what the default layer is found with)."""
    check_scores(output)
    return output[0, output[0].argmax()]


# --- layer names -------------------------------------------------------------------------------

def closest_first(name: str, names: list[str]) -> list[str]:
    """``names`` with the ones most like ``name`` first (difflib), the rest in their order."""
    close = difflib.get_close_matches(name, names, n=LISTED_LAYERS, cutoff=0.3)
    return close + [n for n in names if n not in close]


def listing(names: list[str]) -> str:
    shown = names[:LISTED_LAYERS]
    more = f" and {len(names) - len(shown)} more" if len(names) > len(shown) else ""
    return ", ".join(repr(n) for n in shown) + more


@dataclass
class LayerRecord:
    """What one probe pass saw of a sub-module: calls, its last output, and the gradient there."""

    name: str
    calls: int = 0
    output: object = None
    returned: object = None
    layout: Layout | None = None
    gradient: torch.Tensor | None = None
    gradient_reaches: bool = False


def probe(model: nn.Module, root: nn.Module, image: torch.Tensor, gradients: bool = False, reshape: Reshape = None,
          score: Callable = top_score) -> dict:
    """Run ``model`` once on ``image`` with a hook on every sub-module of ``root``; ``name -> LayerRecord``.

    Each hook returns a clone of the output, so later in-place operations cannot change what
    was recorded. With ``gradients``, ``score(output)`` (by default the top class score) is
    differentiated with respect to every recorded output, to tell which layers it depends on.
    """
    records: dict[str, LayerRecord] = {}
    handles = []

    def hook_for(name):
        def hook(_module, _inputs, output):
            record = records.setdefault(name, LayerRecord(name))
            record.calls += 1
            record.output = output
            if isinstance(output, torch.Tensor):
                record.returned = output.clone()
                return record.returned
            return None
        return hook

    for name, module in root.named_modules():
        if name:
            handles.append(module.register_forward_hook(hook_for(name)))
    try:
        with torch.enable_grad() if gradients else torch.no_grad():
            inputs = image.detach().clone().requires_grad_(gradients)
            scores = model(inputs)
            outputs = [r for r in records.values() if isinstance(r.output, torch.Tensor) and r.output.requires_grad]
            tensors: list[torch.Tensor] = [r.output for r in outputs]  # type: ignore[misc]
            if gradients and outputs:
                found = torch.autograd.grad(score(scores).sum(), tensors, allow_unused=True)
                for record, grad in zip(outputs, found):
                    record.gradient = grad
    finally:
        for handle in handles:
            handle.remove()
    for record in records.values():
        try:
            record.layout = detect_layout(record.output, image.shape[-2:], reshape)
        except ValueError:
            record.layout = None
        if record.layout is not None and record.gradient is not None:
            gradient = record.layout.to_maps(record.gradient)
            record.gradient_reaches = gradient.shape[-2] * gradient.shape[-1] > 1 and bool(gradient.abs().sum() > 0)
        record.gradient = None
    return records


def valid_layers(records: dict) -> list[str]:
    """The layers a CAM can be taken at: run once, output a spatial feature map."""
    return [r.name for r in records.values() if r.calls == 1 and r.layout is not None]


def equivalent_layer(records: dict, name: str) -> str | None:
    """A layer run once whose output is the very tensor of ``name``'s last call (e.g. the block around it)."""
    last = records.get(name)
    if last is None or last.returned is None:
        return None
    for record in records.values():
        if record.name != name and record.calls == 1 and record.output is last.returned:
            return record.name
    return None


# --- torch.fx: the network cut at the layer ---------------------------------------------------

def torchvision_tracer(layer: nn.Module) -> fx.Tracer:
    """torchvision's feature-extraction tracer with its default leaves (``torchvision.ops``) and ``layer`` kept whole."""
    import torchvision
    from torchvision.models.feature_extraction import LeafModuleAwareTracer

    leaves = [obj for obj in vars(torchvision.ops).values() if isinstance(obj, type) and issubclass(obj, nn.Module)]

    class CutTracer(LeafModuleAwareTracer):
        def is_leaf_module(self, m: nn.Module, module_qualname: str) -> bool:
            return m is layer or super().is_leaf_module(m, module_qualname)

    return CutTracer(leaf_modules=leaves, autowrap_modules=(math, torchvision.ops))


@dataclass
class FxSplit:
    """The module as two graphs: ``features(x) -> (raw A, *frontier)`` and ``head(raw A, *frontier) -> output``.

    ``frontier``: the tensors computed before the layer that the rest of the network also
    reads; empty for a clean cut (then the head depends on A alone).
    """

    features: fx.GraphModule
    head: fx.GraphModule
    frontier: int
    modules_after: list = field(default_factory=list)


def fx_split(module: nn.Module, layer: nn.Module, layer_name: str) -> FxSplit:
    """Trace ``module`` and cut its graph at the (single) call of ``layer``.

    Raises ``fx`` / tracing errors for modules that do not trace, and a ValueError when the
    layer is called other than once.
    """
    tracer = torchvision_tracer(layer)
    graph = tracer.trace(module)
    root = tracer.root
    target = tracer.path_of_module(layer)
    cuts = [n for n in graph.nodes if n.op == "call_module" and n.target == target]
    if len(cuts) != 1:
        raise ValueError(f"layer {layer_name!r} is called {len(cuts)} times in the traced graph")
    cut = cuts[0]
    nodes = list(graph.nodes)
    from_input = set()
    for node in nodes:
        if node.op == "placeholder" or any(arg in from_input for arg in node.all_input_nodes):
            from_input.add(node)
    after = {cut}
    for node in nodes:
        if node.op != "output" and any(arg in after for arg in node.all_input_nodes):
            after.add(node)
    output = next(n for n in nodes if n.op == "output")
    readers = [n for n in after if n is not cut] + [output]
    frontier = [n for n in nodes if n in from_input and n not in after
                and any(n in reader.all_input_nodes for reader in readers)]

    head_graph, env = fx.Graph(), {}
    env[cut] = head_graph.placeholder("activations")
    for index, node in enumerate(frontier):
        env[node] = head_graph.placeholder(f"frontier_{index}")
    for node in nodes:
        if node.op in ("placeholder", "output") or node in env:
            continue
        if node in after or node not in from_input:
            env[node] = head_graph.node_copy(node, lambda n: env[n])
    head_graph.output(fx.map_arg(output.args[0], lambda n: env[n]))

    features_graph, env = fx.Graph(), {}
    for node in nodes:
        if node.op == "output" or (node in after and node is not cut):
            continue
        env[node] = features_graph.node_copy(node, lambda n: env[n])
    features_graph.output((env[cut], *[env[n] for n in frontier]))
    if not any(cut in reader.all_input_nodes for reader in readers):
        raise ValueError(f"the module's output does not depend on layer {layer_name!r}")

    head, features = fx.GraphModule(root, head_graph, "Head"), fx.GraphModule(root, features_graph, "Features")
    for graph_module in (head, features):
        graph_module.graph.eliminate_dead_code()  # needs the owning module to judge call_module nodes
        graph_module.delete_all_unused_submodules()
        graph_module.recompile()
    modules_after = []
    for node in head.graph.nodes:
        if node.op == "call_module":
            modules_after.append(head.get_submodule(node.target))
        elif node.op in ("call_function", "call_method"):
            modules_after.append(FunctionStage(node))
    return FxSplit(features, head, len(frontier), modules_after)


class FunctionStage(nn.Module):
    """Stands for a function call in a traced head (``torch.flatten(x, 1)`` reads as ``nn.Flatten``)."""

    def __init__(self, node: fx.Node):
        super().__init__()
        self.node_name = f"{node.op}:{getattr(node.target, '__name__', node.target)}"

    def extra_repr(self) -> str:
        return self.node_name


def stage_of(node_stage: nn.Module) -> nn.Module:
    """A flatten call read as the ``nn.Flatten`` module it is (so CAM recognises GAP + linear heads)."""
    if isinstance(node_stage, FunctionStage) and node_stage.node_name in ("call_function:flatten",
                                                                          "call_method:flatten"):
        return nn.Flatten(1)
    return node_stage


SPLITS_MADE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # module -> {(layer, ...): FxSplit | "hook"}
DEFAULT_LAYERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # module -> {(reshape, top score?): name}
LAYOUTS_SEEN: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # module -> {(layer, (H, W), reshape): Layout}


def attribute(root: nn.Module, target: str):
    """The sub-module, parameter or buffer at the dotted path ``target`` of ``root``."""
    prefix, _, last = target.rpartition(".")
    return getattr(root.get_submodule(prefix) if prefix else root, last)


def split_is_current(module: nn.Module, split: FxSplit) -> bool:
    """Every sub-module and attribute the head graph uses is still the module's own (none was replaced)."""
    try:
        return all(attribute(module, node.target) is attribute(split.head, node.target)
                   for node in split.head.graph.nodes if node.op in ("call_module", "get_attr"))
    except AttributeError:
        return False


# --- the wrapper ----------------------------------------------------------------------------

class Features(nn.Module):
    """images in [0, 1] -> maps A (B, C, h, w) of the layer (the fx features graph)."""

    def __init__(self, wrapper: WrappedModel, split: FxSplit, layout: Layout):
        super().__init__()
        self.wrapper, self.graph = [wrapper], split.features  # a list: not a sub-module of ours
        self.layout = layout

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        with untouched(self.wrapper[0].module, buffers=False):
            return self.layout.to_maps(self.graph(self.wrapper[0].normalized(images))[0])


class Head(nn.Module):
    """maps A (N, C, h, w) -> the module's output, through the fx head graph (a clean cut)."""

    def __init__(self, wrapper: WrappedModel, split: FxSplit, layout: Layout):
        super().__init__()
        self.wrapper, self.graph, self.layout = [wrapper], split.head, layout
        self.stages = [stage_of(stage) for stage in split.modules_after]

    def forward(self, maps: torch.Tensor):
        assert self.layout.from_maps is not None
        with untouched(self.wrapper[0].module, buffers=False):
            return self.graph(self.layout.from_maps(maps, None))

    def __iter__(self) -> Iterator[nn.Module]:
        """The modules (and function calls) after the layer, in the order they run."""
        return iter(self.stages)


class WrappedModel(nn.Module):
    """A plain classifier ``module`` with the interface of a camsurvey model (see the module docstring).

    ``layer``: the default CAM layer, a dotted name (``"layer4"``, ``"features.8"``,
    ``"blocks.11.norm1"``) or the module object; ``None`` finds it on the first call: the last
    layer (in the order they finish) whose output is a spatial map that the top class score
    depends on (one probe pass with gradients, as torchcam locates its layer).
    ``normalize``: what the module expects of its input, applied inside: ``"imagenet"`` (the
    default: torchvision's and most timm models' mean and std), ``(mean, std)``, or ``None``.
    Images given to camsurvey are always RGB in [0, 1].
    ``reshape``: how the layer's output becomes (B, C, h, w) maps: ``None`` to detect (see
    :func:`camsurvey.models.layouts.detect_layout`), ``"BCHW"``, ``"BHWC"``, ``"tokens"``, or a
    function (like pytorch-grad-cam's ``reshape_transform``; forward only, so Ablation-CAM
    and Recipro-CAM need one of the names).
    ``split``: ``"auto"`` (fx where the module traces, else the hook), ``"fx"`` or ``"hook"``.
    """

    def __init__(self, module: nn.Module, *, layer=None, normalize="imagenet", reshape=None, split: str = "auto",
                 name: str | None = None, categories=None):
        super().__init__()
        if not isinstance(module, nn.Module):
            raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if reshape is not None and not callable(reshape) and not isinstance(reshape, str):
            raise TypeError(f"reshape must be None, a layout name or a function, got {type(reshape).__name__}")
        self.module = module
        self.name = name or type(module).__name__
        self.split_mode = split
        self.reshape = reshape
        self.categories = list(categories) if categories is not None else None
        with torch.inference_mode(False):  # normal tensors, usable by autograd, even if made in inference mode
            stats = normalization(normalize)
        self.mean: torch.Tensor | None = None if stats is None else stats[0]
        self.std: torch.Tensor | None = None if stats is None else stats[1]
        self.default_layer = None if layer is None else self.layer_name(layer)

    # the camsurvey model interface ------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        for parameter in self.module.parameters():
            return parameter.device
        for buffer in self.module.buffers():
            return buffer.device
        return torch.device("cpu")

    @property
    def num_classes(self) -> int | None:
        return None if self.categories is None else len(self.categories)

    def normalized(self, images: torch.Tensor) -> torch.Tensor:
        if self.mean is None or self.std is None:
            return images
        return (images - self.mean.to(images)) / self.std.to(images)

    def forward(self, images: torch.Tensor):
        """The module's output for RGB images in [0, 1], normalised as the module expects."""
        with untouched(self.module, buffers=False):
            return self.module(self.normalized(images))

    def named_layers(self) -> list[tuple[str, nn.Module]]:
        return [(n, m) for n, m in self.module.named_modules() if n]

    def layer_name(self, layer) -> str:
        """The dotted name of ``layer`` (a name or a sub-module object); unknown names list the closest."""
        if isinstance(layer, nn.Module):
            for name, module in self.named_layers():
                if module is layer:
                    return name
            raise ValueError(f"the layer given ({type(layer).__name__}) is not a sub-module of {self.name}; "
                             "pass one of model.named_modules() or its name")
        if not isinstance(layer, str):
            raise TypeError(f"layer must be a name (str), a sub-module or a list of those, got {type(layer).__name__}")
        names = [n for n, _ in self.named_layers()]
        if layer not in names:
            raise ValueError(f"unknown layer {layer!r} for {self.name}; choose one of "
                             f"{listing(closest_first(layer, names))} (dotted names from module.named_modules())")
        return layer

    def layer(self, name=None) -> nn.Module:
        """The sub-module whose output is the activation map A of layer ``name`` (default: the model's)."""
        if name is None:
            if self.default_layer is None:
                raise ValueError(f"no layer given for {self.name}: pass layer='...' (a name from "
                                 "module.named_modules()), or explain once with layer=None to find one")
            name = self.default_layer
        return self.module.get_submodule(self.layer_name(name))

    @property
    def layer_names(self) -> list[str]:
        """Every sub-module's dotted name (which of them are spatial maps takes a probe: :func:`probe`)."""
        return [n for n, _ in self.named_layers()]

    def find_default_layer(self, image: torch.Tensor, score: Callable = top_score) -> str:
        """Set and return :attr:`default_layer` when none was given (one probe pass with gradients of
        ``score(output)``, by default the top class score)."""
        if self.default_layer is None:
            found = DEFAULT_LAYERS.setdefault(self.module, {})
            key = (repr(self.reshape), score is top_score)
            if key not in found:
                with torch.no_grad():
                    score(self(image[:1]))  # a clear message for a module that is not a classifier
                records = probe(self, self.module, image[:1], gradients=True, reshape=self.reshape, score=score)
                candidates = [r.name for r in records.values() if r.calls == 1 and r.layout is not None
                              and r.gradient_reaches]
                if not candidates:
                    raise ValueError(f"found no layer of {self.name} whose output is a spatial map that the class "
                                     "score depends on; pass layer='...' (and reshape=... for token outputs)")
                found[key] = candidates[-1]
            self.default_layer = found[key]
        return self.default_layer

    def layout(self, output, image_size) -> Layout:
        """The :class:`Layout` of a layer's ``output`` (``reshape``, or detected from its shape)."""
        return detect_layout(output, image_size, self.reshape)

    # the network after the layer --------------------------------------------------------------

    def _split_at(self, name: str, image: torch.Tensor):
        """The fx split at ``name`` checked on ``image`` (1, 3, H, W), or ``"hook"``.

        Kept per module (weakly: it goes with the module) and layer, and made again if a
        sub-module the head calls has been replaced since.
        """
        cache = SPLITS_MADE.setdefault(self.module, {})
        key = (name, self.split_mode, repr(self.mean), repr(self.std))
        if key in cache and (not isinstance(cache[key], FxSplit) or split_is_current(self.module, cache[key])):
            return cache[key]
        choice: object = "hook"
        if self.split_mode != "hook":
            layer = self.layer(name)
            try:
                with untouched(self.module, buffers=False):
                    split = fx_split(self.module, layer, name)
                    choice = split if self._split_agrees(split, name, image) else "hook"
                if choice == "hook":
                    warnings.warn(f"the torch.fx split of {self.name} at {name!r} does not reproduce the module's "
                                  "forward pass; camsurvey re-runs the whole module with a forward hook instead",
                                  RuntimeWarning, stacklevel=3)
            except Exception as error:  # a module that does not trace raises many kinds of errors
                if self.split_mode == "fx":
                    raise ValueError(f"{self.name} cannot be split at {name!r} with torch.fx ({error}); use "
                                     "split='auto' or 'hook'") from None
        cache[key] = choice
        return choice

    def _split_agrees(self, split: FxSplit, name: str, image: torch.Tensor) -> bool:
        """The graphs give the module's own output: features, then head on two copies of A.

        Two copies, so that a frontier value that fixed the batch size (a size read off the
        image's tensor) shows as a wrong shape or an error (then the hook serves this layer).
        """
        with torch.no_grad():
            expected = self.module(self.normalized(image))
            raw, *frontier = split.features(self.normalized(image))
            got = split.head(torch.cat([raw, raw]), *batched(frontier, 2))
        if not isinstance(expected, torch.Tensor) or not isinstance(got, torch.Tensor):
            return isinstance(got, type(expected))
        scale = max(1.0, float(expected.abs().max()))
        return got.shape == (2, *expected.shape[1:]) and bool((got - expected).abs().max() <= 1e-4 * scale)

    def split(self, name=None, image_size=(224, 224)) -> tuple[nn.Module, nn.Module]:
        """``(features, head)``: images -> A and A -> output, where the cut at ``name`` is clean.

        Clean: the module traces, the rest of the network reads only the layer's output, and
        the layout needs no class token. Otherwise (a residual stream around the layer, class
        tokens, a module fx cannot trace) there is no head of A alone: the per-image heads of
        :meth:`image_heads` serve Ablation-CAM and Recipro-CAM, and this raises a ValueError.
        """
        name = self.layer_name(name if name is not None else self.default_layer or "")
        device = self.device
        image = torch.rand(1, 3, *image_size, generator=torch.Generator().manual_seed(0)).to(device)
        split = self._split_at(name, image)
        layout = self._head_layout(split, name, image) if isinstance(split, FxSplit) else None  # kept per size
        if not isinstance(split, FxSplit) or split.frontier or layout is None or layout.from_maps is None \
                or layout.needs_output:
            why = ("the module does not trace with torch.fx" if not isinstance(split, FxSplit) else
                   "the rest of the network also reads tensors computed before the layer" if split.frontier else
                   "its output holds class tokens the maps do not")
            raise ValueError(f"{self.name} has no head of the maps alone after {name!r} ({why}); "
                             "camsurvey's methods use per-image heads there (WrappedModel.image_heads)")
        return Features(self, split, layout), Head(self, split, layout)

    def image_heads(self, name, images: torch.Tensor) -> list[Callable]:
        """For each image b, ``head_b(maps)``: the module's output with the layer's output replaced by
        (N, C, h, w) ``maps`` (all for image b), everything else as for image b."""
        name = self.layer_name(name if name is not None else self.default_layer or "")
        split = self._split_at(name, images[:1])
        if isinstance(split, FxSplit) and not split.frontier:
            layout = self._head_layout(split, name, images[:1])
            if layout.from_maps is not None and not layout.needs_output:
                return [self._clean_head(split, layout)] * len(images)
        heads: list[Callable] = []
        for b in range(len(images)):
            image = images[b : b + 1]
            heads.append(self._fx_head(split, image) if isinstance(split, FxSplit) else self._hook_head(name, image))
        return heads

    def _head_layout(self, split: FxSplit, name: str, image: torch.Tensor) -> Layout:
        """The layer's layout at this image size: one features pass, then kept (it depends on shapes only)."""
        known = LAYOUTS_SEEN.setdefault(self.module, {})
        key = (name, tuple(image.shape[-2:]), repr(self.reshape))
        if key not in known:
            with torch.no_grad(), untouched(self.module, buffers=False):
                known[key] = self.layout(split.features(self.normalized(image))[0], image.shape[-2:])
        return known[key]

    def _clean_head(self, split: FxSplit, layout: Layout) -> Callable:
        def head(maps: torch.Tensor):
            assert layout.from_maps is not None
            with untouched(self.module, buffers=False):
                return split.head(layout.from_maps(maps, None))

        return head

    def _fx_head(self, split: FxSplit, image: torch.Tensor) -> Callable:
        with torch.no_grad(), untouched(self.module, buffers=False):
            raw, *frontier = split.features(self.normalized(image))
        layout = self.layout(raw, image.shape[-2:])
        if layout.from_maps is None:
            raise ValueError(reshape_has_no_inverse(self.name))

        def head(maps: torch.Tensor):
            count = len(maps)
            assert layout.from_maps is not None
            with untouched(self.module, buffers=False):
                return split.head(layout.from_maps(maps, raw), *batched(frontier, count))

        return head

    def _hook_head(self, name: str, image: torch.Tensor) -> Callable:
        layer = self.layer(name)

        def head(maps: torch.Tensor):
            def substitute(_module, _inputs, output):
                layout = self.layout(output, image.shape[-2:])
                if layout.from_maps is None:
                    raise ValueError(reshape_has_no_inverse(self.name))
                return layout.from_maps(maps.to(output.dtype), output)

            handle = layer.register_forward_hook(substitute)
            try:
                return self(image.expand(len(maps), -1, -1, -1))
            finally:
                handle.remove()

        return head

    def extra_repr(self) -> str:
        return f"name={self.name!r}, default_layer={self.default_layer!r}, split={self.split_mode!r}"


def batched(frontier: list, count: int) -> list:
    """One image's frontier values for a batch of ``count`` maps: tensors repeated along the batch
    axis (a view), anything else (``None``, flags) as it is."""
    return [value.expand(count, *value.shape[1:]) if isinstance(value, torch.Tensor) else value for value in frontier]


def reshape_has_no_inverse(name: str) -> str:
    return (f"the reshape function given for {name} turns the layer's output into maps but not back, and this "
            "method re-runs the network after the layer on perturbed maps; give reshape as 'tokens', 'BHWC' or "
            "'BCHW' (or None to detect it)")


def plain_torchvision(architecture: str, seed: int = 0) -> nn.Module:
    """torchvision's ``architecture`` as the plain module torchvision builds, random weights seeded
    with ``seed`` as :func:`camsurvey.load_model` seeds them (so ``plain_torchvision("resnet50")``
    has the weights of ``load_model("resnet50", weights=None)``), in evaluation mode; nothing
    downloads. The global random state is left as it was."""
    import torchvision

    if architecture not in torchvision.models.list_models(module=torchvision.models):
        raise ValueError(f"unknown torchvision classifier {architecture!r}; choose one of "
                         f"{torchvision.models.list_models(module=torchvision.models)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torchvision.models.get_model(architecture, weights=None).eval()


def wrap(module: nn.Module, *, layer: SingleLayer = None, normalize: Normalization = "imagenet",
         reshape: Reshape = None, split: str = "auto", name: str | None = None,
         categories: Sequence[str] | None = None) -> WrappedModel:
    """``module`` as a camsurvey model (:class:`WrappedModel`); the module itself is not changed."""
    if isinstance(module, WrappedModel):
        return module
    return WrappedModel(module, layer=layer, normalize=normalize, reshape=reshape, split=split, name=name,
                        categories=categories)


def wrapped(module: nn.Module, normalize="imagenet", reshape=None) -> WrappedModel:
    """The wrapper ``explain`` uses for a plain ``module``. A new one each call: what is worth keeping
    (fx splits, the default layer, checked layers) is kept per module, weakly (it goes with the module)."""
    return wrap(module, normalize=normalize, reshape=reshape)


__all__ = ["WrappedModel", "channels_first", "plain_torchvision", "probe", "untouched", "wrap"]
