"""What a run will cost, before it runs (``camsurvey evaluate --dry-run``).

Per method, the passes one image costs: the method's own (its registry ``cost`` at the
protocol's layer and input size, :meth:`camsurvey.Method.count_passes`), once for the map and,
when Coherency is measured, once more for the map of the explanation image; and the forward
passes the metrics add (:func:`metric_forwards`). The seconds are priced with pass times
measured now on this machine by the benchmark's own functions
(:func:`camsurvey.lab.bench.pass_timings`, :func:`camsurvey.lab.bench.irreducible_seconds`).
"""

from __future__ import annotations

import torch

from ...methods import get_method
from ...plumbing import forward_activations, is_constant
from .protocol import Protocol

ADCC_NEEDS = {"coherency", "complexity", "adcc"}


def metric_forwards(chosen: Protocol) -> int:
    """Forward passes (images through the whole model) the metrics of ``chosen`` add for one image
    and method, beside the method's own: counted from the metric functions as they run.

    Book protocol (:func:`camsurvey.lab.evaluation.evaluate`): Average Drop and Increase in
    Confidence each see the image and its explanation (2 + 2); insertion and deletion each see
    the image and ``steps + 1`` frames; ADCC sees the image in Coherency and the image and its
    explanation in Average Drop (1 + 2). Recipro-CAM's protocol: the image and its explanation,
    once for all parts (2). The prediction that picks the target adds 1 per image (not per method).
    """
    wanted = set(chosen.metrics)
    if chosen.masking == "model-input":
        forwards = 2 if wanted & (ADCC_NEEDS | {"average_drop", "increase_in_confidence"}) else 0
        return forwards + sum(chosen.steps + 2 for m in ("insertion", "deletion") if m in wanted)
    forwards = 2 * (("average_drop" in wanted) + ("increase_in_confidence" in wanted))
    forwards += sum(chosen.steps + 2 for m in ("insertion", "deletion") if m in wanted)
    return forwards + (3 if wanted & ADCC_NEEDS else 0)


def layer_shape(model, images: torch.Tensor, layer) -> tuple[int, int, int]:
    """``(K, h*w, K_live)`` at ``layer`` on ``images`` (K_live: the most non-constant channels of any image)."""
    with torch.no_grad():
        activations, _ = forward_activations(model, images.to(model.device), layer)
    channels, height, width = activations.shape[1:]
    live = int((~is_constant(activations)).sum(dim=1).max())
    return channels, height * width, live


def method_passes(chosen: Protocol, channels: int, positions: int, live: int) -> dict[str, dict]:
    """``{method: {"method": passes of one map, "evaluation": passes of every metric, per image}}``."""
    plan = {}
    for method in chosen.methods:
        own = get_method(method).count_passes(channels, positions, live, **chosen.params_of(method))
        maps = 2 if set(chosen.metrics) & ADCC_NEEDS else 1
        total = {kind: maps * count for kind, count in own.items()}
        total["forward"] += metric_forwards(chosen)
        plan[method] = {"method": own, "evaluation": total}
    return plan


def estimate(model, chosen: Protocol, images: torch.Tensor, count: int, *, time_passes: bool = True,
             repeats: int = 3, live_channels: int | None = None) -> dict:
    """The dry run: passes per image and method for ``count`` images, and the hours they take here.

    ``images``: a few images of the dataset, prepared as the protocol does (K_live is measured
    on them, unless ``live_channels`` is given: e.g. all K, the most Score-CAM can cost). With
    ``time_passes``, the pass times are measured now (the benchmark's
    :func:`~camsurvey.lab.bench.pass_timings`) and every image's passes priced with
    :func:`~camsurvey.lab.bench.irreducible_seconds` (one image a call, as the run computes).
    """
    channels, positions, live = layer_shape(model, images, chosen.layer)
    live = live if live_channels is None else live_channels
    plan = method_passes(chosen, channels, positions, live)
    result = {"images": count, "layer": chosen.layer or model.default_layer, "channels": channels,
              "positions": positions, "live_channels": live, "device": str(model.device), "methods": plan}
    if time_passes:
        from ..bench import irreducible_seconds, pass_timings

        one = images[:1].to(model.device)
        with torch.no_grad():
            target = model(one).argmax(dim=1)
        timings = pass_timings(model, one, chosen.layer, target, {m: p["evaluation"] for m, p in plan.items()},
                               repeats, (1, 8, 16))
        result["pass_timings"] = timings
        for passes in plan.values():
            seconds = irreducible_seconds(passes["evaluation"], 1, timings["forward_s"], timings["forward_backward_s"],
                                          timings.get("forward_per_image_s"), timings.get("head_per_map_s"))
            passes["seconds_per_image"] = seconds
            passes["hours"] = seconds * count / 3600
        result["hours"] = sum(p["hours"] for p in plan.values())
    return result


def format_estimate(result: dict) -> str:
    """The dry run as lines of text."""
    lines = [f"{result['images']} images; layer {result['layer']} (K = {result['channels']}, h*w = "
             f"{result['positions']}, K_live = {result['live_channels']}); {result['device']}",
             f"{'method':<14}{'map: fwd':>9}{'bwd':>6}{'head':>7}  {'evaluation: fwd':>16}{'bwd':>6}{'head':>7}"
             + ("  s/image    hours" if "hours" in result else "")]
    for method, passes in result["methods"].items():
        own, total = passes["method"], passes["evaluation"]
        line = (f"{method:<14}{own['forward']:>9}{own['backward']:>6}{own['head']:>7}  {total['forward']:>16}"
                f"{total['backward']:>6}{total['head']:>7}")
        if "hours" in passes:
            line += f"  {passes['seconds_per_image']:>7.3f} {passes['hours']:>8.2f}"
        lines.append(line)
    if "hours" in result:
        lines.append(f"total: {result['hours']:.2f} hours on this machine (pass times measured now)")
    return "\n".join(lines)
