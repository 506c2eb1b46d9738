"""Irreducible work: the passes a method cannot avoid (its registry ``cost``), priced with pass times
measured in the same run.

The passes are calls (:func:`pass_calls`), so the benchmark can time them in the same rounds as
the method (:mod:`.interleave`) and price each round's irreducible work with that round's pass
times (:func:`irreducible_in_round`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ...methods import get_method
from ...plumbing import forward_activations, forward_and_backward, is_constant
from .timing import median_time

# Memory layouts tried for the best throughput: Score-CAM sends its masked images channels-last,
# about twice as fast on a CPU, so a floor measured in the default layout alone is no floor.
LAYOUTS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}

# the batch sizes tried for the head's best throughput (capped at the most head passes a method needs)
HEAD_BATCHES = (32, 64, 128, 256)


def pass_counts(cost: dict) -> tuple[int, int, int]:
    """``(forward, backward, head)`` passes per image of a registry ``cost``."""
    f, b, h = (int(cost.get(kind, 0)) for kind in ("forward", "backward", "head"))
    if min(f, b, h) < 0:
        raise ValueError(f"pass counts must be non-negative, got {cost}")
    if f == 0:
        raise ValueError(f"every method runs at least one forward pass; cost {cost} has none")
    return f, b, h


def irreducible_seconds(cost: dict, batch: int, forward: float | None, forward_backward: float | None,
                        forward_per_image: float | None = None, head_per_map: float | None = None) -> float:
    """Seconds of the passes a method cannot avoid, priced with measured pass times.

    ``cost``: passes per image (``{"forward": f, "backward": b, "head": h}``, the registry's
    ``cost``); ``forward``: one forward pass of the batch; ``forward_backward``: one forward
    and one backward pass of the batch (down to the layer); ``forward_per_image``: the best
    per-image time of a forward pass over the batch sizes and layouts tried; ``head_per_map``:
    likewise for the head on one feature map. The first pass runs on the batch as given; the
    (f - 1) further forward passes of every image run at the best throughput, each further
    backward pass costs ``forward_backward - forward``, and the h head passes of every image run
    at the best head throughput. A time the cost does not use may be ``None``.
    """
    f, b, h = pass_counts(cost)
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")

    def needed(value, name):
        if value is None:
            raise ValueError(f"{name} is needed to price cost {cost}")
        return value

    seconds = needed(forward_backward, "forward_backward") if b >= 1 else needed(forward, "forward")
    if f > 1:
        seconds += (f - 1) * batch * needed(forward_per_image, "forward_per_image")
    if b > 1:
        seconds += (b - 1) * max(needed(forward_backward, "forward_backward") - needed(forward, "forward"), 0.0)
    if h > 0:
        seconds += h * batch * needed(head_per_map, "head_per_map")
    return seconds


def needed_passes(cost: dict) -> list[str]:
    """The passes of :func:`pass_calls` that :func:`irreducible_seconds` prices ``cost`` with."""
    f, b, h = pass_counts(cost)
    needed = ["forward+backward"] if b >= 1 else ["forward"]
    needed += ["forward"] if b > 1 else []
    needed += ["forwards"] if f > 1 else []
    needed += ["heads"] if h > 0 else []
    return needed


def layer_shape(model, images, layer):
    activations, scores = forward_activations(model, images, layer)
    channels, height, width = activations.shape[1:]
    nonconstant = int((~is_constant(activations)).sum(dim=1).max())
    return activations, scores, channels, height * width, nonconstant


def method_cost(name: str, channels: int, positions: int, nonconstant: int) -> dict:
    """A method's passes per image at its default parameters, from its registry ``cost``
    (methods that skip constant channels count the ``nonconstant`` ones only)."""
    return get_method(name).count_passes(channels, positions, nonconstant)


def forwards_call(model, image: torch.Tensor, n: int, layout: str) -> Callable[[], None]:
    """A forward pass of ``n`` copies of one image in memory ``layout``, without gradients."""
    copies = image[:1].expand(n, *image.shape[1:]).contiguous(memory_format=LAYOUTS[layout])

    def forwards():
        with torch.no_grad():
            model(copies)

    return forwards


def heads_call(model, layer, image: torch.Tensor, n: int, layout: str) -> Callable[[], None]:
    """The head (the network after ``layer``) on ``n`` copies of one image's feature map."""
    _, head = model.split(layer)
    activations, _ = forward_activations(model, image[:1], layer)
    copies = activations.expand(n, *activations.shape[1:]).contiguous(memory_format=LAYOUTS[layout])

    def heads():
        with torch.no_grad():
            head(copies)

    return heads


def pass_calls(model, images, layer, target, best: dict) -> dict[str, Callable[[], object]]:
    """The passes irreducible work is priced with, as calls: ``forward`` and ``forward+backward`` of the
    batch, ``forwards`` and ``heads`` at the best batch and layout in ``best`` (from :func:`pass_timings`)."""
    calls: dict[str, Callable[[], object]] = {
        "forward": lambda: forward_activations(model, images, layer),
        "forward+backward": lambda: forward_and_backward(model, images, layer, target)}
    if "forward_best_batch" in best:
        calls["forwards"] = forwards_call(model, images, best["forward_best_batch"], best["forward_best_layout"])
    if "head_best_batch" in best:
        calls["heads"] = heads_call(model, layer, images, best["head_best_batch"], best["head_best_layout"])
    return calls


def irreducible_in_round(cost: dict, batch: int, times: dict[str, float], best: dict) -> float:
    """:func:`irreducible_seconds` priced with one round's pass times (``times``: pass name -> seconds)."""
    return irreducible_seconds(
        cost, batch, times.get("forward"), times.get("forward+backward"),
        times["forwards"] / best["forward_best_batch"] if "forwards" in times else None,
        times["heads"] / best["head_best_batch"] if "heads" in times else None)


def best_throughput(make_call, sizes, repeats, device) -> tuple[float, int, str]:
    """The lowest per-item time of ``make_call(n, layout)()`` over batch sizes ``sizes`` and :data:`LAYOUTS`:
    (seconds per item, best n, best layout)."""
    best: tuple[float, int, str] | None = None
    for n in sorted(set(sizes)):
        for layout in LAYOUTS:
            per_item = median_time(make_call(n, layout), repeats, 1, device) / n
            if best is None or per_item < best[0]:
                best = (per_item, n, layout)
    if best is None:
        raise ValueError("best_throughput needs at least one batch size")
    return best


def pass_timings(model, images, layer, target, costs: dict, repeats: int, throughput_batches) -> dict:
    """The pass times :func:`irreducible_seconds` prices the passes with, measured now one after the
    other, and the batch sizes and layouts of the best throughputs (which :func:`pass_calls` then uses)."""
    device = images.device
    calls = pass_calls(model, images, layer, target, {})
    timings: dict = {"forward_s": median_time(calls["forward"], repeats, 1, device),
                     "forward_backward_s": median_time(calls["forward+backward"], repeats, 1, device)}
    if any(cost.get("forward", 0) > 1 for cost in costs.values()):
        (timings["forward_per_image_s"], timings["forward_best_batch"],
         timings["forward_best_layout"]) = best_throughput(
            lambda n, layout: forwards_call(model, images, n, layout), throughput_batches, repeats, device)
    most_heads = max((cost.get("head", 0) for cost in costs.values()), default=0)
    if most_heads > 0:
        sizes = sorted({min(n, most_heads) for n in HEAD_BATCHES})
        (timings["head_per_map_s"], timings["head_best_batch"], timings["head_best_layout"]) = best_throughput(
            lambda n, layout: heads_call(model, layer, images, n, layout), sizes, repeats, device)
    return timings
