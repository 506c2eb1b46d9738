"""Section VI of the survey, run: the experiments its discussion proposes, one small function per step.

* VI.A, diagnosing errors: :func:`misclassified` finds the errors, :func:`class_maps` explains
  each image for several targets (the predicted and the true class), :func:`energy_table`
  measures how much of each map's energy falls on a region (the energy pointing game, eq. 6,
  with that region as the ground truth).
* VI.A, bias: :func:`cue_pairs` gives the same scenes with and without the spurious corner
  mark, :func:`cue_boxes` the mark's region, :func:`cue_energy` the share of each map on it.
* VI.B, EVET with intensity transformations: :func:`evet_variants` and :func:`evaluate_evet`.
* VI.C, image settings: :func:`uniform_pointing_game` (the chance level), :func:`scenario_table`
  (one metric, methods by scenarios, with each method's worst scenario) and
  :func:`instances_found` (how many objects of the target class a map reaches).
* VI.D, multi-label: :func:`label_targets` (one row per label of a scene) and
  :func:`separation_table` (:func:`label_separation`: own objects against the others').
* Statistics: :func:`paired_test` (bootstrap interval and sign test of per-image differences),
  :func:`paired_table`, :func:`verdict`.
* Choosing: :func:`best_of` (with ties and a paired test against the runner-up) and :func:`describe`.
* The Conclusion: :func:`summary`, :func:`summary_table` and :func:`recommend`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import NamedTuple

import numpy as np
import torch
from scipy import stats

from ..common import check_int
from ..datasets import scenes as scene_data
from ..methods import explain
from ..methods.helpers import GEOMETRIC_TRANSFORMS, INTENSITY_TRANSFORMS
from ..metrics import HIGHER_IS_BETTER, Score, as_score, energy_pointing_game, make_explainer
from ..predict import predict_labels
from .evaluation import evaluate, evaluate_scenes, format_table, passes_per_image

SCENARIOS = ("large", "small", "same", "different")  # the four settings Section VI.C names


def _check_methods(methods) -> list[str]:
    if isinstance(methods, str) or not isinstance(methods, (list, tuple)) or len(methods) == 0:
        raise TypeError(f"methods must be a non-empty list of names from camsurvey.METHODS, got {methods!r}")
    return list(methods)


# ---------------------------------------------------------------- VI.A: diagnosing errors

def misclassified(model, images: torch.Tensor, labels) -> tuple[torch.Tensor, torch.Tensor]:
    """(Section VI.A) The images whose top-1 class is not their label: ``(indices, top-1 classes)``."""
    labels = torch.as_tensor(labels).long().cpu()
    if labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(f"give one label per image: {len(images)} images, labels of shape {tuple(labels.shape)}")
    predicted = predict_labels(model, images)
    wrong = (predicted != labels).nonzero().flatten()
    return wrong, predicted[wrong]


def class_maps(model, images: torch.Tensor, targets: dict, methods) -> dict:
    """(Section VI.A) Each method's maps for each set of targets, e.g. ``{"predicted": ..., "true": ...}``.

    Returns ``{method: {target name: (B, H, W) maps}}``.
    """
    if not isinstance(targets, dict) or not targets:
        raise TypeError("targets must be a non-empty dict {name: one class index per image}")
    return {method: {name: explain(method, model, images, target=target).cpu() for name, target in targets.items()}
            for method in _check_methods(methods)}


def energy_table(maps: dict, region) -> dict:
    """The share of each map's energy on ``region`` (exact masks (B, H, W) or one box per image):
    the energy pointing game (eq. 6) with ``region`` as the ground truth. ``maps`` as
    :func:`class_maps` returns them; the result is ``{method: {target name: Score}}``."""
    return {method: {name: energy_pointing_game(saliency, region) for name, saliency in by_target.items()}
            for method, by_target in maps.items()}


# ---------------------------------------------------------------- VI.A: bias (the spurious cue)

def cue_boxes(count: int, size: int = scene_data.REFERENCE_SIZE, cell: int = 8) -> torch.Tensor:
    """(Section VI.A) The region of the spurious mark, one box per image: the top-left ``cell`` x
    ``cell`` pixels. The mark itself is ``CUE_SIZE`` pixels wide, one pixel from the corner; a
    cell of 8 is one position of the scene models' 8 x 8 CAM layer, as sharp as their maps get."""
    check_int(cell, "cell", minimum=1 + scene_data.CUE_SIZE, maximum=size, hint="the cell must hold the mark")
    check_int(count, "count", hint="the number of images")
    return torch.tensor([[0, 0, cell, cell]]).repeat(count, 1)


def cue_pairs(n: int, seed: int = 0, scenarios=("large", "small"), cue_class: int = 0,
              size: int = scene_data.REFERENCE_SIZE, include_cue_class: bool = False):
    """(Section VI.A) The same scenes twice, ``(marked, unmarked)``: with the spurious mark and without.

    Both come from the dataset's own renderer. With ``cue="class"`` the mark is drawn exactly when
    the target is of the given class and the layout does not depend on which class that is, so
    each image is taken from the call whose ``cue_class`` is its label (marked) or is not
    (unmarked). ``cue_class`` is the class the mark went with in training (``scenes_cnn_cue``:
    0, disc); ``include_cue_class=False`` keeps only the scenes of other classes, those where
    the mark is a false clue.
    """
    classes = len(scene_data.CLASSES)
    if not 0 <= cue_class < classes:
        raise ValueError(f"cue_class must be a class index 0..{classes - 1}, got {cue_class!r}")
    drawn = [scene_data.generate_mixed(scenarios, n, seed, size, cue="class", cue_class=k) for k in range(classes)]
    labels, rows = drawn[0].labels, torch.arange(n)
    images = torch.stack([batch.images for batch in drawn])
    cue = torch.stack([batch.cue for batch in drawn])

    def pick(which):
        return replace(drawn[0], images=images[which, rows], cue=cue[which, rows])

    marked, unmarked = pick(labels), pick((labels + 1) % classes)
    if not include_cue_class:
        keep = (labels != cue_class).nonzero().flatten().tolist()
        if not keep:
            raise ValueError(f"all {n} scenes are of class {cue_class}; generate more scenes (n)")
        marked, unmarked = marked[keep], unmarked[keep]
    return marked, unmarked


def fooled_by_cue(model, marked, unmarked, cue_class: int = 0) -> torch.Tensor:
    """(Section VI.A) The indices of the pairs of :func:`cue_pairs` whose prediction the mark alone
    decides: ``cue_class`` with the mark, another class without it. These are the scenes where a
    map that reveals the bias must sit on the mark."""
    with_mark, without = predict_labels(model, marked.images), predict_labels(model, unmarked.images)
    return ((with_mark == cue_class) & (without != cue_class)).nonzero().flatten()


def cue_energy(runs: dict, methods, cell: int = 8) -> dict:
    """(Section VI.A) The share of each map's energy on the mark's region (:func:`cue_boxes`).

    ``runs``: ``{column name: (model, SceneBatch)}``; every image is explained for the model's
    top-1 class, the class a user would ask about. Returns ``{method: {column name: Score}}``.
    """
    table: dict[str, dict] = {method: {} for method in _check_methods(methods)}
    for name, (model, batch) in runs.items():
        region = cue_boxes(len(batch), batch.images.shape[-1], cell)
        for method in table:
            table[method][name] = energy_pointing_game(explain(method, model, batch.images).cpu(), region)
    return table


# ---------------------------------------------------------------- VI.B: EVET with intensity transformations

def evet_variants(geometric=GEOMETRIC_TRANSFORMS, intensity=tuple(INTENSITY_TRANSFORMS)) -> dict:
    """(Section VI.B) The transformation sets compared: the base method alone (the identity only),
    EVET's geometric set, the geometric set plus the intensity transformations, and the
    intensity transformations alone (with the identity). ``{name: tuple of transform names}``."""
    geometric, intensity = tuple(geometric), tuple(intensity)
    unknown = [name for name in intensity if name not in INTENSITY_TRANSFORMS]
    if unknown:
        raise ValueError(f"unknown intensity transformation(s) {unknown}; choose from {sorted(INTENSITY_TRANSFORMS)}")
    return {"base": ("identity",), "geometric": geometric, "geometric + intensity": geometric + intensity,
            "intensity": ("identity",) + intensity}


def evaluate_evet(model, batch, base: str, variants: dict, *, steps: int = 8) -> dict:
    """(Section VI.B) Every metric of :func:`camsurvey.metrics.evaluate` for EVET(``base``) under each
    transformation set of ``variants``: ``{variant: {metric: Score}}``. The target is each
    scene's label, the pointing game uses the exact masks and the IoU the target boxes;
    Coherency re-runs EVET with the same set."""
    results = {}
    for name, transforms in variants.items():
        explainer = make_explainer("evet", model, base=base, transforms=tuple(transforms))
        saliency = explainer(batch.images, batch.labels).cpu()
        results[name] = evaluate(model, batch.images, saliency, batch.labels, explainer, batch.masks,
                                 batch.target_boxes, steps=steps)
    return results


# ---------------------------------------------------------------- VI.C: image settings

def uniform_pointing_game(scenarios=SCENARIOS, n: int = 8, seed: int = 0) -> dict:
    """(Section VI.C) The pointing game of a uniform map on the scenes of :func:`evaluate_scenes`
    (the same ``n`` and ``seed``): the target's share of the image, a map's chance level."""
    found = {}
    for scenario in scenarios:
        batch = scene_data.generate(scenario, n, seed=seed)
        found[scenario] = energy_pointing_game(torch.ones(batch.masks.shape), batch.masks)
    return found


def scenario_table(results: dict, metric: str, chance: dict | None = None, lift: bool = False) -> dict:
    """(Section VI.C) One metric of :func:`camsurvey.metrics.evaluate_scenes`' results as
    ``{method: {scenario: value, "worst": scenario}}``, where ``worst`` is the scenario in which
    the method does worst. ``chance`` (``{scenario: Score}``, e.g. :func:`uniform_pointing_game`)
    adds the row ``"uniform map"``; with ``lift=True`` every value is divided by the chance level
    instead (1 = no better than a uniform map), so that scenarios with small and large objects
    compare."""
    if metric not in HIGHER_IS_BETTER:
        raise ValueError(f"unknown metric {metric!r}; choose one of {sorted(HIGHER_IS_BETTER)}")
    if lift and chance is None:
        raise ValueError("lift=True divides by the chance level: pass chance (e.g. uniform_pointing_game(...))")
    scenarios = list(results)
    sign = 1 if HIGHER_IS_BETTER[metric] else -1
    values = {method: {s: results[s][method][metric].mean for s in scenarios} for method in results[scenarios[0]]}
    if chance is not None and lift:
        values = {method: {s: v / max(chance[s].mean, 1e-12) for s, v in row.items()} for method, row in values.items()}
    elif chance is not None:
        values["uniform map"] = {s: chance[s].mean for s in scenarios}
    return {method: {**row, "worst": min(scenarios, key=lambda s: sign * row[s])} for method, row in values.items()}


def instances_found(saliency: torch.Tensor, batch, level: float = 0.5) -> Score:
    """(Section VI.C) Per scene, the fraction of the objects of the target class that the map
    reaches: an object counts as found where the map rises to at least ``level`` times its
    maximum somewhere on the object's pixels. An all-zero map finds nothing."""
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level <= 1:
        raise ValueError(f"level is a fraction of the map's maximum in (0, 1], got {level!r}")
    if saliency.shape != batch.masks.shape:
        raise ValueError(f"saliency {tuple(saliency.shape)} does not match the scenes' masks {tuple(batch.masks.shape)}")
    saliency = saliency.detach().cpu().float()
    target_objects = batch.object_classes == batch.labels[:, None]  # (N, K)
    peaks = (saliency[:, None] * batch.object_masks).amax(dim=(-2, -1))  # (N, K)
    top = saliency.amax(dim=(-2, -1))[:, None]
    found = target_objects & (peaks >= level * top) & (top > 0)
    return as_score(found.sum(1) / target_objects.sum(1).clamp_min(1))


# ---------------------------------------------------------------- VI.D: multi-label

def label_targets(batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(Section VI.D) One row per (scene, class present):
    ``(image index, class, mask of that class's objects, mask of the other classes' objects)``."""
    rows = batch.multi_hot.nonzero()
    image_index, classes = rows[:, 0], rows[:, 1]
    objects, object_classes = batch.object_masks[image_index], batch.object_classes[image_index]
    own = (objects & (object_classes == classes[:, None])[..., None, None]).any(1)
    others = (objects & ((object_classes >= 0) & (object_classes != classes[:, None]))[..., None, None]).any(1)
    return image_index, classes, own, others


def label_separation(saliency: torch.Tensor, own: torch.Tensor, others: torch.Tensor) -> Score:
    """(Section VI.D) How well a label's map keeps to the label's own objects: the map's energy on
    them over its energy on all objects, ``own / (own + others)``, each part the energy pointing
    game (eq. 6) with that mask. 1: only on its own objects; 0: only on the others'. A map with
    no energy on any object separates nothing and scores 0."""
    on_own = energy_pointing_game(saliency, own).per_image
    on_others = energy_pointing_game(saliency, others).per_image
    both = on_own + on_others
    return as_score(torch.where(both > 0, on_own / both.clamp_min(1e-12), torch.zeros_like(both)))


def separation_table(model, batch, methods) -> dict:
    """(Section VI.D) A map per label of each multi-label scene, for each method:
    ``{method: {"own": Score, "others": Score, "separation": Score}}`` (energy on the label's own
    objects, on the other labels' objects, and :func:`label_separation`), plus the row
    ``"uniform map"``, the chance level."""
    image_index, classes, own, others = label_targets(batch)
    images = batch.images[image_index]
    rows = {}
    for method in [*_check_methods(methods), "uniform map"]:
        saliency = (torch.ones(own.shape) if method == "uniform map"
                    else explain(method, model, images, target=classes).cpu())
        rows[method] = {"own": energy_pointing_game(saliency, own), "others": energy_pointing_game(saliency, others),
                        "separation": label_separation(saliency, own, others)}
    return rows


# ---------------------------------------------------------------- statistics

class PairedTest(NamedTuple):
    """``a - b`` per image: ``n`` pairs, the mean difference, its bootstrap interval, a sign test's p."""

    n: int
    mean_difference: float
    low: float
    high: float
    p_value: float


def paired_test(a, b, *, resamples: int = 2000, seed: int = 0, confidence: float = 0.95,
                tolerance: float = 1e-6) -> PairedTest:
    """Per-image differences ``a - b`` of two scores on the same images (Scores or 1-D tensors).

    Differences within ``tolerance`` count as ties (zero): two methods that give the same map up
    to float rounding are not "better" than each other. The interval is a percentile bootstrap
    over images (``resamples`` draws, seeded); the p-value is a two-sided sign test
    (``scipy.stats.binomtest``) over the non-zero differences, 1 when every difference is zero.
    """
    a = a.per_image if isinstance(a, Score) else torch.as_tensor(a)
    b = b.per_image if isinstance(b, Score) else torch.as_tensor(b)
    if a.ndim != 1 or a.shape != b.shape or len(a) == 0:
        raise ValueError(f"paired_test needs two scores on the same images, got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    check_int(resamples, "resamples")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}")
    difference = (a.double() - b.double()).cpu().numpy()
    difference[np.abs(difference) <= tolerance] = 0.0
    draws = np.random.default_rng(seed).integers(0, len(difference), size=(resamples, len(difference)))
    low, high = np.quantile(difference[draws].mean(axis=1), [(1 - confidence) / 2, (1 + confidence) / 2])
    positive, negative = int((difference > 0).sum()), int((difference < 0).sum())
    p_value = stats.binomtest(positive, positive + negative).pvalue if positive + negative else 1.0
    return PairedTest(len(difference), float(difference.mean()), float(low), float(high), float(p_value))


def format_p(p_value: float) -> str:
    """A p-value for print: three decimals, or ``<0.001``."""
    return "<0.001" if p_value < 0.001 else f"{p_value:.3f}"


def paired_table(tests: dict, digits: int = 3) -> str:
    """A plain-text table of :class:`PairedTest` results, one row per key."""
    rows = {name: {"n": str(t.n), "mean a-b": f"{t.mean_difference:+.{digits}f}",
                   "95% interval": f"[{t.low:+.{digits}f}, {t.high:+.{digits}f}]", "sign-test p": format_p(t.p_value)}
            for name, t in tests.items()}
    return format_table(rows, ["n", "mean a-b", "95% interval", "sign-test p"])


def verdict(test: PairedTest, higher_is_better: bool = True, alpha: float = 0.05) -> str:
    """``"better"``, ``"worse"`` (``a`` against ``b``, at significance ``alpha``) or ``"no significant difference"``."""
    if test.p_value >= alpha or test.mean_difference == 0:
        return "no significant difference"
    return "better" if (test.mean_difference > 0) == higher_is_better else "worse"


# ---------------------------------------------------------------- the Conclusion

SUMMARY_COLUMNS = ("pointing_game", "iou", "adcc", "deletion", "cue_reveal", "separation")


def pooled(results: dict, method: str, metric: str) -> Score:
    """One metric of one method over every scenario of :func:`evaluate_scenes`' results, image by image."""
    return as_score(torch.cat([by_method[method][metric].per_image for by_method in results.values()]))


def summary(scene_model, cue_model, methods, *, n: int = 8, seed: int = 0, steps: int = 8,
            scenarios=SCENARIOS) -> dict:
    """A cross-method summary of Section VI's experiments: ``{method: {column: Score, "passes": int}}``.

    Columns: the pointing game, IoU, ADCC and Deletion on ``n`` scenes of each scenario, pooled
    (:func:`pooled`); ``cue_reveal``, the mark's share of the biased model's maps with the mark
    minus without it (:func:`cue_energy`, ``n`` pairs); ``separation``, :func:`label_separation`
    on ``n`` multi-label scenes; ``passes``, the full passes per image of
    :func:`camsurvey.metrics.passes_per_image`.
    """
    methods = _check_methods(methods)
    results = evaluate_scenes(scene_model, methods, scenarios, n, seed, steps=steps)
    marked, unmarked = cue_pairs(n, seed)
    cue = cue_energy({"with": (cue_model, marked), "without": (cue_model, unmarked)}, methods)
    separation = separation_table(scene_model, scene_data.generate("multi_label", n, seed=seed), methods)
    rows: dict[str, dict] = {}
    for method in methods:
        rows[method] = {metric: pooled(results, method, metric) for metric in ("pointing_game", "iou", "adcc", "deletion")}
        rows[method]["cue_reveal"] = score_difference(cue[method]["with"], cue[method]["without"])
        rows[method]["separation"] = separation[method]["separation"]
        rows[method]["passes"] = passes_per_image(method, scene_model)
    return rows


def summary_table(rows: dict) -> str:
    """:func:`summary`'s rows as text: scores in percent, passes as counts."""
    printable = {method: {**values, "passes": str(values["passes"])} for method, values in rows.items()}
    return format_table(printable, [*SUMMARY_COLUMNS, "passes"])


# purpose -> (column of :func:`summary`, higher is better, at most this many passes per image or None)
PURPOSES = {
    "point at the object": ("pointing_game", True, None),
    "box the object": ("iou", True, None),
    "show what the model uses (ADCC)": ("adcc", True, None),
    "remove the evidence first (Deletion)": ("deletion", False, None),
    "audit a model for a spurious cue": ("cue_reveal", True, None),
    "explain each label of a multi-label image": ("separation", True, None),
    "ADCC at one full pass per image": ("adcc", True, 1),
}


class Recommendation(NamedTuple):
    """The best method of a comparison, the methods tied with it on every image (the same map up
    to rounding), the runner-up (the next method that differs) and the paired test best - runner-up."""

    best: str
    tied: tuple
    runner_up: str | None
    test: PairedTest | None


def score_difference(a: Score, b: Score) -> Score:
    """``a - b`` image by image, as a :class:`Score` (e.g. the mark's share with it minus without it)."""
    return as_score(a.per_image - b.per_image)


def best_of(scores: dict, higher_is_better: bool = True, tolerance: float = 1e-6) -> Recommendation:
    """The best of ``{method: Score}`` by mean, as a :class:`Recommendation`.

    Means within ``tolerance`` tie, and ties go to the name first in alphabetical order;
    methods whose scores equal the best's on every image are ``tied``; ``runner_up`` and
    ``test`` are ``None`` when every other method is tied (or there is none).
    """
    if not scores:
        raise ValueError("best_of needs at least one method's scores")
    sign = 1 if higher_is_better else -1
    ranked = sorted(scores, key=lambda m: (-sign * round(scores[m].mean / tolerance), m))
    best, others = ranked[0], ranked[1:]
    same = [m for m in others if torch.allclose(scores[m].per_image, scores[best].per_image, rtol=0, atol=tolerance)]
    different = [m for m in others if m not in same]
    runner_up = different[0] if different else None
    test = paired_test(scores[best], scores[runner_up], tolerance=tolerance) if runner_up else None
    return Recommendation(best, tuple(same), runner_up, test)


def describe(choice: Recommendation, higher_is_better: bool = True) -> str:
    """One line for a :class:`Recommendation`: the best (and its ties), the runner-up, the difference,
    the sign test's p and whether the lead is significant (:func:`verdict`)."""
    name = " = ".join([choice.best, *choice.tied])
    if choice.runner_up is None or choice.test is None:
        return f"{name} (no other method to compare)"
    lead = verdict(choice.test, higher_is_better) == "better"
    return (f"{name}; runner-up {choice.runner_up}, difference {choice.test.mean_difference:+.3f} "
            f"(p {format_p(choice.test.p_value)}): {'separable' if lead else 'not separable'} at this sample size")


def recommend(rows: dict, purposes: dict = PURPOSES) -> dict:
    """For each purpose of ``purposes``, a :class:`Recommendation` (:func:`best_of`) among the
    methods of :func:`summary`'s rows that fit the purpose's budget of passes."""
    chosen = {}
    for purpose, (column, higher, max_passes) in purposes.items():
        if column not in SUMMARY_COLUMNS:
            raise ValueError(f"purpose {purpose!r}: unknown column {column!r}; choose one of {SUMMARY_COLUMNS}")
        allowed = [m for m in rows if max_passes is None or rows[m]["passes"] <= max_passes]
        if not allowed:
            raise ValueError(f"purpose {purpose!r}: no method costs at most {max_passes} passes per image")
        chosen[purpose] = best_of({m: rows[m][column] for m in allowed}, higher)
    return chosen
