"""Every metric for every method: on the bundled photos, on the scenes, and Table I.

The metrics themselves are in :mod:`camsurvey.metrics` (one function an equation); this module
runs them: which method runs on which photos (:func:`evaluation_plan`), every metric for one set
of maps (:func:`evaluate`), for several methods (:func:`evaluate_methods`), on the photos
(:func:`evaluate_photos`) and on the scenario dataset (:func:`evaluate_scenes`), and the tables
the metrics chapter prints (:func:`format_table`, :func:`table_one`, :func:`best_methods`), each
comparing methods only on the photos they all ran on (:func:`by_photo_set`).
"""

from __future__ import annotations

import torch

from ..datasets import scenes as scene_data
from ..images import load_box, load_images, photo_annotations
from ..methods import METHODS, explain, get_method
from ..metrics import (
    HIGHER_IS_BETTER,
    IOU_THRESHOLD,
    Score,
    adcc,
    adcc_score,
    as_score,
    average_drop,
    deletion_auc,
    energy_pointing_game,
    increase_in_confidence,
    insertion_auc,
    localization_iou,
)
from ..plumbing import forward_activations


def passes_per_image(method: str, model) -> int:
    """Full forward + backward passes one image costs ``method`` at the model's default layer
    (for an image at the model's training resolution, ``model.resolution``)."""
    with torch.no_grad():
        size = model.resolution
        activations, _ = forward_activations(model, torch.zeros(1, 3, size, size, device=model.device), None)
    channels, height, width = activations.shape[1:]
    cost = get_method(method).count_passes(channels, height * width)
    return int(cost["forward"] + cost["backward"])


def evaluation_plan(model, photos, methods=None, *, max_full_passes: int = 2, slow_methods=(),
                    slow_photos=()) -> tuple[dict, list]:
    """Which method runs on which photos: ``({method: [photos]}, [skipped methods])``.

    ``methods=None`` takes every method of :data:`METHODS`. A method costing at most
    ``max_full_passes`` full passes per image (:func:`passes_per_image`) runs on every photo;
    a costlier one runs on ``slow_photos`` if it is one of ``slow_methods``, else it is skipped.
    """
    plan, skipped = {}, []
    for method in (list(METHODS) if methods is None else list(methods)):
        if passes_per_image(method, model) <= max_full_passes:
            plan[method] = list(photos)
        elif method in slow_methods and any(p in photos for p in slow_photos):
            plan[method] = [p for p in photos if p in slow_photos]
        else:
            skipped.append(method)
    return plan, skipped


def evaluate(model, images, saliency, target, explainer, region=None, boxes=None, *, steps: int = 16,
             threshold: float = IOU_THRESHOLD, metrics=None) -> dict:
    """Every metric of this module for one set of maps: ``{metric name: Score}``.

    ``region`` (boxes or exact masks) feeds the pointing game, ``boxes`` the IoU; leave either
    out to skip it. ``explainer`` is what :func:`coherency` needs to recompute the maps.
    ``metrics``: compute only these names (default: all; ``adcc`` brings ``adcc_of_means``).
    """
    wanted = set(HIGHER_IS_BETTER if metrics is None else metrics)
    scores = {}
    if region is not None and "pointing_game" in wanted:
        scores["pointing_game"] = energy_pointing_game(saliency, region)
    if boxes is not None and "iou" in wanted:
        scores["iou"] = localization_iou(saliency, boxes, threshold)
    if "average_drop" in wanted:
        scores["average_drop"] = average_drop(model, images, saliency, target)
    if "increase_in_confidence" in wanted:
        scores["increase_in_confidence"] = increase_in_confidence(model, images, saliency, target)
    if "insertion" in wanted:
        scores["insertion"] = insertion_auc(model, images, saliency, target, steps=steps)
    if "deletion" in wanted:
        scores["deletion"] = deletion_auc(model, images, saliency, target, steps=steps)
    if wanted & {"coherency", "complexity", "adcc", "adcc_of_means"}:
        full = adcc_score(model, images, saliency, explainer, target)
        scores.update(coherency=full.coherency, complexity=full.complexity, adcc=as_score(full.per_image))
        scores["adcc_of_means"] = Score(torch.tensor([full.of_means], dtype=torch.float64), full.of_means)
    return scores


def format_table(rows: dict, columns, percent: bool = True, digits: int = 1) -> str:
    """A plain-text table: one row per key of ``rows`` (``{row: {column: Score or number}}``)."""
    def cell(value):
        if value is None:
            return "-"
        value = value.mean if isinstance(value, Score) else value
        if isinstance(value, str):
            return value
        return f"{100 * value:.{digits}f}" if percent else f"{value:.{digits}f}"

    header = ["", *columns]
    body = [[str(name), *(cell(values.get(c)) for c in columns)] for name, values in rows.items()]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(t.rjust(w) if i else t.ljust(w) for i, (t, w) in enumerate(zip(r, widths)))
             for r in [header, *body]]
    return "\n".join(lines)


def evaluate_methods(model, images, target, methods, region=None, boxes=None, *, steps: int = 16,
                     threshold: float = IOU_THRESHOLD) -> tuple[dict, dict]:
    """Explain ``images`` with each method and score the maps: ``({method: maps}, {method: {metric: Score}})``."""
    maps, results = {}, {}
    for method in methods:
        maps[method] = explain(method, model, images, target=target).cpu()
        results[method] = evaluate(model, images, maps[method], target, method, region, boxes,
                                   steps=steps, threshold=threshold)
    return maps, results


def evaluate_photos(model, plan: dict, *, steps: int = 16, threshold: float = IOU_THRESHOLD) -> tuple[dict, dict]:
    """Explain and score the bundled photos as ``plan`` says (:func:`evaluation_plan`).

    Each photo's target is its annotated class and its box the annotated box
    (``photo_annotations()``); photos and boxes are at the model's training resolution,
    ``model.resolution``. Returns ``({method: maps (B, H, W)}, {method: {metric: Score}})``.
    """
    unknown = sorted({p for photos in plan.values() for p in photos} - set(photo_annotations()))
    if unknown:
        raise ValueError(f"no class and box for the photos {unknown}: evaluate_photos scores the bundled photos "
                         f"{sorted(photo_annotations())}; for your own images use evaluate_methods with your boxes")
    maps, results = {}, {}
    for method, photos in plan.items():
        target = torch.tensor([photo_annotations()[p]["class_index"] for p in photos])
        boxes = [load_box(p, model.resolution) for p in photos]
        found = evaluate_methods(model, load_images(photos, model.resolution), target, [method], boxes, boxes, steps=steps,
                                 threshold=threshold)
        maps[method], results[method] = found[0][method], found[1][method]
    return maps, results


def evaluate_scenes(model, methods, scenarios=None, n: int = 8, seed: int = 0, *, steps: int = 16,
                    threshold: float = IOU_THRESHOLD) -> dict:
    """Every metric on each scenario of the scenario dataset: ``{scenario: {method: {metric: Score}}}``.

    The target is each scene's label; the pointing game uses the exact object masks, the IoU
    the box around all objects of the target class.
    """
    results = {}
    for scenario in (scene_data.SCENARIOS if scenarios is None else scenarios):
        batch = scene_data.generate(scenario, n, seed=seed)
        _, results[scenario] = evaluate_methods(model, batch.images, batch.labels, methods, batch.masks,
                                                batch.target_boxes, steps=steps, threshold=threshold)
    return results


def winners_by_scenario(results: dict, columns) -> dict:
    """``{scenario: {metric: best method}}`` from :func:`evaluate_scenes`' results."""
    return {scenario: best_methods(by_method, columns) for scenario, by_method in results.items()}


# ADCC (x 100) that the survey's Table I lists, "values based on Recipro-CAM reports"; None: "-"
TABLE_I_REPORTED = {"cam": None, "gradcam": 76.4, "gradcam++": 76.34, "scorecam": 78.55, "reciprocam": 81.38}
# what the reported column is, and which of our columns is computed the same way
TABLE_I_SOURCE = ("reported: the ResNet-101 block of the Recipro-CAM paper's Table 1 (Byun & Lee), all 50,000 "
                  "ILSVRC2012 validation images, ground-truth classes; its ADCC is eq. (10) of the averaged parts, "
                  "so 'of means' is the measured column to compare it with")


def table_one(results: dict, plan: dict) -> str:
    """Table I beside our measurement: reported ADCC, measured ADCC (per image, then averaged),
    ADCC of the averaged parts, and how many photos each measurement rests on (all x 100)."""
    rows = {}
    for method in [*TABLE_I_REPORTED, *(m for m in results if m not in TABLE_I_REPORTED)]:
        if method not in results:
            continue
        reported = TABLE_I_REPORTED.get(method, "not in Table I")
        rows[method] = {
            "reported": "-" if reported is None else (reported if isinstance(reported, str) else reported / 100),
            "measured": results[method]["adcc"],
            "of means": results[method]["adcc_of_means"],
            "photos": str(len(plan[method])),
        }
    return format_table(rows, ["reported", "measured", "of means", "photos"], digits=2)


# Means closer than this (the metrics are fractions) are a tie: float rounding, not a difference.
TIE = 1e-6
# More methods tied at the best than this are counted, not named.
MAX_NAMED_TIES = 3


def best_methods(results: dict, columns) -> dict:
    """``{metric: the method with the best mean}`` (lowest for Average Drop, Deletion, Complexity).

    Methods tied at the best (means within :data:`TIE`) are all named, joined by ``=``, or counted
    when there are more than :data:`MAX_NAMED_TIES`. A metric that some method lacks cannot be
    ranked: ``"-"``. Compare only methods scored on the same images (:func:`by_photo_set`).
    """
    best = {}
    for column in columns:
        if not results or any(column not in scores for scores in results.values()):
            best[column] = "-"
            continue
        sign = 1 if HIGHER_IS_BETTER[column] else -1
        top = max(sign * scores[column].mean for scores in results.values())
        tied = sorted(m for m, scores in results.items() if top - sign * scores[column].mean <= TIE)
        best[column] = "=".join(tied) if len(tied) <= MAX_NAMED_TIES else f"{len(tied)} tied"
    return best


def photo_sets(plan: dict) -> list[tuple[str, ...]]:
    """The different sets of photos the methods of ``plan`` (:func:`evaluation_plan`) ran on, largest first."""
    return sorted({tuple(photos) for photos in plan.values()}, key=lambda photos: (-len(photos), photos))


def on_photos(results: dict, plan: dict, photos) -> dict:
    """The scores of every method that ran on all of ``photos``, on those photos alone:
    ``{method: {metric: Score}}``, so that the methods are compared on the same evidence.

    Each per-image value is taken from the method's own scores (nothing is explained again);
    ``adcc_of_means``, one number for a set of photos, is recomputed from the per-image parts
    (eq. 10 of the averaged Coherency, Complexity and Average Drop) over ``photos``.
    """
    photos = list(photos)
    chosen = {}
    for method, scores in results.items():
        ran = list(plan[method])
        if not set(photos) <= set(ran):
            continue
        index = torch.tensor([ran.index(photo) for photo in photos])
        row = {metric: as_score(score.per_image[index]) for metric, score in scores.items() if metric != "adcc_of_means"}
        if "adcc_of_means" in scores and {"coherency", "complexity", "average_drop"} <= set(row):
            value = float(adcc(row["coherency"].mean, row["complexity"].mean, row["average_drop"].mean))
            row["adcc_of_means"] = Score(torch.tensor([value], dtype=torch.float64), value)
        chosen[method] = row
    return chosen


def by_photo_set(results: dict, plan: dict) -> dict:
    """``{photos: on_photos(results, plan, photos)}`` for each of :func:`photo_sets`: the methods that
    ran on every photo, compared on all of them, then, for each smaller set a costly method ran on,
    every method that ran there too, compared on that set alone."""
    return {photos: on_photos(results, plan, photos) for photos in photo_sets(plan)}


def describe_photos(photos) -> str:
    """``"chelsea"``, ``"chelsea, coffee"`` or ``"5 photos"``: a column heading for a set of photos."""
    return ", ".join(photos) if len(photos) <= 2 else f"{len(photos)} photos"


def format_by_photo_set(results: dict, plan: dict, columns, **table) -> str:
    """One :func:`format_table` per set of photos (:func:`by_photo_set`), each headed by its photos."""
    blocks = [f"{len(rows)} methods on {', '.join(photos)}\n" + format_table(rows, columns, **table)
              for photos, rows in by_photo_set(results, plan).items()]
    return "\n\n".join(blocks)


def best_by_photo_set(results: dict, plan: dict, columns) -> str:
    """The best method per metric (rows) on each set of photos (columns): :func:`best_methods`
    over :func:`by_photo_set`, so no method is ranked against another on different photos."""
    sets = {describe_photos(photos): best_methods(rows, columns) for photos, rows in by_photo_set(results, plan).items()}
    return format_table({column: {label: best[column] for label, best in sets.items()} for column in columns}, list(sets))
