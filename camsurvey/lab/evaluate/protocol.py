"""Evaluation protocols as named presets: how the images are prepared, which class is explained,
where the masking happens, which maps the metrics see, and how ADCC is averaged.

Two presets (:data:`PRESETS`); :func:`protocol` takes one and overrides any field:

``recipro-cam-paper``
    The protocol behind the survey's Table I (the ResNet-101 block of Recipro-CAM's Table 1),
    as the authors' evaluation code runs it (sybyun/ReciproCAM: ``accuracy_check.ipynb`` and
    ``src/recipro_cam_metric.py``, function ``ADCC``):

    * ``Resize([256, 256])`` (bilinear, torchvision on PIL images) then ``CenterCrop(224)``,
      then ``ToTensor`` and ImageNet's normalisation (``accuracy_check.ipynb``);
    * the ground-truth class is the target (``class_id = labels[i]``);
    * the map is the method's own h x w map normalised to [0, 1]; Complexity is its mean and
      Coherency correlates the two h x w maps (``complexity += cam.sum()/(h*w)``; the Pearson
      of ``pre_cam`` and the explanation's ``cam``);
    * the explanation image is made in the model's input space: the *normalised* image times
      the map upsampled with PIL's bicubic filter (``torch.mul(images[i], cam)``, the loader's
      images being normalised), so a masked pixel becomes the dataset's mean colour, not black;
    * ADCC is the harmonic mean of the three *averaged* parts ("of means":
      ``adcc = 3/(1/coherency + 1/(1-complexity) + 1/(1-avg_drop))`` after the loop);
    * the layer: the authors' hook sits on the ReLU of the last bottleneck of ``layer4``
      (their ``_find_target_layer`` keeps the last Conv2d and the BatchNorm/ReLU beside it);
      that ReLU runs last after the residual sum, so the map is of ``layer4``'s output: the
      default CAM layer of our ResNets (``layer=None``);
    * Recipro-CAM itself as that code runs it: ``_cam_hook`` calls ``_mosaic_feature(...,
      False)``, the single-position masks, our ``kernel="point"`` (:data:`PAPER_METHOD_PARAMS`).

    Where we differ, and why: a constant map (whose Pearson is undefined) scores Coherency 0,
    as in :func:`camsurvey.metrics.coherency`, where their code would make the sum NaN; the
    re-explained image is clipped to [0, 1] (``explain`` takes pixels in [0, 1]) where PIL's
    bicubic overshoot leaves it, while Average Drop sees the unclipped image as in their code.

``camsurvey``
    The book's own protocol, the one every other chapter uses: each image resized (bicubic) to
    224 x 224 without a crop (:func:`camsurvey.load_image`), the ground-truth class as target,
    maps at the input's resolution (``norm(up(.))``), masking to black in [0, 1] pixel space
    (``x * map``), ADCC per image and then averaged (Poppi et al.'s order), and every metric of
    Section V.B (pointing game and IoU where the data has boxes).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from ...common import check_int
from ...methods import get_method
from ...metrics import ADCC_PARTS, FAITHFULNESS, IOU_THRESHOLD, LOCALIZATION

TARGETS = ("label", "top1")  # the ground-truth class, or the model's top-1 class
MASKING = ("pixels", "model-input")  # x * map in [0, 1]; or normalise(x) * map, in the model's input space
MAP_RESOLUTIONS = ("input", "layer")  # the map the metrics see: norm(up(L)) or norm(L)
UPSAMPLING = ("bilinear", "bicubic-pil")  # camsurvey's up(.), or PIL's bicubic on float images
ADCC_AVERAGING = ("per-image", "of-means")
INTERPOLATIONS = ("bilinear", "bicubic")
METRICS = (*LOCALIZATION, *FAITHFULNESS, *ADCC_PARTS)
TABLE_METHODS = ("cam", "gradcam", "gradcam++", "scorecam", "reciprocam")  # the rows of the survey's Table I

# method -> parameters, as the Recipro-CAM authors' evaluation code runs the method
PAPER_METHOD_PARAMS = {"reciprocam": {"kernel": "point"}}


@dataclass(frozen=True)
class Protocol:
    """Every choice an evaluation makes (see the module docstring for the presets).

    ``resize``: (height, width) the image is resized to; ``interpolation``: its filter;
    ``crop``: the side of the centre crop after it, or ``None``; ``target``: one of
    :data:`TARGETS`; ``masking``: one of :data:`MASKING`; ``map_resolution``: the map that
    Complexity and Coherency see (:data:`MAP_RESOLUTIONS`); ``upsampling``: how that map is
    brought to the input's size for the explanation image; ``adcc``: the headline averaging
    (both are always computed); ``metrics``: which metrics (:data:`METRICS`); ``steps``: of the
    insertion and deletion curves; ``methods``: the methods evaluated; ``method_params``:
    ``{method: {parameter: value}}``; ``layer``: ``None`` for the model's default CAM layer.
    """

    name: str
    resize: tuple[int, int]
    interpolation: str
    crop: int | None
    target: str
    masking: str
    map_resolution: str
    upsampling: str
    adcc: str
    metrics: tuple[str, ...]
    steps: int = 16
    threshold: float = IOU_THRESHOLD
    methods: tuple[str, ...] = TABLE_METHODS
    method_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    layer: str | None = None

    @property
    def input_size(self) -> tuple[int, int]:
        """(H, W) of the images the model sees."""
        return (self.crop, self.crop) if self.crop is not None else self.resize

    def params_of(self, method: str) -> dict:
        return dict(self.method_params.get(method, {}))

    def as_dict(self) -> dict:
        """JSON-ready: what the manifest and the result files record."""
        record = asdict(self)
        record["resize"] = list(self.resize)
        record["metrics"], record["methods"] = list(self.metrics), list(self.methods)
        return record

    def transform(self):
        """The :mod:`torchvision.transforms.v2` pipeline: resize, then the centre crop if any
        (boxes move with the pixels)."""
        from torchvision.transforms import v2

        interpolation = {"bilinear": v2.InterpolationMode.BILINEAR, "bicubic": v2.InterpolationMode.BICUBIC}
        steps = [v2.Resize(list(self.resize), interpolation=interpolation[self.interpolation], antialias=True)]
        if self.crop is not None:
            steps.append(v2.CenterCrop(self.crop))
        return v2.Compose(steps)


PRESETS = {
    "recipro-cam-paper": Protocol(
        name="recipro-cam-paper", resize=(256, 256), interpolation="bilinear", crop=224, target="label",
        masking="model-input", map_resolution="layer", upsampling="bicubic-pil", adcc="of-means",
        metrics=("average_drop", "increase_in_confidence", "coherency", "complexity", "adcc"),
        method_params=PAPER_METHOD_PARAMS),
    "camsurvey": Protocol(
        name="camsurvey", resize=(224, 224), interpolation="bicubic", crop=None, target="label",
        masking="pixels", map_resolution="input", upsampling="bilinear", adcc="per-image", metrics=METRICS),
}

CHOICES = {"target": TARGETS, "masking": MASKING, "map_resolution": MAP_RESOLUTIONS, "upsampling": UPSAMPLING,
           "adcc": ADCC_AVERAGING, "interpolation": INTERPOLATIONS}


def check_protocol(chosen: Protocol) -> Protocol:
    """``chosen`` if every field is valid, else a ValueError naming the field and its choices."""
    for name, choices in CHOICES.items():
        if getattr(chosen, name) not in choices:
            raise ValueError(f"{name} must be one of {list(choices)}, got {getattr(chosen, name)!r}")
    if len(chosen.resize) != 2:
        raise ValueError(f"resize is (height, width), got {chosen.resize!r}")
    for side in chosen.resize:
        check_int(side, "resize", minimum=32, hint="the side in pixels the image is resized to")
    if chosen.crop is not None:
        check_int(chosen.crop, "crop", minimum=32, maximum=min(chosen.resize),
                  hint="the centre crop's side, at most the resized image's")
    check_int(chosen.steps, "steps", hint="the insertion and deletion curves' number of steps")
    if not 0 < chosen.threshold <= 1:
        raise ValueError(f"threshold is a fraction of the map's maximum in (0, 1], got {chosen.threshold!r}")
    unknown = [m for m in chosen.metrics if m not in METRICS]
    if unknown or not chosen.metrics:
        raise ValueError(f"metrics must be names from {list(METRICS)}, got {list(chosen.metrics)}")
    if not chosen.methods:
        raise ValueError("give at least one method")
    for method in chosen.methods:
        get_method(method).with_defaults(chosen.params_of(method))  # unknown methods and parameters raise
    return chosen


def parse_value(name: str, text: str):
    """A command-line override ``NAME=TEXT`` as the field's type."""
    if name == "resize":
        sides = [int(side) for side in text.replace("x", ",").split(",")]
        return (sides[0], sides[0]) if len(sides) == 1 else tuple(sides)
    if name in ("crop", "layer"):
        return None if text.lower() == "none" else (int(text) if name == "crop" else text)
    if name == "steps":
        return int(text)
    if name == "threshold":
        return float(text)
    if name in ("metrics", "methods"):
        return tuple(part for part in text.split(",") if part)
    return text


def protocol(preset: str = "camsurvey", **overrides) -> Protocol:
    """The preset ``preset`` (a name of :data:`PRESETS`) with ``overrides`` (any field but ``name``)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {list(PRESETS)}")
    names = {f.name for f in fields(Protocol)} - {"name"}
    unknown = set(overrides) - names
    if unknown:
        raise ValueError(f"a protocol has no field {sorted(unknown)}; its fields are {sorted(names)}")
    values: dict[str, Any] = {key: tuple(value) if key in ("resize", "metrics", "methods") and value is not None else value
              for key, value in overrides.items()}
    return check_protocol(replace(PRESETS[preset], **values))
