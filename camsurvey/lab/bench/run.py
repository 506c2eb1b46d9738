"""``run_benchmark``: every method's time against its irreducible work and the peers, in one run.

For each method, its *contenders* -- our implementation, each peer's, the passes its irreducible
work is priced with, and (:data:`.report.COMPANIONS`) our methods that targets compare with its
peers -- are called once each to warm up (peak memory, maps for the Pearson correlations), then
timed in interleaved rounds (:mod:`.interleave`) while :class:`.load.LoadMonitor` records what
the machine was doing. Every ratio is the median of the per-round ratios, with their spread.
"""

from __future__ import annotations

import dataclasses
import functools
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ...common import check_int
from ...images import load_images
from ...methods import METHODS, explain, get_method
from ...metrics import mean_pearson
from ...models import MODELS, default_device, load_model
from ...models.base import CamModel
from ...models.wrap import WrappedModel, plain_torchvision, wrap
from ...plumbing import resolve_target
from .costs import (
    irreducible_in_round,
    irreducible_seconds,
    layer_shape,
    method_cost,
    needed_passes,
    pass_calls,
    pass_timings,
)
from .interleave import DISAGREEMENT, compare, interleave, rounds_within, spread_factor
from .load import BUSY_LOAD, LoadMonitor
from .peers import PEERS, peer_available, peer_explain, scorecam_reference
from .report import COMPANIONS
from .timing import PeakMemory, synchronize, warm_up

DEFAULT_PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")
PEER_SETTINGS = ("library defaults (pytorch-grad-cam ScoreCAM batch 16, AblationCAM batch 32; "
                 "torchcam ScoreCAM batch 32); gradient peers get an input requiring gradients")
OURS = "camsurvey"  # our implementation's name among a method's contenders
TWIN = "same network as a camsurvey model"  # the contender a plain module is compared with
PLAIN_SUFFIX = "-random"  # "resnet50-random": torchvision's resnet50 as a plain module, random weights


@dataclass(frozen=True)
class BenchSettings:
    """What :func:`run_benchmark` measures, and how; each field is also a keyword of ``run_benchmark``."""

    layer: str | None = None  # layer to explain (None: the model's default layer)
    size: int = 224  # input side in pixels
    batch: int = 1  # images per call
    methods: tuple[str, ...] | None = None  # names from METHODS (None: all)
    photos: tuple[str, ...] | None = None  # photos cycled to fill the batch (None: DEFAULT_PHOTOS)
    repeats: int = 3  # interleaved rounds after one warm-up call of each contender
    peers: bool = True  # also time pytorch-grad-cam's and torchcam's versions
    reference: bool = True  # also run Score-CAM's slow eq. 4 reference and correlate
    throughput_batches: tuple[int, ...] = (1, 4, 8, 16, 32)  # batch sizes tried for the best forward throughput
    time_budget: float | None = 60.0  # seconds of timed calls per contender; rounds are cut to fit (>= 1)
    skip_over: float | None = 300.0  # skip methods whose irreducible work exceeds this many seconds
    weights: str | None = "imagenet"  # for a model given by name ("imagenet" or None: random)
    device: str | None = None  # for a model given by name (None: CUDA when present)
    threads: int | None = None  # torch CPU threads during the run (None: leave torch's setting)
    seed: int = 0  # seed of the order of the contenders in each round
    disagreement: float = DISAGREEMENT  # flag a ratio whose per-round values span more than this factor
    busy_load: float = BUSY_LOAD  # flag a method timed while others' load exceeded this many cores

    def __post_init__(self):
        for name in ("methods", "photos", "throughput_batches"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), tuple):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        for name in ("size", "batch", "repeats"):
            check_int(getattr(self, name), name)
        check_int(self.seed, "seed", minimum=0)
        if self.threads is not None:
            check_int(self.threads, "threads", hint="or None to keep torch's thread count")
        for n in self.throughput_batches:
            check_int(n, "a throughput batch size")
        for name in self.methods or ():
            get_method(name)  # a clear ValueError for unknown names
        if not self.disagreement >= 1 or not self.busy_load >= 0:
            raise ValueError(f"disagreement must be a factor >= 1 and busy_load a number of cores >= 0, "
                             f"got {self.disagreement!r} and {self.busy_load!r}")


@dataclass
class Run:
    """What every method's timing needs: the prepared model and batch, and what was measured once."""

    model: nn.Module
    images: torch.Tensor
    layer: str
    target: torch.Tensor
    settings: BenchSettings
    methods: list[str]
    costs: dict
    passes: dict
    peer_skips: dict
    log: Callable[[str], None]
    twin: CamModel | None = None  # for a plain module: the same network as a camsurvey model


def resolve_model(model, settings: BenchSettings) -> tuple[nn.Module, CamModel | None]:
    """``(model, twin)``. ``model``: an object as given, a name from ``camsurvey.MODELS``, or
    ``"ARCH-random"``: torchvision's ARCH built as the plain module torchvision builds, random
    weights, seen through :func:`camsurvey.wrap` as a user's own network is. Its ``twin`` is the
    same network, with the same weights, as a camsurvey model (``load_model(ARCH, weights=None)``)
    where camsurvey has one, so the cost of taking any module can be timed beside it."""
    if isinstance(model, nn.Module):
        return model, None
    if not (isinstance(model, str) and model.endswith(PLAIN_SUFFIX) and model not in MODELS):
        return load_model(model, weights=settings.weights, device=settings.device), None
    architecture = model[: -len(PLAIN_SUFFIX)]
    device = default_device() if settings.device is None else torch.device(settings.device)
    plain = wrap(plain_torchvision(architecture), name=model).to(device)
    twin = load_model(architecture, weights=None, device=device) if architecture in MODELS else None
    return plain, twin


def prepare(model, settings: BenchSettings):
    """The model, its layer, and a batch of ``settings.batch`` photos at ``settings.size`` px on its device."""
    if not isinstance(model, nn.Module):
        model = load_model(model, weights=settings.weights, device=settings.device)
    photos = list(settings.photos or DEFAULT_PHOTOS)
    images = load_images([photos[i % len(photos)] for i in range(settings.batch)], size=settings.size)
    images = images.to(model.device)
    if settings.layer is not None:
        layer = settings.layer
    elif isinstance(model, WrappedModel):
        layer = model.find_default_layer(images)  # a plain module's CAM layer, as explain finds it
    else:
        layer = model.default_layer
    model.split(layer)  # a clear ValueError for layers the model cannot be split at
    return model, layer, photos[: settings.batch], images


def method_costs(methods, channels: int, positions: int, nonconstant: int) -> dict:
    """Each method's passes per image; a cost that cannot be evaluated is recorded as an error."""
    costs = {}
    for name in methods:
        try:
            costs[name] = method_cost(name, channels, positions, nonconstant)
        except Exception as error:  # the method is still timed
            costs[name] = {"error": f"{type(error).__name__}: {error}"}
    return costs


def estimated_irreducible(cost: dict, batch: int, passes: dict) -> float | None:
    """A method's irreducible work priced with the pass times measured before the methods (for ``skip_over``)."""
    if "error" in cost:
        return None
    return irreducible_seconds(cost, batch, passes["forward_s"], passes["forward_backward_s"],
                               passes.get("forward_per_image_s"), passes.get("head_per_map_s"))


def warm_contenders(name: str, run: Run, record: dict) -> tuple[dict, dict]:
    """Warm up every contender of ``name`` once: ``(contenders to time, warm-up seconds)``.

    Fills ``record`` with our peak memory and, per peer, its peak memory and the Pearson
    correlation of its map with ours; a peer that fails is noted and left out. Raises the
    ValueError or TypeError of a method that cannot run here.
    """
    model, images, layer = run.model, run.images, run.layer
    contenders: dict[str, Callable[[], object]] = {OURS: lambda: explain(name, model, images, layer=layer)}
    saliency, seconds, record["peak_memory_mb"] = warm_up(contenders[OURS], images.device)
    saliency = saliency.detach().cpu()
    warmups = {OURS: seconds}
    record["peers"] = {}
    for library, shared in PEERS.items():
        if name not in shared or run.peer_skips[library]:
            continue
        call = functools.partial(peer_explain, library, name, model, images, run.target, layer)
        try:
            peer_map, warmups[library], memory = warm_up(call, images.device)
        except Exception as error:  # a peer failing on our model is reported, not fatal
            record["peers"][library] = {"skipped": f"{type(error).__name__}: {error}"}
            continue
        contenders[library] = call
        record["peers"][library] = {"peak_memory_mb": memory, "pearson": mean_pearson(saliency, peer_map)}
    if "error" not in run.costs[name]:
        calls = pass_calls(model, images, layer, run.target, run.passes)
        for kind in needed_passes(run.costs[name]):
            contenders[f"pass {kind}"] = calls[kind]
    if run.twin is not None:
        contenders[TWIN] = functools.partial(explain, name, run.twin, images, layer=layer)
    for other in COMPANIONS.get(name, ()):
        if other in run.methods and any(library in contenders for library in PEERS):
            contenders[f"{OURS} {other}"] = functools.partial(explain, other, model, images, layer=layer)
    for contender, function in contenders.items():
        if contender not in warmups:
            warmups[contender] = warm_up(function, images.device)[1]
    if name == "scorecam" and run.settings.reference:
        run.log("scorecam: slow reference (one channel at a time)")
        start = time.perf_counter()
        slow = scorecam_reference(model, images, run.target, layer).cpu()
        record["reference"] = {"seconds": time.perf_counter() - start, "pearson": mean_pearson(saliency, slow)}
    return contenders, warmups


def put_ratio(record: dict, key: str, summary: dict, what: str, flags: list[str]) -> None:
    """``record[key]``: the median per-pair ratio; ``record[key + "_spread"]``: [min, max]; a flag when pairs disagree."""
    record[key], record[f"{key}_spread"] = summary["median"], [summary["min"], summary["max"]]
    if summary["disagree"]:
        flags.append(f"{what}: pairs disagree ({summary['min']:.3g} to {summary['max']:.3g}, "
                     f"{spread_factor([summary['min'], summary['max']]):.2f}x apart)")


def summarize(name: str, run: Run, record: dict, times: dict) -> list[str]:
    """Fill ``record`` with the medians and per-pair ratios of the interleaved ``times``; returns the flags."""
    factor, flags = run.settings.disagreement, list[str]()
    ours = times[OURS]
    record.update({"median_s": statistics.median(ours), "times_s": ours, "repeats": len(ours)})
    if "error" not in run.costs[name]:
        passes = {kind[len("pass "):]: seconds for kind, seconds in times.items() if kind.startswith("pass ")}
        irreducible = [irreducible_in_round(run.costs[name], len(run.images), {k: t[i] for k, t in passes.items()},
                                            run.passes) for i in range(len(ours))]
        record["irreducible_s"], record["irreducible_times_s"] = statistics.median(irreducible), irreducible
        put_ratio(record, "ratio_to_irreducible", compare(ours, irreducible, factor), "time / irreducible work",
                  flags)
    for library, peer in record["peers"].items():
        if library in times:
            peer.update({"median_s": statistics.median(times[library]), "times_s": times[library]})
            put_ratio(peer, "speedup", compare(times[library], ours, factor), f"speedup over {library}", flags)
    if TWIN in times:
        put_ratio(record, "ratio_to_camsurvey_model", compare(ours, times[TWIN], factor),
                  "time on the plain module / time on the camsurvey model", flags)
    record["companions"] = {}
    for contender, seconds in times.items():
        if contender.startswith(f"{OURS} "):
            other = contender[len(OURS) + 1:]
            companion: dict = {"median_s": statistics.median(seconds), "times_s": seconds, "peers": {}}
            for library in record["peers"]:
                if library in times:
                    companion["peers"][library] = {}
                    put_ratio(companion["peers"][library], "speedup", compare(times[library], seconds, factor),
                              f"{other} speedup over {library}'s {name}", flags)
            record["companions"][other] = companion
    return flags


def time_method(name: str, run: Run, seed: int) -> dict:
    """One method's record: its time, peak memory, and its ratios to its irreducible work and to each
    peer, all timed in the same interleaved rounds, with what the machine was doing meanwhile."""
    entry, settings = get_method(name), run.settings
    estimate = estimated_irreducible(run.costs[name], len(run.images), run.passes)
    record: dict = {"family": entry.family, "section": entry.section, "passes": entry.passes,
                    "irreducible_s": estimate}
    if estimate is not None and settings.skip_over is not None and estimate > settings.skip_over:
        record["skipped"] = f"irreducible work {estimate:.0f} s exceeds --skip-over {settings.skip_over:.0f} s"
        run.log(f"{name}: skipped ({record['skipped']})")
        return record
    monitor = LoadMonitor(torch.get_num_threads(), settings.busy_load)
    monitor.sample()
    run.log(f"{name}: warming up")
    try:
        contenders, warmups = warm_contenders(name, run, record)
    except (ValueError, TypeError) as error:
        record["skipped"] = f"{type(error).__name__}: {error}"
        run.log(f"{name}: skipped ({record['skipped']})")
        return record
    rounds = rounds_within(settings.repeats, settings.time_budget, list(warmups.values()))
    run.log(f"{name}: {rounds} interleaved round(s) of {', '.join(contenders)}")
    timed = interleave(contenders, rounds, seed, synchronize=lambda: synchronize(run.images.device),
                       after_call=monitor.sample)
    monitor.sample()
    flags = summarize(name, run, record, timed["times_s"])
    record["warmup_s"], record["order"], record["load"] = warmups, timed["order"], monitor.summary()
    if record["load"]["busy"]:
        flags.append(f"busy: other processes kept {record['load']['others_load']:.1f} cores' worth of tasks "
                     f"runnable (more than {settings.busy_load:g})")
    record["flags"] = flags
    for flag in flags:
        run.log(f"{name}: flag: {flag}")
    return record


def run_benchmark(model="efficientnet_lite0", settings: BenchSettings | None = None, *, log=None,
                  **overrides) -> dict:
    """Run the benchmark and return its results as a JSON-ready dict (see :mod:`camsurvey.lab.bench`).

    ``model``: a model object or a name from ``camsurvey.MODELS``; ``settings``: a
    :class:`BenchSettings`, whose fields can also be given (or overridden) as keywords,
    e.g. ``run_benchmark("resnet18", size=64, methods=["gradcam"], peers=False)``.
    ``log``: called with a line of progress at each step.
    """
    if settings is not None and not isinstance(settings, BenchSettings):
        raise TypeError(f"settings must be a BenchSettings (or give its fields as keywords), got {settings!r}")
    fields = {field.name for field in dataclasses.fields(BenchSettings)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise TypeError(f"run_benchmark has no setting {unknown}; the settings are {sorted(fields)}")
    settings = dataclasses.replace(settings or BenchSettings(), **overrides)
    threads = torch.get_num_threads()
    try:
        if settings.threads is not None:
            torch.set_num_threads(settings.threads)
        return benchmark(model, settings, log or (lambda message: None))
    finally:
        torch.set_num_threads(threads)


def benchmark(model, settings: BenchSettings, log) -> dict:
    """:func:`run_benchmark` once its settings are checked and its threads set."""
    started = time.perf_counter()
    methods = list(METHODS) if settings.methods is None else list(settings.methods)
    model, twin = resolve_model(model, settings)
    model, layer, photos, images = prepare(model, settings)
    _, scores, channels, positions, nonconstant = layer_shape(model, images, layer)
    target = resolve_target(None, scores)
    costs = method_costs(methods, channels, positions, nonconstant)
    priced = {n: c for n, c in costs.items() if "error" not in c}
    log(f"measuring pass times ({model.name}, layer {layer}, {settings.size}px, batch {settings.batch}, "
        f"{images.device}, {torch.get_num_threads()} threads)")
    passes = pass_timings(model, images, layer, target, priced, settings.repeats, settings.throughput_batches)
    peer_skips = {library: peer_available(library) if settings.peers else "peers not requested" for library in PEERS}
    run = Run(model, images, layer, target, settings, methods, costs, passes, peer_skips, log, twin)
    if twin is not None:
        twin.layer(layer)  # a clear ValueError where the twin has no layer of that name
    records = {name: {"cost": costs[name], **time_method(name, run, settings.seed + index)}
               for index, name in enumerate(methods)}
    return {"settings": settings_record(run, photos, channels, positions, nonconstant), "passes": passes,
            "methods": records, "elapsed_s": time.perf_counter() - started}


def settings_record(run: Run, photos, channels: int, positions: int, nonconstant: int) -> dict:
    settings = run.settings
    return {"model": run.model.name, "weights": settings.weights, "layer": run.layer, "input_size": settings.size,
            "batch": settings.batch, "photos": photos, "repeats": settings.repeats, "warmup": 1,
            "protocol": (f"interleaved: per method, one warm-up call of each contender, then up to "
                         f"{settings.repeats} rounds each calling every contender once in an order shuffled "
                         f"with seed {settings.seed} (+ the method's index); a ratio is the median of the "
                         f"per-round ratios, its spread their min and max"),
            "seed": settings.seed, "disagreement_factor": settings.disagreement, "busy_load": settings.busy_load,
            "time_budget_s": settings.time_budget, "skip_over_s": settings.skip_over,
            "device": str(run.images.device), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "channels": channels, "nonconstant_channels": nonconstant, "positions": positions,
            "memory": PeakMemory(run.images.device).how, "peers": PEER_SETTINGS,
            "plain_module": run.twin is not None or isinstance(run.model, WrappedModel),
            "twin": None if run.twin is None else run.twin.name,
            **{f"{library}_skipped": skip for library, skip in run.peer_skips.items()}}
