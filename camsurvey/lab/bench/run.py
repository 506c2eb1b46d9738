"""``run_benchmark``: every method's time against its irreducible work and the peers, in one run."""

from __future__ import annotations

import platform
import time

import torch
from torch import nn

from ...images import load_images
from ...methods import METHODS, explain, get_method
from ...metrics import mean_pearson
from ...models import load_model
from ...plumbing import resolve_target
from .costs import irreducible_seconds, layer_shape, method_cost, pass_timings
from .peers import PEERS, peer_available, peer_explain, scorecam_reference
from .report import ratio
from .timing import PeakMemory, measure

DEFAULT_PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")
PEER_SETTINGS = ("library defaults (pytorch-grad-cam ScoreCAM batch 16, AblationCAM batch 32; "
                 "torchcam ScoreCAM batch 32); gradient peers get an input requiring gradients")


def prepare(model_name, layer, size, batch, photos, weights, device):
    """The model, its layer, and a batch of ``batch`` photos at ``size`` px on the model's device."""
    model = model_name if isinstance(model_name, nn.Module) else load_model(model_name, weights=weights, device=device)
    layer = model.default_layer if layer is None else layer
    model.split(layer)  # a clear ValueError for layers the model cannot be split at
    photos = list(photos or DEFAULT_PHOTOS)
    images = load_images([photos[i % len(photos)] for i in range(batch)], size=size).to(model.device)
    return model, layer, photos[:batch], images


def method_costs(methods, channels: int, positions: int, nonconstant: int) -> dict:
    """Each method's passes per image; a cost that cannot be evaluated is recorded as an error."""
    costs = {}
    for name in methods:
        try:
            costs[name] = method_cost(name, channels, positions, nonconstant)
        except Exception as error:  # the method is still timed
            costs[name] = {"error": f"{type(error).__name__}: {error}"}
    return costs


def time_peers(name, model, images, target, layer, saliency, repeats, time_budget, skipped, log) -> dict:
    """Each peer's time and map for method ``name``, side by side with ours (``saliency``)."""
    timed: dict[str, dict] = {}
    for library, shared in PEERS.items():
        if name not in shared or skipped[library]:
            continue
        log(f"{name}: timing {library}")
        try:
            theirs = measure(lambda library=library: peer_explain(library, name, model, images, target, layer),
                             repeats, images.device, time_budget)
        except Exception as error:  # a peer failing on our model is reported, not fatal
            timed[library] = {"skipped": f"{type(error).__name__}: {error}"}
            continue
        peer_map = theirs.pop("result")
        timed[library] = theirs
        timed[library]["pearson"] = mean_pearson(saliency, peer_map)
    return timed


def time_method(name, model, images, target, layer, irreducible, repeats, time_budget, skip_over, peer_skips,
                reference, log) -> dict:
    """One method's record: its time, peak memory, ratio to its irreducible work and to each peer."""
    entry = get_method(name)
    record = {"family": entry.family, "section": entry.section, "passes": entry.passes, "irreducible_s": irreducible}
    if irreducible is not None and skip_over is not None and irreducible > skip_over:
        record["skipped"] = f"irreducible work {irreducible:.0f} s exceeds --skip-over {skip_over:.0f} s"
        log(f"{name}: skipped ({record['skipped']})")
        return record
    log(f"{name}: timing")
    try:
        ours = measure(lambda: explain(name, model, images, layer=layer), repeats, images.device, time_budget)
    except (ValueError, TypeError) as error:
        record["skipped"] = f"{type(error).__name__}: {error}"
        log(f"{name}: skipped ({record['skipped']})")
        return record
    saliency = ours.pop("result").detach().cpu()
    record.update(ours)
    record["ratio_to_irreducible"] = ratio(record["median_s"], irreducible)
    record["peers"] = time_peers(name, model, images, target, layer, saliency, repeats, time_budget, peer_skips, log)
    for peer in record["peers"].values():
        if "median_s" in peer:
            peer["ratio"] = ratio(record["median_s"], peer["median_s"])
            peer["speedup"] = ratio(peer["median_s"], record["median_s"])
    if name == "scorecam" and reference:
        log("scorecam: slow reference (one channel at a time)")
        start = time.perf_counter()
        slow = scorecam_reference(model, images, target, layer).cpu()
        record["reference"] = {"seconds": time.perf_counter() - start, "pearson": mean_pearson(saliency, slow)}
    return record


def run_benchmark(model_name="efficientnet_lite0", layer=None, size=224, batch=1, methods=None, photos=None,
                  repeats=3, peers=True, reference=True, throughput_batches=(1, 8, 16, 32), time_budget=60.0,
                  skip_over=300.0, weights="imagenet", device=None, log=None) -> dict:
    """Run the benchmark and return its results as a JSON-ready dict (see :mod:`camsurvey.lab.bench`).

    ``methods``: names from ``METHODS`` (default: all). ``time_budget``: seconds of timed calls
    per method beyond the warm-up (repeats are cut to fit, never below one). ``skip_over``:
    methods whose irreducible work alone exceeds this many seconds are skipped, with a note.
    ``reference``: also run Score-CAM's slow one-channel-at-a-time reference and correlate.
    """
    log = log or (lambda message: None)
    methods = list(METHODS) if methods is None else list(methods)
    for name in methods:
        get_method(name)  # a clear ValueError for unknown names
    if repeats < 1 or batch < 1:
        raise ValueError(f"repeats and batch must be >= 1, got {repeats} and {batch}")
    model, layer, photos, images = prepare(model_name, layer, size, batch, photos, weights, device)
    _, scores, channels, positions, nonconstant = layer_shape(model, images, layer)
    target = resolve_target(None, scores)
    costs = method_costs(methods, channels, positions, nonconstant)
    priced = {n: c for n, c in costs.items() if "error" not in c}
    log(f"measuring pass times ({model.name}, layer {layer}, {size}px, batch {batch}, {images.device})")
    passes = pass_timings(model, images, layer, target, priced, repeats, throughput_batches)
    peer_skips = {library: peer_available(library) if peers else "peers not requested" for library in PEERS}
    settings = {"model": model.name, "weights": weights, "layer": layer, "input_size": size, "batch": batch,
                "photos": photos, "repeats": repeats, "warmup": 1, "time_budget_s": time_budget,
                "skip_over_s": skip_over, "device": str(images.device), "threads": torch.get_num_threads(),
                "torch": torch.__version__, "platform": platform.platform(),
                "processor": platform.processor() or platform.machine(), "channels": channels,
                "nonconstant_channels": nonconstant, "positions": positions, "memory": PeakMemory(images.device).how,
                "peers": PEER_SETTINGS, **{f"{library}_skipped": skip for library, skip in peer_skips.items()}}
    records = {}
    for name in methods:
        irreducible = None
        if "error" not in costs[name]:
            irreducible = irreducible_seconds(costs[name], batch, passes["forward_s"], passes["forward_backward_s"],
                                              passes.get("forward_per_image_s"), passes.get("head_per_map_s"))
        records[name] = {"cost": costs[name], **time_method(name, model, images, target, layer, irreducible, repeats,
                                                            time_budget, skip_over, peer_skips, reference, log)}
    return {"settings": settings, "passes": passes, "methods": records}
