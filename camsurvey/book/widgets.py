"""``camsurvey.book.widgets.explorer()``: every method of the registry on a photo, interactively.

    from camsurvey import widgets
    view = widgets.explorer()          # displays itself in a notebook
    view.method.value = "scorecam"     # the widgets can also be driven from code (and tests)
    view.last_map                      # the (H, W) saliency map on display
    view.figure                        # the matplotlib figure behind the overlay

Choose a bundled photo or upload one, a method of :data:`camsurvey.METHODS` (the list is
read from the registry, so new methods appear by themselves), a layer, the target class
among the top-5 and the method's parameters; the parameter widgets are built from each
method's keyword defaults (int, float, bool, str, a ``base`` method, or a Python literal).
The cost of the method in passes (``Method.cost``) is shown before anything runs, and a
method that costs more than ``auto_limit`` full passes waits for the *Compute* button, so
cheap changes stay instant while an expensive one shows its progress. Everything that does
not change is cached: the model, the image tensors, their predictions, the layers' shapes
and every computed map, keyed by (image, method, layer, target, parameters).
"""

from __future__ import annotations

import ast
import hashlib
import io

import ipywidgets as w
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import torch
from PIL import Image

from .. import viz
from ..images import bundled_photos, load_image
from ..methods import METHODS, explain
from ..models import load_model
from ..predict import top_k

UPLOADED = "(uploaded)"


def image_from_bytes(data: bytes, size: int = 224) -> torch.Tensor:
    """An uploaded file's bytes as a (1, 3, size, size) tensor in [0, 1] (resized like :func:`load_image`)."""
    try:
        with Image.open(io.BytesIO(bytes(data))) as image:
            pixels = image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
    except Exception as error:
        raise ValueError(f"the uploaded file is not an image PIL can read ({error}); upload a PNG or JPEG") from None
    return torch.from_numpy(np.asarray(pixels).copy()).permute(2, 0, 1).float().div(255).unsqueeze(0)


def parameter_widget(name: str, default, method: str):
    """A widget for one method parameter, chosen from its default's type."""
    style, layout = {"description_width": "initial"}, w.Layout(width="220px")
    if name == "base" and isinstance(default, str):
        choices = sorted(n for n, m in METHODS.items() if m.family != "helper" and n != method)
        if default not in choices:
            choices.insert(0, default)
        return w.Dropdown(options=choices, value=default, description=name, style=style, layout=layout)
    if isinstance(default, bool):
        return w.Checkbox(value=default, description=name, indent=False)
    if isinstance(default, int):
        return w.IntText(value=default, description=name, style=style, layout=layout)
    if isinstance(default, float):
        return w.FloatText(value=default, description=name, style=style, layout=layout)
    if isinstance(default, str):
        return w.Text(value=default, description=name, style=style, layout=layout, continuous_update=False)
    literal = w.Text(value="" if default is None else repr(default), description=name, style=style,
                     layout=w.Layout(width="440px"), continuous_update=False,
                     placeholder="a Python literal (empty: None)")
    literal.literal = True
    return literal


def parameter_value(widget):
    """The value a parameter widget stands for (a literal text is parsed; empty means None)."""
    if getattr(widget, "literal", False):
        text = widget.value.strip()
        if not text:
            return None
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise ValueError(f"parameter {widget.description!r}: {text!r} is not a Python literal") from None
    return widget.value


def describe_cost(method: str, channels: int, positions: int, params: dict) -> tuple[str, dict | None]:
    """``Method.passes`` and, where it can be counted, the passes for this layer and these parameters."""
    entry = METHODS[method]
    counts: dict | None
    try:
        counts = entry.count_passes(channels, positions, **params)
        counted = ", ".join(f"{count} {kind}" for kind, count in counts.items() if count)
    except Exception:  # a cost formula that cannot count these parameters: show the formula only
        counts = None
        counted = "not counted for these parameters"
    return f"{entry.passes} &rarr; here: {counted or 'no passes'} (K = {channels} channels, h&middot;w = {positions})", counts


class Explorer:
    """The widgets, their caches and the last result; :func:`explorer` builds one."""

    def __init__(self, model="efficientnet_lite0", photo=None, method="gradcam", *, size=None, auto_limit=64, top=5):
        self.model = load_model(model) if isinstance(model, str) else model
        # images are made at the model's training resolution unless a size is given
        self.size = getattr(self.model, "resolution", 224) if size is None else size
        self.auto_limit, self.top = auto_limit, top
        self.images, self.predictions, self.shapes, self.maps = {}, {}, {}, {}
        self.figure, self.last_map, self.last_key, self.computations = None, None, None, 0
        photos = bundled_photos()
        photo = photo or photos[0]
        spatial = [name for name in self.model.layer_names if len(self._shape(photo, name)) == 4]
        self.photo = w.Dropdown(options=photos + [UPLOADED], value=photo, description="photo")
        self.upload = w.FileUpload(accept="image/*", multiple=False, description="upload")
        self.method = w.Dropdown(options=list(METHODS), value=method, description="method")
        self.layer = w.Dropdown(options=spatial, value=self.model.default_layer, description="layer")
        self.target = w.Dropdown(description="class")
        self.alpha = w.FloatSlider(value=0.5, min=0, max=1, step=0.05, description="overlay")
        self.compute = w.Button(description="Compute", icon="play")
        self.progress = w.IntProgress(value=0, min=0, max=1, description="passes", layout=w.Layout(visibility="hidden"))
        self.cost = w.HTML()
        self.classes = w.HTML()
        self.overlay = w.Image(format="png", layout=w.Layout(width="360px"))
        self.output = w.Output()
        self.params_box = w.VBox()
        self.params = {}
        self._busy = False
        self._build_params()
        self._refresh_targets()
        for control in (self.photo, self.method, self.layer, self.target):
            control.observe(self._changed, names="value")
        self.alpha.observe(lambda _: self._draw(), names="value")
        self.upload.observe(self._uploaded, names="value")
        self.compute.on_click(lambda _: self.update(force=True))
        controls = w.VBox([self.photo, self.upload, self.method, self.layer, self.target, self.params_box,
                           self.alpha, w.HBox([self.compute, self.progress]), self.cost, self.classes])
        self.widget = w.VBox([w.HBox([controls, self.overlay]), self.output])
        self.update()

    # -- cached inputs ------------------------------------------------------------------
    def _image(self, key) -> torch.Tensor:
        if key not in self.images:
            self.images[key] = load_image(key, self.size)
        return self.images[key]

    def _top(self, key):
        if key not in self.predictions:
            self.predictions[key] = top_k(self.model, self._image(key), self.top)[0]
        return self.predictions[key]

    def _shape(self, key, layer) -> tuple:
        """The shape of every stage's output, from one forward pass (they do not depend on the photo)."""
        if not self.shapes:
            handles = [module.register_forward_hook(lambda _m, _i, out, n=name: self.shapes.__setitem__(n, tuple(out.shape)))
                       for name, module in self.model.named_children()]
            try:
                with torch.no_grad():
                    self.model(self._image(key).to(self.model.device))
            finally:
                for handle in handles:
                    handle.remove()
        return self.shapes[layer]

    @property
    def image_key(self):
        return self._uploaded_key if self.photo.value == UPLOADED else self.photo.value

    _uploaded_key = None

    # -- widgets that depend on others ------------------------------------------------------
    def _build_params(self):
        entry = METHODS[self.method.value]
        self.params = {name: parameter_widget(name, default, entry.name) for name, default in entry.params.items()}
        for widget in self.params.values():
            widget.observe(self._changed, names="value")
        self.params_box.children = list(self.params.values())

    def _refresh_targets(self):
        if self.image_key is None:
            return
        self.target.options = [(f"{name} ({probability:.2f})", index) for index, name, probability in self._top(self.image_key)]
        self.target.value = self.target.options[0][1]
        self.classes.value = "<b>predicted</b>: " + "; ".join(
            f"{name} {probability:.2f}" for _, name, probability in self._top(self.image_key))

    def _uploaded(self, change):
        files = change["new"]
        if not files:
            return
        data = bytes(files[0]["content"])
        key = "upload:" + hashlib.sha256(data).hexdigest()[:16]
        try:
            self.images[key] = image_from_bytes(data, self.size)
        except ValueError as error:
            self._message(str(error))
            return
        self._uploaded_key = key
        self._busy = True
        self.photo.value = UPLOADED
        self._busy = False
        self._changed({"owner": self.photo})

    def _changed(self, change):
        if self._busy:
            return
        self._busy = True
        try:
            if change["owner"] is self.method:
                self._build_params()
            if change["owner"] is self.photo:
                self._refresh_targets()
        finally:
            self._busy = False
        self.update()

    def _message(self, text):
        self.output.clear_output()
        with self.output:
            print(text)
        self.message = text

    # -- computing and drawing -----------------------------------------------------------------
    def current_params(self) -> dict:
        return {name: parameter_value(widget) for name, widget in self.params.items()}

    def key(self, params: dict) -> tuple:
        return (self.image_key, self.method.value, self.layer.value, self.target.value, repr(sorted(params.items())))

    def update(self, force: bool = False):
        """Show the map for the current choices: from the cache, computed now, or after *Compute*."""
        self.message = ""
        if self.image_key is None:
            return self._message("upload an image first")
        try:
            params = self.current_params()
        except ValueError as error:
            return self._message(str(error))
        shape = self._shape(self.image_key, self.layer.value)
        text, counts = describe_cost(self.method.value, shape[1], shape[2] * shape[3], params)
        self.cost.value = f"<b>cost</b>: {text}"
        full = None if counts is None else counts.get("forward", 0) + counts.get("backward", 0)
        key = self.key(params)
        if key not in self.maps:
            if not force and (full is None or full > self.auto_limit):
                self._message(f"{self.method.value} costs more than {self.auto_limit} passes here: press Compute")
                return None
            try:
                self.maps[key] = self._explain(params, full)
            except (ValueError, TypeError, RuntimeError) as error:
                return self._message(f"{self.method.value} cannot run with these choices: {error}")
        self.output.clear_output()
        self.last_key, self.last_map = key, self.maps[key]
        self._draw()
        return self.last_map

    def _explain(self, params, full):
        """One explanation, counting the forward passes on the progress bar as they happen."""
        self.progress.max, self.progress.value = max(int(full or 1), 1), 0
        self.progress.layout.visibility = "visible"
        first_stage = next(iter(self.model.children()))

        def count(_module, inputs):
            self.progress.value = min(self.progress.value + int(inputs[0].shape[0]), self.progress.max)

        handle = first_stage.register_forward_pre_hook(count)
        try:
            saliency = explain(self.method.value, self.model, self._image(self.image_key), target=self.target.value,
                               layer=self.layer.value, **params)
        finally:
            handle.remove()
            self.progress.layout.visibility = "hidden"
        self.computations += 1
        return saliency[0].cpu()

    def _draw(self):
        if self.last_map is None:
            return
        with matplotlib.rc_context({"figure.max_open_warning": 0}):
            figure, ax = plt.subplots(figsize=(3.6, 3.6))
            name = dict((index, label) for label, index in self.target.options).get(self.target.value, "")
            viz.overlay(ax, self._image(self.image_key), self.last_map, alpha=self.alpha.value,
                        title=f"{self.method.value} at {self.layer.value}\n{name}")
            figure.tight_layout()
            buffer = io.BytesIO()
            figure.savefig(buffer, format="png", dpi=80)
            plt.close(figure)
        self.figure = figure
        self.overlay.value = buffer.getvalue()

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)


def explorer(model="efficientnet_lite0", photo=None, method="gradcam", **options) -> Explorer:
    """Build the explorer (see the module's docstring); in a notebook, leave it as a cell's last line to show it."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {sorted(METHODS)}")
    if photo is not None and photo not in bundled_photos():
        raise ValueError(f"unknown photo {photo!r}; choose one of {bundled_photos()} (or upload one in the widget)")
    return Explorer(model, photo, method, **options)


def static_figure(view: Explorer):
    """The explorer's current overlay as a matplotlib figure, for a book read without a kernel."""
    if view.figure is None:
        raise ValueError("the explorer has not drawn a map yet; call view.update(force=True)")
    return view.figure
