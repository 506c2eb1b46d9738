"""Irreducible work: the passes a method cannot avoid (its registry ``cost``), priced with pass times
measured in the same run."""

from __future__ import annotations

import torch

from ...methods import get_method
from ...plumbing import forward_activations, forward_and_backward, is_constant
from .timing import median_time


def irreducible_seconds(cost: dict, batch: int, forward: float, forward_backward: float,
                        forward_per_image: float | None = None, head_per_map: float | None = None) -> float:
    """Seconds of the passes a method cannot avoid, priced with measured pass times.

    ``cost``: passes per image (``{"forward": f, "backward": b, "head": h}``, the registry's
    ``cost``); ``forward``: one forward pass of the batch; ``forward_backward``: one forward
    and one backward pass of the batch (down to the layer); ``forward_per_image``: the best
    per-image time of a forward pass over the batch sizes tried; ``head_per_map``: likewise for
    the head on one feature map. The first pass runs on the batch as given; the (f - 1) further
    forward passes of every image run at the best throughput, each further backward pass costs
    ``forward_backward - forward``, and the h head passes of every image run at the best head
    throughput.
    """
    f, b, h = (int(cost.get(kind, 0)) for kind in ("forward", "backward", "head"))
    if min(f, b, h) < 0 or batch < 1:
        raise ValueError(f"pass counts and batch must be non-negative (batch >= 1), got {cost} and {batch}")
    if f == 0:
        raise ValueError(f"every method runs at least one forward pass; cost {cost} has none")
    seconds = forward_backward if b >= 1 else forward
    if f > 1:
        if forward_per_image is None:
            raise ValueError("forward_per_image is needed for a method with more than one forward pass")
        seconds += (f - 1) * batch * forward_per_image
    if b > 1:
        seconds += (b - 1) * max(forward_backward - forward, 0.0)
    if h > 0:
        if head_per_map is None:
            raise ValueError("head_per_map is needed for a method with head passes")
        seconds += h * batch * head_per_map
    return seconds


def layer_shape(model, images, layer):
    activations, scores = forward_activations(model, images, layer)
    channels, height, width = activations.shape[1:]
    nonconstant = int((~is_constant(activations)).sum(dim=1).max())
    return activations, scores, channels, height * width, nonconstant


def method_cost(name: str, channels: int, positions: int, nonconstant: int) -> dict:
    """A method's passes per image at its default parameters, from its registry ``cost``
    (methods that skip constant channels count the ``nonconstant`` ones only)."""
    return get_method(name).count_passes(channels, positions, nonconstant)


def best_throughput(run, sizes, repeats, device) -> tuple[float, int]:
    """The lowest per-item time of ``run(n)`` over batch sizes ``sizes``: (seconds per item, best n)."""
    best: tuple[float, int] | None = None
    for n in sorted(set(sizes)):
        per_item = median_time(lambda n=n: run(n), repeats, 1, device) / n
        if best is None or per_item < best[0]:
            best = (per_item, n)
    if best is None:
        raise ValueError("best_throughput needs at least one batch size")
    return best


def pass_timings(model, images, layer, target, costs: dict, repeats: int, throughput_batches) -> dict:
    """The pass times :func:`irreducible_seconds` prices the passes with, measured now."""
    device = images.device
    timings = {"forward_s": median_time(lambda: forward_activations(model, images, layer), repeats, 1, device),
               "forward_backward_s": median_time(lambda: forward_and_backward(model, images, layer, target),
                                                 repeats, 1, device)}
    if any(cost.get("forward", 0) > 1 for cost in costs.values()):
        image = images[:1]

        def forwards(n):
            with torch.no_grad():
                model(image.expand(n, *image.shape[1:]).contiguous())

        timings["forward_per_image_s"], timings["forward_best_batch"] = best_throughput(
            forwards, throughput_batches, repeats, device)
    if any(cost.get("head", 0) > 0 for cost in costs.values()):
        _, head = model.split(layer)
        activations, _ = forward_activations(model, images[:1], layer)

        def heads(n):
            with torch.no_grad():
                head(activations.expand(n, *activations.shape[1:]).contiguous())

        sizes = sorted({min(n, max(c.get("head", 0) for c in costs.values())) for n in (32, 64, 128, 256)})
        timings["head_per_map_s"], timings["head_best_batch"] = best_throughput(heads, sizes, repeats, device)
    return timings
