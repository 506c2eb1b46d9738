"""The benchmark of survey Section V.C: every method's time against its irreducible work and the peers.

    python -m camsurvey.bench --model efficientnet_lite0 --size 224 --batch 1 --output runs/bench.json

For one model, layer, input size and batch it times every method of :data:`camsurvey.METHODS`
(or those given with ``--methods``) and, in the same run, the implementations that
pytorch-grad-cam and torchcam (optional, dev-only peers) give of the methods they share. For
each method it reports

* the median wall time over ``repeats`` calls after one warm-up call;
* the **irreducible work**: the passes the method cannot avoid (its registry ``cost``),
  priced with pass times measured in the same run (:func:`irreducible_seconds`) -- one forward
  pass of the batch, one forward + backward pass to the layer, further forward passes at the
  best per-image throughput this machine reaches, head passes (after the split) likewise;
* the ratio of the two, the ratio to each peer, the peak memory of the call, and the
  Pearson correlation of our map with each peer's.

Speed is a benchmark, never a test assertion: timings depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .methods import METHODS, explain, get_method
from .models import load_model
from .images import load_images
from .plumbing import (check_images, forward_activations, forward_and_backward, is_constant, normalize,
                       resolve_target, upsample)

DEFAULT_OUTPUT = "runs/bench.json"

# method -> class name, for the methods each peer library shares with camsurvey (same equations)
PEERS = {
    "pytorch-grad-cam": {"gradcam": "GradCAM", "gradcam++": "GradCAMPlusPlus", "xgradcam": "XGradCAM",
                         "layercam": "LayerCAM", "eigencam": "EigenCAM", "scorecam": "ScoreCAM",
                         "ablationcam": "AblationCAM"},
    "torchcam": {"cam": "CAM", "gradcam": "GradCAM", "gradcam++": "GradCAMpp", "xgradcam": "XGradCAM",
                 "layercam": "LayerCAM", "scorecam": "ScoreCAM"},
}
PEER_MODULES = {"pytorch-grad-cam": "pytorch_grad_cam", "torchcam": "torchcam.methods"}
PEER_NEEDS_GRADIENTS = {"gradcam", "gradcam++", "xgradcam", "layercam"}


# --- timing and memory ----------------------------------------------------------------------

def synchronize(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def time_call(function, repeats: int = 3, warmup: int = 1, device="cpu") -> list[float]:
    """Wall times (s) of ``repeats`` calls of ``function()``, after ``warmup`` untimed calls."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats} and {warmup}")
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        function()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def median_time(function, repeats: int = 3, warmup: int = 1, device="cpu") -> float:
    return statistics.median(time_call(function, repeats, warmup, device))


def _resident_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class PeakMemory:
    """Peak memory of the code in a ``with`` block, in bytes (``.peak``), and how it was measured.

    On CUDA: ``torch.cuda.max_memory_allocated`` above what was allocated before. On the CPU:
    the peak of the process's resident set (sampled every millisecond by a thread, after freed
    heap memory is handed back to the system) above its size before; ``None`` where
    ``/proc`` is missing.
    """

    def __init__(self, device="cpu", interval: float = 0.001):
        self.device, self.interval, self.peak = torch.device(device), interval, None
        self.how = ("torch.cuda.max_memory_allocated" if self.device.type == "cuda"
                    else "peak resident set size above the start (sampled every 1 ms)")

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
            return self
        _trim_heap()
        self._start = _resident_bytes()
        self._highest, self._stop = self._start, threading.Event()
        if self._start is not None:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self._highest = max(self._highest, _resident_bytes() or 0)
            self._stop.wait(self.interval)

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) - self._start
            return False
        if self._start is not None:
            self._stop.set()
            self._thread.join()
            self._highest = max(self._highest, _resident_bytes() or 0)
            self.peak = self._highest - self._start
        return False


def _trim_heap() -> None:
    import gc

    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


# --- the arithmetic: irreducible work and ratios -------------------------------------------

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


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, or ``None`` when either is missing or the denominator is not positive."""
    if numerator is None or denominator is None or not denominator > 0:
        return None
    return numerator / denominator


def pearson(first, second) -> float | None:
    """Mean over images of the Pearson correlation of two (B, H, W) stacks of maps (``None`` if undefined)."""
    first = torch.as_tensor(first, dtype=torch.float64).reshape(len(first), -1)
    second = torch.as_tensor(second, dtype=torch.float64).reshape(len(second), -1)
    if first.shape != second.shape:
        raise ValueError(f"maps to correlate have different shapes {tuple(first.shape)} and {tuple(second.shape)}")
    values = []
    for a, b in zip(first, second):
        a, b = a - a.mean(), b - b.mean()
        norm = (a.norm() * b.norm()).item()
        if norm == 0:
            return None
        values.append((a @ b).item() / norm)
    return float(np.mean(values))


def fit_loglog_slope(x, y) -> float:
    """Slope of ``log y`` against ``log x`` (least squares, ``numpy.polyfit``): time ~ x ** slope."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 2 or (x <= 0).any() or (y <= 0).any():
        raise ValueError("fitting a log-log slope needs at least two positive (x, y) pairs")
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


# --- Score-CAM's slow reference ---------------------------------------------------------------

def scorecam_reference(model, images, target=None, layer=None) -> torch.Tensor:
    """Eq. (4) one channel at a time, written plainly, as a check on the fast Score-CAM.

    Our convention: mask n is ``norm(up(A^n))``; a constant channel has no mask and gets no
    weight; the weights are the softmax over the other channels of ``F^c(X ⊙ mask_n) - F^c(X)``.
    Returns ``norm(up(ReLU(sum_n w_n A^n)))``, (B, H, W).
    """
    images = check_images(images, model)
    activations, scores = forward_activations(model, images, layer)
    target = resolve_target(target, scores)
    maps = []
    with torch.no_grad():
        for b in range(len(images)):
            image, c = images[b : b + 1], int(target[b])
            increases, channels = [], []
            for n in range(activations.shape[1]):
                upsampled = upsample(activations[b, n][None], images.shape[-2:])
                if bool(is_constant(upsampled)):
                    continue
                masked_score = model(image * normalize(upsampled)[:, None])[0, c]
                increases.append(masked_score - scores[b, c])
                channels.append(n)
            saliency = torch.zeros(activations.shape[-2:], device=images.device)
            if channels:
                weights = torch.softmax(torch.stack(increases), dim=0)
                for weight, n in zip(weights, channels):
                    saliency = saliency + weight * activations[b, n]
            maps.append(torch.relu(saliency))
    return normalize(upsample(torch.stack(maps), images.shape[-2:]))


# --- the peers (dev-only, imported lazily) -----------------------------------------------------

def peer_available(library: str) -> str | None:
    """``None`` when the peer library imports, else a note saying why it is skipped."""
    import importlib

    try:
        importlib.import_module(PEER_MODULES[library])
    except ImportError as error:
        return f"{library} is not installed ({error}); `pip install -e .[dev]` installs it"
    return None


def _last_linear_name(model) -> str | None:
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    return names[-1] if names else None


def peer_explain(library: str, method: str, model, images, target: torch.Tensor, layer: str) -> torch.Tensor:
    """The peer's map of ``method`` for ``images`` and classes ``target``: (B, H, W) in [0, 1].

    Peers run with their own default settings. Our models are frozen, so the peers' gradient
    methods get an input that requires gradients (their hooks need a graph to hang on).
    """
    import importlib

    cls = getattr(importlib.import_module(PEER_MODULES[library]), PEERS[library][method])
    inputs = images.detach().clone()
    if method in PEER_NEEDS_GRADIENTS:
        inputs.requires_grad_(True)
    with contextlib.redirect_stderr(io.StringIO()), torch.set_grad_enabled(method in PEER_NEEDS_GRADIENTS):
        if library == "pytorch-grad-cam":
            from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

            with cls(model=model, target_layers=[model.layer(layer)]) as extractor:
                maps = extractor(input_tensor=inputs, targets=[ClassifierOutputTarget(int(c)) for c in target])
            maps = torch.from_numpy(np.asarray(maps)).float()
        else:
            options = {"fc_layer": _last_linear_name(model)} if method == "cam" else {}
            with cls(model, target_layer=layer, input_shape=tuple(images.shape[1:]), **options) as extractor:
                scores = model(inputs)
                maps = extractor(class_idx=[int(c) for c in target], scores=scores)[0].detach().float().cpu()
    return normalize(upsample(maps, images.shape[-2:]))


# --- the benchmark ----------------------------------------------------------------------------

def layer_shape(model, images, layer):
    activations, scores = forward_activations(model, images, layer)
    channels, height, width = activations.shape[1:]
    nonconstant = int((~is_constant(activations)).sum(dim=1).max())
    return activations, scores, channels, height * width, nonconstant


def method_cost(name: str, channels: int, positions: int, nonconstant: int) -> dict:
    """A method's passes per image, from the registry; methods that skip constant channels
    (their ``passes`` text says so) are counted with the non-constant channels only."""
    entry = get_method(name)
    counted = nonconstant if "non-constant" in entry.passes else channels
    return dict(entry.cost(counted, positions, **entry.params))


def best_throughput(run, sizes, repeats, device) -> tuple[float, int]:
    """The lowest per-item time of ``run(n)`` over batch sizes ``sizes``: (seconds per item, best n)."""
    best = None
    for n in sorted(set(sizes)):
        per_item = median_time(lambda: run(n), repeats, 1, device) / n
        if best is None or per_item < best[0]:
            best = (per_item, n)
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


def measure(function, repeats: int, device, time_budget: float | None = None) -> dict:
    """Warm up once (measuring peak memory), then time ``repeats`` calls (fewer if over budget)."""
    with PeakMemory(device) as memory:
        start = time.perf_counter()
        result = function()
        synchronize(device)
        warmup = time.perf_counter() - start
    if time_budget is not None and warmup > 0:
        repeats = max(1, min(repeats, int(time_budget // warmup)))
    times = time_call(function, repeats, 0, device)
    return {"median_s": statistics.median(times), "times_s": times, "repeats": repeats,
            "peak_memory_mb": None if memory.peak is None else memory.peak / 2**20, "result": result}


def run_benchmark(model_name="efficientnet_lite0", layer=None, size=224, batch=1, methods=None, photos=None,
                  repeats=3, peers=True, reference=True, throughput_batches=(1, 8, 16, 32), time_budget=60.0,
                  skip_over=300.0, weights="imagenet", device=None, log=None) -> dict:
    """Run the benchmark and return its results as a JSON-ready dict (see the module docstring).

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
    model = model_name if isinstance(model_name, nn.Module) else load_model(model_name, weights=weights, device=device)
    model_name = getattr(model, "name", str(model_name))
    layer = model.default_layer if layer is None else layer
    model.split(layer)  # a clear ValueError for layers the model cannot be split at
    photos = list(photos or ["chelsea", "coffee", "astronaut", "rocket"])
    images = load_images([photos[i % len(photos)] for i in range(batch)], size=size).to(model.device)
    device = images.device
    _, scores, channels, positions, nonconstant = layer_shape(model, images, layer)
    target = resolve_target(None, scores)
    costs = {}
    for name in methods:
        try:
            costs[name] = method_cost(name, channels, positions, nonconstant)
        except Exception as error:  # a cost that cannot be evaluated: the method is still timed
            costs[name] = {"error": f"{type(error).__name__}: {error}"}
    priced = {n: c for n, c in costs.items() if "error" not in c}
    log(f"measuring pass times ({model_name}, layer {layer}, {size}px, batch {batch}, {device})")
    passes = pass_timings(model, images, layer, target, priced, repeats, throughput_batches)
    result = {
        "settings": {"model": model_name, "weights": weights, "layer": layer, "input_size": size, "batch": batch,
                     "photos": photos[:batch], "repeats": repeats, "warmup": 1, "time_budget_s": time_budget,
                     "skip_over_s": skip_over, "device": str(device), "threads": torch.get_num_threads(),
                     "torch": torch.__version__, "platform": platform.platform(),
                     "processor": platform.processor() or platform.machine(),
                     "channels": channels, "nonconstant_channels": nonconstant, "positions": positions,
                     "memory": PeakMemory(device).how,
                     "peers": "library defaults (pytorch-grad-cam ScoreCAM batch 16, AblationCAM batch 32; "
                              "torchcam ScoreCAM batch 32); gradient peers get an input requiring gradients"},
        "passes": passes,
        "methods": {},
    }
    for library in PEERS:
        result["settings"][f"{library}_skipped"] = peer_available(library) if peers else "peers not requested"
    for name in methods:
        entry = get_method(name)
        record = {"family": entry.family, "section": entry.section, "passes": entry.passes, "cost": costs[name]}
        result["methods"][name] = record
        irreducible = None
        if "error" not in costs[name]:
            irreducible = irreducible_seconds(costs[name], batch, passes["forward_s"], passes["forward_backward_s"],
                                              passes.get("forward_per_image_s"), passes.get("head_per_map_s"))
        record["irreducible_s"] = irreducible
        if irreducible is not None and skip_over is not None and irreducible > skip_over:
            record["skipped"] = f"irreducible work {irreducible:.0f} s exceeds --skip-over {skip_over:.0f} s"
            log(f"{name}: skipped ({record['skipped']})")
            continue
        log(f"{name}: timing")
        try:
            ours = measure(lambda: explain(name, model, images, layer=layer), repeats, device, time_budget)
        except (ValueError, TypeError) as error:
            record["skipped"] = f"{type(error).__name__}: {error}"
            log(f"{name}: skipped ({record['skipped']})")
            continue
        saliency = ours.pop("result").detach().cpu()
        record.update(ours)
        record["ratio_to_irreducible"] = ratio(record["median_s"], irreducible)
        record["peers"] = {}
        for library, shared in PEERS.items():
            if not peers or name not in shared or result["settings"][f"{library}_skipped"]:
                continue
            log(f"{name}: timing {library}")
            try:
                theirs = measure(lambda: peer_explain(library, name, model, images, target, layer),
                                 repeats, device, time_budget)
            except Exception as error:  # a peer failing on our model is reported, not fatal
                record["peers"][library] = {"skipped": f"{type(error).__name__}: {error}"}
                continue
            peer_map = theirs.pop("result")
            theirs["ratio"] = ratio(record["median_s"], theirs["median_s"])
            theirs["speedup"] = ratio(theirs["median_s"], record["median_s"])
            theirs["pearson"] = pearson(saliency, peer_map)
            record["peers"][library] = theirs
        if name == "scorecam" and reference:
            log("scorecam: slow reference (one channel at a time)")
            start = time.perf_counter()
            slow = scorecam_reference(model, images, target, layer).cpu()
            record["reference"] = {"seconds": time.perf_counter() - start, "pearson": pearson(saliency, slow)}
    return result


# --- sweeps for the chapter ---------------------------------------------------------------------

def machine(device=None) -> str:
    """Where timings are taken: the device and the number of CPU threads torch uses."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or "cpu")
    return f"{device.type} ({name}), {torch.get_num_threads()} CPU threads"


def time_methods(model, images, methods, layer=None, repeats=1, **params) -> dict:
    """Median seconds of ``explain(name, model, images, layer)`` for each method, after one warm-up call."""
    return {name: median_time(lambda: explain(name, model, images, layer=layer, **params.get(name, {})),
                              repeats, 1, images.device) for name in methods}


def loglog_plot(ax, x, times: dict, xlabel: str, title: str = "") -> dict:
    """Plot ``times[name]`` (one value per x) on log-log axes with fitted slopes; returns the slopes."""
    slopes = {}
    for name, values in times.items():
        pairs = [(a, t) for a, t in zip(x, values) if t is not None]
        slope = fit_loglog_slope(*zip(*pairs)) if len(pairs) > 1 else float("nan")
        slopes[name] = slope
        ax.loglog(*zip(*pairs), "o-", label=f"{name} (slope {slope:.2f})")
    ax.set_xlabel(xlabel), ax.set_ylabel("seconds (measured)"), ax.set_title(title)
    ax.legend(fontsize="small")
    return slopes


def format_table(result: dict) -> str:
    """The benchmark as a plain-text table."""
    settings = result["settings"]
    lines = [f"{settings['model']} layer {settings['layer']} ({settings['channels']} channels, "
             f"{settings['positions']} positions), {settings['input_size']}px, batch {settings['batch']}, "
             f"{settings['device']}, {settings['threads']} threads"]
    header = f"{'method':<18}{'median s':>10}{'irred. s':>10}{'ratio':>7}{'peak MB':>9}  peers (speedup x, pearson)"
    lines += [header, "-" * len(header)]
    for name, record in result["methods"].items():
        if "median_s" not in record:
            lines.append(f"{name:<18}  skipped: {record.get('skipped', '')}")
            continue
        cells = [f"{name:<18}", f"{record['median_s']:>10.4f}", _fmt(record["irreducible_s"], 10, 4),
                 _fmt(record["ratio_to_irreducible"], 7, 2), _fmt(record["peak_memory_mb"], 9, 1)]
        notes = []
        for library, peer in record.get("peers", {}).items():
            if "skipped" in peer:
                notes.append(f"{library}: failed")
            else:
                notes.append(f"{library}: {_fmt(peer['speedup'], 0, 1)}x, r={_fmt(peer['pearson'], 0, 4)}")
        if "reference" in record:
            notes.append(f"slow eq. 4 reference: r={_fmt(record['reference']['pearson'], 0, 5)}")
        lines.append("".join(cells) + "  " + "; ".join(notes))
    for library in PEERS:
        if settings.get(f"{library}_skipped"):
            lines.append(f"note: {library} skipped: {settings[f'{library}_skipped']}")
    return "\n".join(lines)


RECORDED_DIR = Path(__file__).resolve().parent.parent / "data" / "bench"


def load_recorded(name: str) -> dict:
    """A benchmark run recorded in ``data/bench/NAME.json`` (written by ``python -m camsurvey.bench``)."""
    path = RECORDED_DIR / f"{name}.json"
    if not path.is_file():
        available = sorted(p.stem for p in RECORDED_DIR.glob("*.json")) if RECORDED_DIR.is_dir() else []
        raise FileNotFoundError(f"no recorded benchmark {name!r} in {RECORDED_DIR}; available: {available}")
    return json.loads(path.read_text())


def _median(result: dict, method: str, library: str | None = None) -> float | None:
    record = result["methods"].get(method, {})
    if library is not None:
        record = record.get("peers", {}).get(library, {})
    return record.get("median_s")


def target_checks(result: dict) -> list[dict]:
    """The performance targets of this project, checked against one benchmark run.

    Each check: ``{"claim", "measured", "target", "met"}`` (``measured`` None, ``met`` None when
    the run lacks the numbers, e.g. peers not timed). Targets: Score-CAM at least 2x faster than
    each peer's Score-CAM and within Pearson 0.99 of it, and within 0.999 of the slow eq. 4
    reference; Ablation-CAM and Recipro-CAM at least 100x faster than pytorch-grad-cam's
    Ablation-CAM; every timed method within 1.2x of its irreducible work.
    """
    checks = []

    def check(claim, measured, target, at_least=True):
        met = None if measured is None else (measured >= target if at_least else measured <= target)
        checks.append({"claim": claim, "measured": measured, "target": target, "met": met})

    methods = result["methods"]
    for library in PEERS:
        if "scorecam" not in PEERS[library]:
            continue
        check(f"scorecam speedup over {library}", ratio(_median(result, "scorecam", library),
                                                        _median(result, "scorecam")), 2.0)
        peer = methods.get("scorecam", {}).get("peers", {}).get(library, {})
        check(f"scorecam Pearson with {library}", peer.get("pearson"), 0.99)
    check("scorecam Pearson with the slow eq. 4 reference",
          methods.get("scorecam", {}).get("reference", {}).get("pearson"), 0.999)
    their_ablation = _median(result, "ablationcam", "pytorch-grad-cam")
    for name in ("ablationcam", "reciprocam"):
        check(f"{name} speedup over pytorch-grad-cam's ablationcam", ratio(their_ablation, _median(result, name)),
              100.0)
    for name, record in methods.items():
        if "median_s" in record:
            check(f"{name} time / irreducible work", record.get("ratio_to_irreducible"), 1.2, at_least=False)
    return checks


def format_checks(checks: list[dict]) -> str:
    """:func:`target_checks` as lines ``claim: measured (target) met/missed``."""
    def verdict(check):
        return {True: "met", False: "MISSED", None: "not measured"}[check["met"]]

    sign = {True: ">=", False: "<="}
    lines = []
    for check in checks:
        at_least = "time / irreducible" not in check["claim"]
        lines.append(f"{check['claim']:<55}{_fmt(check['measured'], 9, 3)}  "
                     f"(target {sign[at_least]} {check['target']:g})  {verdict(check)}")
    return "\n".join(lines)


def _fmt(value, width, digits):
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"


def write_json(result: dict, path, force: bool = False) -> Path:
    """Write ``result`` to ``path``; an existing file is only replaced with ``force``."""
    path = Path(path)
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists; pass --force to overwrite it or choose another --output")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, allow_nan=False))
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m camsurvey.bench", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="efficientnet_lite0", help="a name from camsurvey.MODELS")
    parser.add_argument("--weights", default="imagenet", help="'imagenet' or 'none' (random weights, fine for timing)")
    parser.add_argument("--layer", default=None, help="layer to explain (default: the model's default layer)")
    parser.add_argument("--size", type=int, default=224, help="input size in pixels (square)")
    parser.add_argument("--batch", type=int, default=1, help="images per call")
    parser.add_argument("--methods", nargs="+", default=None, metavar="NAME",
                        help=f"methods to time (default: all registered: {' '.join(METHODS)})")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per method after one warm-up")
    parser.add_argument("--time-budget", type=float, default=60.0,
                        help="seconds of timed calls per method; repeats are cut to fit (at least 1)")
    parser.add_argument("--skip-over", type=float, default=300.0,
                        help="skip methods whose irreducible work exceeds this many seconds")
    parser.add_argument("--throughput-batches", type=int, nargs="+", default=[1, 8, 16, 32],
                        help="batch sizes tried for the best forward-pass throughput")
    parser.add_argument("--no-peers", action="store_true", help="do not time pytorch-grad-cam and torchcam")
    parser.add_argument("--no-reference", action="store_true", help="skip Score-CAM's slow eq. 4 reference")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: CUDA when present)")
    parser.add_argument("--output", default=DEFAULT_OUTPUT, help=f"JSON file to write (default {DEFAULT_OUTPUT})")
    parser.add_argument("--force", action="store_true", help="overwrite an existing output file")
    args = parser.parse_args(argv)
    threads = torch.get_num_threads()
    try:
        if Path(args.output).exists() and not args.force:
            raise FileExistsError(f"{args.output} exists; pass --force to overwrite it or choose another --output")
        if args.threads is not None:
            torch.set_num_threads(args.threads)
        weights = None if args.weights.lower() == "none" else args.weights
        result = run_benchmark(args.model, args.layer, args.size, args.batch, args.methods, repeats=args.repeats,
                               peers=not args.no_peers, reference=not args.no_reference,
                               throughput_batches=args.throughput_batches, time_budget=args.time_budget,
                               skip_over=args.skip_over, weights=weights, device=args.device,
                               log=lambda message: print(message, file=sys.stderr, flush=True))
        write_json(result, args.output, force=args.force)
    except (ValueError, TypeError, FileExistsError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        torch.set_num_threads(threads)
    print(format_table(result))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
