"""Autograding for the book's assignments: a student's function against the reference.

    from camsurvey import grading
    report = grading.check("gradcam_weights", my_gradcam_weights)   # prints the feedback

Each exercise of :data:`EXERCISES` draws randomised cases from a seed (the same seed gives
the same cases everywhere), runs the student's function and the reference implementation of
the package on each, and compares. When a case fails, the feedback says which case, what
was expected and what came back, and a hint. The hint is specific when the answer matches a
known mistake: the grader also computes the typical wrong solutions (a missing ReLU, an
average over the wrong axis, an off-by-one in the insertion curve, ...) and recognises them.

The references are the package's own functions (``camsurvey.methods.*`` and
``camsurvey.metrics.insertion_auc``, Petsiuk et al.'s insertion metric), so the book, the
tests and the grader can never disagree. A student's function that calls them (however it
reaches them) passes, but is told so, and the instructor's grader flags it.

:func:`check` is the student's feedback, in their own notebook. Grades come from
``camsurvey grade`` (:mod:`camsurvey.book.sandbox`), which runs each submission in its own
process and judges the functions' outputs in another; nothing :func:`check` prints or returns
counts towards a grade.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import files, metrics, plumbing
from ..common import check_int
from ..methods import activation, gradient, perturbation
from ..plumbing import normalize, upsample

# ---------------------------------------------------------------- reports

@dataclass
class Report:
    """The outcome of :func:`check`: how many cases passed, and the feedback on the first failure."""

    exercise: str
    total: int
    passed_cases: int
    feedback: list[str] = field(default_factory=list)
    reference_calls: list[str] = field(default_factory=list)  # the package's own answer, called by the student

    @property
    def passed(self) -> bool:
        return self.passed_cases == self.total

    def __str__(self) -> str:
        if self.passed:
            lines = [f"{self.exercise}: passed all {self.total} randomised cases."]
        else:
            lines = [f"{self.exercise}: {self.passed_cases} of {self.total} randomised cases passed.", *self.feedback]
        if self.reference_calls:
            lines.append(f"  note: your function calls the package's own implementation ({', '.join(self.reference_calls)}); "
                         "write the computation yourself: the instructor's grader flags this.")
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {"exercise": self.exercise, "passed": self.passed, "passed_cases": self.passed_cases,
                "total": self.total, "feedback": self.feedback, "reference_calls": self.reference_calls}


@dataclass(frozen=True)
class Mistake:
    """A typical wrong solution: how it computes, and what to tell a student whose answer matches it."""

    name: str
    compute: Callable
    hint: str


@dataclass(frozen=True)
class Exercise:
    """One gradable function: random cases, the reference, and the mistakes the grader recognises."""

    name: str
    signature: str
    make_case: Callable[[torch.Generator, int], dict]
    reference: Callable
    mistakes: tuple[Mistake, ...]
    hint: str
    rtol: float = 1e-4
    atol: float = 1e-5
    cases: int = 8  # how many randomised cases check() draws by default
    references: tuple[Callable, ...] = ()  # the package's functions that compute the answer: calling them is flagged

    @property
    def function_name(self) -> str:
        """The name of the student's function in the assignment notebooks (``my_cam_map``)."""
        return f"my_{self.name}"


# ---------------------------------------------------------------- random inputs

def _randn(generator, *shape) -> torch.Tensor:
    return torch.randn(*shape, generator=generator)


def _randint(generator, low: int, high: int) -> int:
    """An integer in [low, high] inclusive."""
    return int(torch.randint(low, high + 1, (1,), generator=generator))


def _spatial_size(generator) -> tuple[int, int]:
    """A feature-map size with h != w, so that averaging over the wrong axis shows."""
    height = _randint(generator, 2, 7)
    return height, height + _randint(generator, 1, 3)


class _Centre(nn.Module):
    """Map [0, 1] pixels to about [-2, 2], as a model's own input normalisation would."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (images - 0.5) * 4


def toy_model(seed: int = 0, classes: int = 5) -> nn.Module:
    """A tiny seeded classifier to grade the functions that call a model.

    Centring, a 5 x 5 convolution, ReLU, pooling to a 4 x 4 grid and one linear layer: it takes
    (B, 3, H, W) images in [0, 1] like every camsurvey model, it cares where things are, and it
    runs hundreds of times per second on a CPU.
    """
    generator = torch.Generator().manual_seed(seed)
    model = nn.Sequential(_Centre(), nn.Conv2d(3, 8, 5, stride=2, padding=2), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
                          nn.Flatten(), nn.Linear(8 * 16, classes))
    with torch.no_grad():
        for parameter in model.parameters():
            fan_in = parameter[0].numel() if parameter.ndim > 1 else 1
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 1.5 / fan_in ** 0.5)
    return model.eval().requires_grad_(False)


def _smooth_images(generator, batch: int, size: int) -> torch.Tensor:
    """Random images in [0, 1] with some spatial structure (a blur changes them)."""
    coarse = torch.rand(batch, 3, 4, 4, generator=generator)
    fine = torch.rand(batch, 3, size, size, generator=generator)
    return (0.4 * upsample(coarse, (size, size)) + 0.6 * fine).clamp(0, 1)


# ---------------------------------------------------------------- exercise: CAM (eq. 1)

def _weights_and_activations_case(weights_name):
    """Cases of (B, K) channel weights named ``weights_name`` and (B, K, h, w) ReLU'd activations."""

    def case(generator, index):
        batch, channels = _randint(generator, 1, 3), _randint(generator, 2, 6)
        height, width = _spatial_size(generator)
        return {weights_name: _randn(generator, batch, channels),
                "activations": torch.relu(_randn(generator, batch, channels, height, width))}

    return case


_cam_case = _weights_and_activations_case("fc_weights")


CAM_MAP = Exercise(
    "cam_map", "cam_map(fc_weights, activations) -> (B, h, w)", _cam_case, activation.cam_map,
    (Mistake("mean over channels", lambda w, a: (w[:, :, None, None] * a).mean(1),
             "eq. (1) sums the weighted channels; you averaged them (divided by K)."),
     Mistake("ReLU", lambda w, a: torch.relu(activation.cam_map(w, a)),
             "CAM's eq. (1) has no ReLU: return the weighted sum itself (Grad-CAM adds the ReLU)."),
     Mistake("sum over pixels", lambda w, a: (w[:, :, None, None] * a).sum((-2, -1)),
             "the map keeps the spatial axes: sum over the channel axis (dim 1) only.")),
    "M_c = sum_n w_n^c A^n: multiply each channel by its weight (weights[:, :, None, None]) and sum over dim 1.",
    references=(activation.cam_map, activation.weighted_sum))


# ---------------------------------------------------------------- exercise: Grad-CAM (eqs. 2, 3)

def _gradients_case(generator, index):
    batch, channels = _randint(generator, 1, 3), _randint(generator, 2, 6)
    height, width = _spatial_size(generator)
    return {"gradients": _randn(generator, batch, channels, height, width)}


GRADCAM_WEIGHTS = Exercise(
    "gradcam_weights", "gradcam_weights(gradients) -> (B, K)", _gradients_case, gradient.gradcam_weights,
    (Mistake("sum", lambda g: g.sum((-2, -1)),
             "eq. (3) averages over the Z = h*w pixels; you summed them: divide by Z (or use .mean)."),
     Mistake("mean over channels", lambda g: g.mean(1),
             "you averaged over the channel axis (dim 1); average over the two spatial axes, dim=(-2, -1)."),
     Mistake("mean over height", lambda g: g.mean(-2),
             "you averaged over one spatial axis only; average over both, dim=(-2, -1)."),
     Mistake("mean over width", lambda g: g.mean(-1),
             "you averaged over one spatial axis only; average over both, dim=(-2, -1)."),
     Mistake("mean over everything", lambda g: g.mean((0, -2, -1)).expand(g.shape[0], -1),
             "you also averaged over the batch (dim 0): each image has its own weights."),
     Mistake("ReLU on gradients", lambda g: torch.relu(g).mean((-2, -1)),
             "Grad-CAM averages the raw gradients, negative ones included; the ReLU comes after the sum (eq. 2).")),
    "a_n is the spatial mean of dy^c/dA^n: one number per image and channel, shape (B, K).",
    references=(gradient.gradcam_weights,))


_gradcam_map_case = _weights_and_activations_case("weights")


GRADCAM_MAP = Exercise(
    "gradcam_map", "gradcam_map(weights, activations) -> (B, h, w)", _gradcam_map_case, gradient.gradcam_map,
    (Mistake("missing ReLU", lambda w, a: activation.weighted_sum(w, a),
             "a missing ReLU: eq. (2) keeps only the positive part, torch.relu(sum_n a_n A^n)."),
     Mistake("ReLU on weights", lambda w, a: activation.weighted_sum(torch.relu(w), a),
             "the ReLU belongs to the weighted sum, not to the weights: relu(sum_n a_n A^n)."),
     Mistake("mean over channels", lambda w, a: torch.relu((w[:, :, None, None] * a).mean(1)),
             "eq. (2) sums over the channels; you averaged (divided by K).")),
    "L^c = ReLU(sum_n a_n A^n): weight each channel, sum over dim 1, then torch.relu.",
    references=(gradient.gradcam_map, activation.weighted_sum))


# ---------------------------------------------------------------- exercise: Score-CAM (eq. 4)

def _masks_case(generator, index):
    channels = _randint(generator, 2, 5)
    height, width = _spatial_size(generator)
    activations = torch.relu(_randn(generator, channels, height, width)) + 0.1 * torch.rand(channels, height, width, generator=generator)
    if index % 3 == 2:  # every third case has a constant channel: its mask is all zeros, never NaN
        activations[_randint(generator, 0, channels - 1)] = 0.0
    size = (_randint(generator, 3, 6) * height, _randint(generator, 3, 6) * width)
    return {"activations": activations, "size": size}


def _global_minmax(maps):
    return (maps - maps.min()) / (maps.max() - maps.min())


def _channel_minmax(maps):
    return (maps - maps.amin(0, keepdim=True)) / (maps.amax(0, keepdim=True) - maps.amin(0, keepdim=True))


SCORECAM_MASKS = Exercise(
    "scorecam_masks", "scorecam_masks(activations, size) -> (K, H, W)", _masks_case,
    lambda a, size: perturbation.scorecam_masks(a, size)[0],
    (Mistake("global normalisation", lambda a, size: _global_minmax(upsample(a.unsqueeze(0), size)[0]),
             "you normalised over all channels at once; normalise each channel over its own pixels: "
             "min and max over the last two axes (keepdim=True), one pair per channel."),
     Mistake("normalised over channels", lambda a, size: _channel_minmax(upsample(a.unsqueeze(0), size)[0]),
             "you normalised over the channel axis (dim 0) at each pixel; normalise each channel over "
             "its pixels, dims (-2, -1)."),
     Mistake("no normalisation", lambda a, size: upsample(a.unsqueeze(0), size)[0],
             "the masks must be normalised to [0, 1] per channel (norm(.)): subtract the minimum, divide by the range."),
     Mistake("nearest", lambda a, size: normalize(F.interpolate(a.unsqueeze(0), size=size, mode="nearest")[0]),
             "upsample with bilinear interpolation (mode='bilinear', align_corners=False), as cs.plumbing.upsample does."),
     Mistake("not upsampled", lambda a, size: normalize(a),
             "the masks multiply the input image, so upsample them to `size` first (cs.plumbing.upsample).")),
    "norm(up(A^n)): upsample the (K, h, w) maps to `size` (bilinear), then min-max scale each channel over its "
    "pixels; a constant channel becomes all zeros.",
    references=(perturbation.scorecam_masks, normalize, plumbing.finish))


def _channel_scores_case(generator, index):
    size = 32 + 8 * _randint(generator, 0, 2)
    channels = _randint(generator, 2, 6)
    image = _smooth_images(generator, 1, size)[0]
    masks = torch.rand(channels, size, size, generator=generator)
    return {"model": toy_model(_randint(generator, 0, 10**6)), "image": image, "masks": masks,
            "class_index": _randint(generator, 0, 4)}


def _reference_channel_scores(model, image, masks, class_index):
    return perturbation.masked_class_scores(model, image, masks, class_index, batch_size=8)


def _softmax_channel_scores(model, image, masks, class_index):
    with torch.no_grad():
        return torch.softmax(model(image.unsqueeze(0) * masks.unsqueeze(1)), dim=1)[:, class_index]


def _unmasked_scores(model, image, masks, class_index):
    with torch.no_grad():
        return model(image.unsqueeze(0))[:, class_index].expand(len(masks))


SCORECAM_CHANNEL_SCORES = Exercise(
    "scorecam_channel_scores", "scorecam_channel_scores(model, image, masks, class_index) -> (K,)",
    _channel_scores_case, _reference_channel_scores,
    (Mistake("softmax", _softmax_channel_scores,
             "use the class score before the softmax, F^c = model(x)[:, c], as eq. (4) and its reference do."),
     Mistake("unmasked", _unmasked_scores,
             "every channel must score its own masked input X * mask_n; you scored the unmasked image.")),
    "mask the image with each channel, image.unsqueeze(0) * masks.unsqueeze(1) (K, 3, H, W), run the model "
    "under torch.no_grad() and keep column class_index of its output.", cases=5,
    references=(perturbation.masked_class_scores,))


def _weights_case(generator, index):
    batch, channels = _randint(generator, 2, 4), _randint(generator, 3, 7)
    if channels == batch:
        channels += 1
    return {"masked_scores": 3 * _randn(generator, batch, channels), "scores": 3 * _randn(generator, batch)}


def _reference_scorecam_weights(masked_scores, scores):
    valid = torch.ones(masked_scores.shape[-1], dtype=torch.bool)
    return torch.stack([perturbation.scorecam_weights(m, s, valid) for m, s in zip(masked_scores, scores)])


def _sum_normalised(masked_scores, scores):
    increase = masked_scores - scores[:, None]
    return increase / increase.sum(-1, keepdim=True)


SCORECAM_WEIGHTS = Exercise(
    "scorecam_weights", "scorecam_weights(masked_scores, scores) -> (B, K)", _weights_case,
    _reference_scorecam_weights,
    (Mistake("softmax over images", lambda m, s: torch.softmax(m - s[:, None], dim=0),
             "you normalised over the wrong axis: the softmax runs over the channels (dim=-1), so each "
             "image's weights sum to 1; yours sum to 1 over the images (dim 0)."),
     Mistake("no softmax", lambda m, s: m - s[:, None],
             "eq. (4) turns the increases F^c(X'_n) - F^c(X) into weights with a softmax over the channels."),
     Mistake("no softmax, no difference", lambda m, s: m,
             "eq. (4) turns the increases F^c(X'_n) - F^c(X) into weights with a softmax over the channels."),
     Mistake("sum-normalised", _sum_normalised,
             "dividing by the sum is not a softmax: exponentiate first (torch.softmax(..., dim=-1)).")),
    "w_n = softmax over channels of (masked_scores - scores[:, None]); each row sums to 1.",
    references=(perturbation.scorecam_weights,))


# ---------------------------------------------------------------- exercise: insertion AUC (Petsiuk et al.)

def _insertion_case(generator, index):
    batch, size = _randint(generator, 1, 2), 32
    images = _smooth_images(generator, batch, size)
    saliency = torch.rand(batch, size, size, generator=generator)
    steps = (4, 8)[_randint(generator, 0, 1)]
    return {"model": toy_model(_randint(generator, 0, 10**6)), "images": images, "saliency": saliency,
            "target": torch.randint(0, 5, (batch,), generator=generator), "steps": steps}


# The reference is the metrics module's own curve and area; each typical mistake is one small
# function of the same inputs.

def _reference_insertion(model, images, saliency, target, steps):
    return metrics.insertion_auc(model, images, saliency, target, steps=steps).per_image


def _reference_curve(model, images, saliency, target, steps):
    return metrics.insertion_curve(model, images, saliency, target, steps=steps)


def _without_first_point(model, images, saliency, target, steps):
    return metrics.curve_area(_reference_curve(model, images, saliency, target, steps)[:, 1:])


def _without_last_point(model, images, saliency, target, steps):
    return metrics.curve_area(_reference_curve(model, images, saliency, target, steps)[:, :-1])


def _right_riemann_sum(model, images, saliency, target, steps):
    return _reference_curve(model, images, saliency, target, steps)[:, 1:].mean(1)


def _left_riemann_sum(model, images, saliency, target, steps):
    return _reference_curve(model, images, saliency, target, steps)[:, :-1].mean(1)


def _mean_of_points(model, images, saliency, target, steps):
    return _reference_curve(model, images, saliency, target, steps).mean(1)


def _least_salient_first(model, images, saliency, target, steps):
    """The pixels in ascending order of saliency: the map's ranks reversed (ties keep raster order)."""
    ascending = torch.argsort(saliency.flatten(1), dim=1, stable=True)
    rank = torch.empty_like(ascending)
    rank.scatter_(1, ascending, torch.arange(ascending.shape[1]).expand_as(ascending).contiguous())
    reversed_map = (1 - rank.double() / (rank.shape[1] - 1)).view_as(saliency)
    return metrics.insertion_auc(model, images, reversed_map.float(), target, steps=steps).per_image


def _black_start(model, images, saliency, target, steps):
    return metrics.insertion_auc(model, images, saliency, target, steps=steps, baseline=0.0).per_image


def _logit_curve_area(model, images, saliency, target, steps):
    """The area under the class *score* (before the softmax) instead of its probability."""
    curves = []
    with torch.no_grad():
        for i in range(len(images)):
            frames = metrics.causal_frames(metrics.blurred(images[i : i + 1])[0], images[i], saliency[i], steps)
            curves.append(model(frames).double()[:, int(target[i])])
    return metrics.curve_area(torch.stack(curves))


_OFF_BY_ONE = ("an off-by-one in the curve: it has steps + 1 points, after 0, 1, ..., steps chunks of pixels "
               "(the fully blurred image first, the whole image last), spread evenly over [0, 1].")

INSERTION_AUC = Exercise(
    "insertion_auc", "insertion_auc(model, images, saliency, target, steps) -> (B,)", _insertion_case,
    _reference_insertion,
    (Mistake("missing first point", _without_first_point, _OFF_BY_ONE),
     Mistake("missing last point", _without_last_point, _OFF_BY_ONE),
     Mistake("right Riemann sum", _right_riemann_sum,
             "an off-by-one in the area: the mean of the last `steps` points is a right Riemann sum; use the "
             "trapezoid rule over all steps + 1 points (the end points count half)."),
     Mistake("left Riemann sum", _left_riemann_sum,
             "an off-by-one in the area: the mean of the first `steps` points is a left Riemann sum; use the "
             "trapezoid rule over all steps + 1 points (the end points count half)."),
     Mistake("mean of points", _mean_of_points,
             "the mean of the steps + 1 points is not the area: in the trapezoid rule the two end points count half."),
     Mistake("least salient first", _least_salient_first,
             "insert the most salient pixels first (sort the saliency in descending order)."),
     Mistake("black start", _black_start,
             "insertion starts from a blurred copy of the image (cs.metrics.blurred), not from black "
             "(black is where deletion ends)."),
     Mistake("logits", _logit_curve_area,
             "each point of the curve is the class *probability* (softmax of the model's output).")),
    "start from cs.metrics.blurred(images); for k = 0..steps show the round(k * H*W / steps) most salient pixels "
    "of the true image; take the softmax probability of the target; integrate over [0, 1] by the trapezoid rule.",
    rtol=1e-5, atol=1e-6, cases=5,
    references=(metrics.insertion_auc, metrics.insertion_curve, metrics.causal_curve, metrics.causal_frames,
                metrics.curve_area))

EXERCISES: dict[str, Exercise] = {exercise.name: exercise for exercise in (
    CAM_MAP, GRADCAM_WEIGHTS, GRADCAM_MAP, SCORECAM_MASKS, SCORECAM_CHANNEL_SCORES, SCORECAM_WEIGHTS, INSERTION_AUC)}


# ---------------------------------------------------------------- checking

def _describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"tensor{tuple(value.shape)}"
    if isinstance(value, nn.Module):
        return "model"
    return repr(value)


def _preview(tensor: torch.Tensor, count: int = 4) -> str:
    values = tensor.detach().double().flatten()[:count].tolist()
    more = ", ..." if tensor.numel() > count else ""
    return "[" + ", ".join(f"{v:.4g}" for v in values) + more + "]"


def _copy(arguments: dict) -> dict:
    return {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in arguments.items()}


def _matches(got: torch.Tensor, expected: torch.Tensor, exercise: Exercise) -> bool:
    return (got.shape == expected.shape and bool(torch.isfinite(got).all())
            and torch.allclose(got.double(), expected.double(), rtol=exercise.rtol, atol=exercise.atol))


def _recognise(exercise: Exercise, arguments: dict, got: torch.Tensor) -> Mistake | None:
    for mistake in exercise.mistakes:
        try:
            with torch.no_grad():
                wrong = mistake.compute(*_copy(arguments).values())
        except Exception:  # a mistake that cannot even run on this case is not the student's
            continue
        if _matches(got, wrong, exercise):
            return mistake
    return None


def reference_name(function: Callable) -> str:
    return f"{function.__module__}.{function.__qualname__}"


@contextmanager
def watching(functions) -> Iterator[set[str]]:
    """Record which of ``functions`` run inside the block (however they were reached): the names
    of those called, in the yielded set. Uses :func:`sys.setprofile`; the previous profiler is restored."""
    codes = {function.__code__: reference_name(function) for function in functions}
    called: set[str] = set()
    previous = sys.getprofile()

    def profile(frame, event, _arg):
        if event == "call" and frame.f_code in codes:
            called.add(codes[frame.f_code])

    sys.setprofile(profile)
    try:
        yield called
    finally:
        sys.setprofile(previous)


@dataclass
class Answer:
    """What the student's function did on one case: a tensor, or the feedback for what went wrong
    instead; and which of the exercise's reference functions it called."""

    value: torch.Tensor | None
    problem: str | None
    reference_calls: list[str]


def _as_tensor(got) -> torch.Tensor | str:
    """The student's return value as a CPU tensor, or a description of why it is not one."""
    if isinstance(got, torch.Tensor):
        return got.detach().cpu()
    if isinstance(got, (np.ndarray, list, tuple, float, int)) and not isinstance(got, bool):
        try:
            array = np.asarray(got, dtype=np.float64)
        except (ValueError, TypeError):
            return f"a {type(got).__name__} that is not a rectangular array of numbers (a ragged or mixed {type(got).__name__})"
        return torch.from_numpy(array)
    return type(got).__name__


def run_student(exercise: Exercise, arguments: dict, function: Callable) -> Answer:
    """Call the student's ``function`` on one case (a copy of it), whatever it does: returns, raises,
    calls ``sys.exit``. Only a KeyboardInterrupt (the user, or a time limit) goes through."""
    with watching(exercise.references) as called:
        try:
            got = function(*_copy(arguments).values())
        except NotImplementedError:
            return Answer(None, "  your function raised NotImplementedError.\n  hint: replace the "
                          "`raise NotImplementedError` under `# YOUR CODE HERE` with your code.", sorted(called))
        except SystemExit as stop:
            return Answer(None, f"  your function called sys.exit({stop.code!r}); return the result instead.\n"
                          f"  hint: {exercise.hint}", sorted(called))
        except Exception as error:  # the student's code: report any error, with the general hint
            return Answer(None, f"  your function raised {type(error).__name__}: {error}\n  hint: {exercise.hint}",
                          sorted(called))
    value = _as_tensor(got)
    if isinstance(value, str):
        return Answer(None, f"  expected a torch.Tensor, got {value}.\n  hint: {exercise.hint}", sorted(called))
    return Answer(value, None, sorted(called))


def verdict(exercise: Exercise, arguments: dict, answer: Answer) -> str | None:
    """None when ``answer`` is right on this case, else the feedback (without the case header)."""
    with torch.no_grad():
        expected = exercise.reference(*_copy(arguments).values())
    if answer.value is None:
        return answer.problem or f"  your function returned nothing usable.\n  hint: {exercise.hint}"
    got = answer.value
    if _matches(got, expected, exercise):
        return None
    mistake = _recognise(exercise, arguments, got)
    hint = mistake.hint if mistake else exercise.hint
    if got.shape != expected.shape:
        return f"  expected shape {tuple(expected.shape)}, got shape {tuple(got.shape)}.\n  hint: {hint}"
    if not torch.isfinite(got).all():
        return (f"  your result contains NaN or Inf ({int((~torch.isfinite(got)).sum())} entries); expected "
                f"{_preview(expected)}, got {_preview(got)}.\n  hint: "
                + (hint if mistake else "a division by zero? where a map is constant (max == min) return zeros, "
                   "never 0/0. " + exercise.hint))
    difference = (got.double() - expected.double()).abs()
    where = tuple(int(i) for i in np.unravel_index(int(difference.argmax()), tuple(difference.shape)))
    return (f"  expected {_preview(expected)}, got {_preview(got)}; largest difference "
            f"{float(difference.max()):.4g} at index {where}.\n  hint: {hint}")


def check_seed(seed) -> int:
    return check_int(seed, "seed", minimum=0, maximum=2**63 - 1, hint="it seeds the grader's random cases")


def get_exercise(exercise: str) -> Exercise:
    if not isinstance(exercise, str) or exercise not in EXERCISES:
        raise ValueError(f"unknown exercise {exercise!r}; choose one of {sorted(EXERCISES)}")
    return EXERCISES[exercise]


def draw_cases(exercise: Exercise, cases: int, seed: int) -> list[dict]:
    """The randomised cases of ``exercise`` drawn from ``seed``: the same seed gives the same cases everywhere."""
    generator = torch.Generator().manual_seed(seed)
    return [exercise.make_case(generator, index) for index in range(cases)]


def report_from_answers(exercise: Exercise, cases: list[dict], answers: list[Answer], seed: int) -> Report:
    """The :class:`Report` of ``answers`` (one per case of ``cases``), judged against the reference."""
    passed, feedback = 0, list[str]()
    for index, (arguments, answer) in enumerate(zip(cases, answers)):
        problem = verdict(exercise, arguments, answer)
        if problem is None:
            passed += 1
        elif not feedback:
            inputs = ", ".join(f"{k}={_describe(v)}" for k, v in arguments.items())
            feedback = [f"case {index + 1} (seed {seed}) failed: {exercise.signature} with {inputs}", problem]
    calls = sorted({name for answer in answers for name in answer.reference_calls})
    return Report(exercise.name, len(cases), passed, feedback, calls)


def check(exercise: str, function: Callable, *, cases: int | None = None, seed: int = 0, verbose: bool = True) -> Report:
    """Grade ``function`` on ``cases`` randomised cases drawn from ``seed``; print and return a :class:`Report`.

    The feedback names the first failing case, its inputs, what was expected and what came back,
    and a hint (a specific one when the answer matches a typical mistake). A function that calls
    the package's own implementation of the exercise is told so (the instructor's grader flags it).
    """
    entry = get_exercise(exercise)
    if not callable(function):
        raise TypeError(f"pass your function itself (e.g. {entry.function_name}), not {type(function).__name__}")
    cases = check_int(entry.cases if cases is None else cases, "cases", hint="how many random cases to draw")
    seed = check_seed(seed)
    drawn = draw_cases(entry, cases, seed)
    report = report_from_answers(entry, drawn, [run_student(entry, arguments, function) for arguments in drawn], seed)
    if verbose:
        print(report)
    return report


# ---------------------------------------------------------------- the sandboxed grader's two halves

def collect_answers(exercise: str, function, seed: int, path) -> None:
    """In the student's kernel (:mod:`camsurvey.book.sandbox`): run ``function`` on the grader's cases
    of ``exercise`` and save what it returned (tensors, or what went wrong) to ``path``. Nothing is judged here."""
    entry = get_exercise(exercise)
    cases = draw_cases(entry, entry.cases, seed)
    if not callable(function):
        missing = Answer(None, f"  {entry.function_name} is not defined (or not a function) when the notebook "
                         "has run: define it under its exercise.", [])
        answers = [missing] * len(cases)
    else:
        answers = [run_student(entry, arguments, function) for arguments in cases]
    torch.save({"values": [a.value.clone() if a.value is not None else None for a in answers],
                "problems": [a.problem for a in answers], "reference_calls": [a.reference_calls for a in answers]},
               str(path))


def load_answers(path, count: int) -> list[Answer] | str:
    """In the grader (never in the student's kernel): the answers :func:`collect_answers` saved, read as
    plain data (``torch.load(weights_only=True)``, so nothing in the file can run), or why they cannot be used."""
    path = Path(path)
    if not path.is_file():
        return "no answers: the notebook stopped before the grader could call it (see the problems above)"
    try:
        saved = torch.load(path, weights_only=True)
    except Exception as error:  # whatever the file holds
        return f"its answers could not be read ({type(error).__name__})"
    try:
        values, problems, calls = saved["values"], saved["problems"], saved["reference_calls"]
        answers = [Answer(value, problem, [str(name) for name in called])
                   for value, problem, called in zip(values, problems, calls, strict=True)]
        valid = len(answers) == count and all(
            (a.value is None or isinstance(a.value, torch.Tensor)) and (a.problem is None or isinstance(a.problem, str))
            for a in answers)
    except (KeyError, TypeError, ValueError):
        valid = False
    return answers if valid else "its answers are malformed"


# ---------------------------------------------------------------- assignments and variants

def assignment_exercises(path) -> list[str]:
    """The exercises an assignment notebook grades, from its metadata ``camsurvey.exercises``.

    This list, not the ``check`` calls a submission happens to run, is what a grade counts.
    """
    import nbformat

    notebook = nbformat.read(str(path), as_version=4)
    names = notebook.metadata.get("camsurvey", {}).get("exercises")
    if names is None:
        raise ValueError(f"{Path(path).name} lists no exercises (metadata camsurvey.exercises); it is not graded by "
                         "camsurvey.book.grading")
    unknown = sorted(set(names) - set(EXERCISES))
    if unknown:
        raise ValueError(f"{Path(path).name} lists unknown exercises {unknown}; known are {sorted(EXERCISES)}")
    return list(names)


def variant_parameters(notebook_path, seed: int) -> dict:
    """The parameters of one student's variant: a seeded choice from the notebook's ``camsurvey.variants``.

    The notebook's metadata lists, per parameter, the values a variant may take (other photos,
    classes, layers); the grader's ``seed`` parameter, when the notebook has one, becomes ``seed``.
    """
    import nbformat

    from .notebooks import chapter_parameters

    seed = check_seed(seed)
    notebook = nbformat.read(str(notebook_path), as_version=4)
    choices = notebook.metadata.get("camsurvey", {}).get("variants", {})
    defaults = chapter_parameters(notebook_path)
    unknown = set(choices) - set(defaults)
    if unknown:
        raise ValueError(f"{notebook_path}: variant parameters {sorted(unknown)} are not in its parameters cell")
    rng = np.random.default_rng(seed)
    chosen = {name: values[int(rng.integers(len(values)))] for name, values in sorted(choices.items())}
    if "seed" in defaults and "seed" not in choices:
        chosen["seed"] = int(seed)
    return chosen


VARIANTS_MANIFEST = "variants.json"


def make_variants(assignment: str, seeds, output_dir, *, answer_keys: bool = False, force: bool = False) -> list:
    """One student notebook per seed (solutions stripped, parameters injected by papermill, not executed).

    With ``answer_keys``, also execute the full notebook with the same parameters into
    ``output_dir/keys/`` (the instructor's answer key for that variant). Writes
    ``output_dir/variants.json``: seed -> parameters. The rule of :mod:`camsurvey.files`
    applies: not into the project's ``book/`` or ``data/``; handouts that exist (a teacher may
    have edited them) are replaced only with ``force``, and nothing is written until every seed
    is checked.
    """
    import nbformat
    import papermill

    from .notebooks import chapter_path, check_parameters
    from .student import student_notebook

    path = chapter_path(assignment)
    seeds = list(seeds) if isinstance(seeds, (list, tuple)) else seeds
    if not isinstance(seeds, list) or not seeds:
        raise ValueError(f"give at least one seed, one per student (e.g. --seeds 1 2 3), got {seeds!r}")
    for seed in seeds:
        check_seed(seed)
    repeated = sorted({seed for seed in seeds if seeds.count(seed) > 1})
    if repeated:
        raise ValueError(f"seeds {repeated} are given more than once; one seed per student, each different")
    output_dir = files.check_output(output_dir, inputs=[path], what="variants folder")
    handouts = [output_dir / f"{path.stem}-seed{seed}.ipynb" for seed in seeds]
    targets = handouts + [output_dir / VARIANTS_MANIFEST] + ([output_dir / "keys" / h.name for h in handouts]
                                                              if answer_keys else [])
    for target in targets:
        files.check_new_file(target, force=force, inputs=[path], what="variant")
    parameters = {seed: check_parameters(path, variant_parameters(path, seed)) for seed in seeds}
    files.ensure_folder(output_dir, inputs=[path], what="variants folder")
    for seed, student in zip(seeds, handouts):
        with files.staged_file(student, force=force, inputs=[path], what="variant") as partial:
            papermill.execute_notebook(str(path), str(partial), parameters=parameters[seed], prepare_only=True,
                                       kernel_name="python3", progress_bar=False)
            handout = student_notebook(nbformat.read(str(partial), as_version=4))
            handout.metadata.setdefault("camsurvey", {})["assignment"] = path.stem
            nbformat.write(handout, str(partial))
        if answer_keys:
            key = output_dir / "keys" / student.name
            files.ensure_folder(key.parent, inputs=[path])
            with files.staged_file(key, force=force, inputs=[path], what="answer key") as partial:
                papermill.execute_notebook(str(path), str(partial), parameters=parameters[seed],
                                           cwd=str(path.parent), kernel_name="python3", progress_bar=False)
    manifest = {"assignment": path.stem, "exercises": assignment_exercises(path),
                "variants": {str(seed): parameters[seed] for seed in seeds}}
    files.write_file(output_dir / VARIANTS_MANIFEST, json.dumps(manifest, indent=2), force=force, inputs=[path])
    return handouts
