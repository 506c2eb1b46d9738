"""The capacity study's cost model (survey Section V.C): time = (time per pass) x (passes).

Section V.C says the cost of the gradient-free methods depends on "the number of feature
channels, input resolution, and the capacity of the neural network". The cost model makes
that testable. A method's call on a batch of ``B`` images takes

    T = B * (F * t_forward + G * t_backward + H * t_head)                         (cost model)

where ``F, G, H`` are its forward, backward and head passes per image -- its registry ``cost``,
a function of the layer's channels K and positions HW -- and ``t_forward, t_backward, t_head``
are the seconds one such pass takes for one image. The pass times belong to a *configuration*
(network, input resolution, layer, batch, device); the methods do not choose them. So they are
fitted, per configuration, from the measured times of all methods timed in it, by least squares
on the relative error (times span four orders of magnitude), and the fit is judged by how well
it predicts each measured time:

* ``error`` of a prediction: ``predicted / measured - 1`` with the fit on all records;
* ``held_out_error``: the same with the fit on every other record of its configuration
  (leave-one-out); ``None`` where the others cannot fit the passes it uses.

:attr:`CostFit.error`, the largest held-out error, is the error the model states; for least
squares, leaving a record out never brings the fit closer to it, so every in-sample error lies
within that bound. The model is our own (no paper fits one): it is the registry's pass counts
and nothing else, so a method whose time it misses does work the count does not see.

Records come from benchmark results (:func:`records_from_benchmark`, one result of
:func:`camsurvey.lab.bench.run_benchmark` per network) or are built directly
(:class:`CapacityRecord`). :func:`plot_capacity` draws time against channels K, positions HW,
input resolution and parameter count, measured and predicted. From the command line::

    python -m camsurvey.lab.bench.capacity runs/bench-lite0.json runs/bench-lite1.json runs/bench-lite2.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...methods.registry import PASS_KINDS

AXES = {"channels": "channels K of the layer", "positions": "positions HW of the layer",
        "resolution": "input resolution (px)", "parameters": "parameters of the network"}


@dataclass(frozen=True)
class CapacityRecord:
    """One measured call: ``method`` on a batch of ``batch`` images took ``seconds``."""

    method: str
    network: str
    seconds: float
    passes: dict  # per image: {"forward": F, "backward": G, "head": H} (the registry's cost)
    resolution: int
    channels: int
    positions: int
    batch: int = 1
    layer: str | None = None
    parameters: int | None = None
    device: str = "cpu"

    @property
    def configuration(self) -> tuple:
        """What the pass times depend on: (network, resolution, layer, batch, device)."""
        return (self.network, self.resolution, self.layer, self.batch, self.device)


@dataclass(frozen=True)
class Prediction:
    """The cost model's time for one record, and how far it is from the measured time."""

    record: CapacityRecord
    predicted: float
    held_out: float | None  # predicted by the fit without this record

    @property
    def error(self) -> float:
        return relative_error(self.predicted, self.record.seconds)

    @property
    def held_out_error(self) -> float | None:
        return None if self.held_out is None else relative_error(self.held_out, self.record.seconds)


@dataclass
class CostFit:
    """Fitted seconds per pass of each configuration, and every record's prediction."""

    seconds_per_pass: dict  # configuration -> {kind: seconds per pass per image}
    predictions: list = field(default_factory=list)

    @property
    def error(self) -> float:
        """The error the model states: the largest held-out relative error (``inf`` if none is held out)."""
        held_out = [abs(p.held_out_error) for p in self.predictions if p.held_out_error is not None]
        return max(held_out) if held_out else math.inf

    @property
    def largest_residual(self) -> float:
        """The largest in-sample relative error (within :attr:`error`)."""
        return max(abs(p.error) for p in self.predictions)

    def predict(self, record: CapacityRecord) -> float:
        """The model's time for ``record`` with the pass times fitted for its configuration."""
        if record.configuration not in self.seconds_per_pass:
            raise ValueError(f"no pass times were fitted for the configuration {record.configuration}")
        return predicted_seconds(record.passes, record.batch, self.seconds_per_pass[record.configuration])

    def table(self) -> str:
        """Fitted pass times and every prediction, as text (times are measured on this machine)."""
        lines = []
        for configuration, per_pass in self.seconds_per_pass.items():
            network, resolution, layer, batch, device = configuration
            times = ", ".join(f"t_{kind} = {seconds * 1e3:.3g} ms" for kind, seconds in per_pass.items())
            lines.append(f"{network} at {resolution} px, layer {layer}, batch {batch}, {device}: {times}")
        lines.append(f"{'network':<20} {'method':<18} {'passes F+G+H':>14} {'measured s':>11} {'model s':>9} "
                     f"{'error':>7} {'held out':>9}")
        for p in self.predictions:
            r = p.record
            counts = "+".join(f"{r.passes.get(kind, 0):g}" for kind in PASS_KINDS)
            held = "-" if p.held_out_error is None else f"{p.held_out_error:+.0%}"
            lines.append(f"{r.network:<20} {r.method:<18} {counts:>14} {r.seconds:>11.3g} {p.predicted:>9.3g} "
                         f"{p.error:>+7.0%} {held:>9}")
        lines.append(f"the cost model predicts every measured time within {self.error:.0%} (largest held-out error; "
                     f"largest in-sample error {self.largest_residual:.0%})")
        return "\n".join(lines)


def relative_error(predicted: float, measured: float) -> float:
    """``predicted / measured - 1``."""
    return predicted / measured - 1


def predicted_seconds(passes: dict, batch: int, seconds_per_pass: dict) -> float:
    """The cost model: ``T = B * (F t_forward + G t_backward + H t_head)``."""
    return batch * sum(passes.get(kind, 0) * seconds_per_pass.get(kind, 0.0) for kind in PASS_KINDS)


def fit_seconds_per_pass(records) -> dict:
    """Seconds per pass of each kind for records of one configuration: least squares on the relative error.

    Only the kinds some record uses are fitted. Raises a ValueError when the records cannot
    separate them (e.g. only methods with one forward and one backward pass).
    """
    records = list(records)
    if not records:
        raise ValueError("fitting pass times needs at least one record")
    kinds = [kind for kind in PASS_KINDS if any(r.passes.get(kind, 0) for r in records)]
    design = np.array([[r.batch * r.passes.get(kind, 0) for kind in kinds] for r in records], dtype=float)
    measured = np.array([r.seconds for r in records], dtype=float)
    if not np.isfinite(measured).all() or (measured <= 0).any():
        raise ValueError(f"measured times must be positive and finite, got {measured.tolist()}")
    weighted = design / measured[:, None]  # each row divided by its time: residuals become relative errors
    if np.linalg.matrix_rank(weighted) < len(kinds):
        methods = sorted({r.method for r in records})
        raise ValueError(f"the records ({methods}) cannot separate the {kinds} pass times: add methods with "
                         "other mixes of passes (e.g. Score-CAM, Ablation-CAM, Recipro-CAM besides Grad-CAM)")
    solution, *_ = np.linalg.lstsq(weighted, np.ones(len(records)), rcond=None)
    return {kind: float(seconds) for kind, seconds in zip(kinds, solution)}


def held_out_prediction(records: list, index: int) -> float | None:
    """Record ``index``'s time predicted from the other records of its configuration, or ``None``."""
    others = records[:index] + records[index + 1:]
    record = records[index]
    try:
        per_pass = fit_seconds_per_pass(others)
    except ValueError:
        return None
    if any(record.passes.get(kind, 0) and kind not in per_pass for kind in PASS_KINDS):
        return None
    return predicted_seconds(record.passes, record.batch, per_pass)


def fit_cost_model(records) -> CostFit:
    """Fit the cost model to benchmark ``records`` (:class:`CapacityRecord`), one configuration at a time."""
    records = list(records)
    if not records:
        raise ValueError("the cost model needs benchmark records; none were given")
    by_configuration: dict[tuple, list] = {}
    for record in records:
        by_configuration.setdefault(record.configuration, []).append(record)
    fit = CostFit({})
    for configuration, group in by_configuration.items():
        fit.seconds_per_pass[configuration] = fit_seconds_per_pass(group)
        for index, record in enumerate(group):
            fit.predictions.append(Prediction(record, fit.predict(record), held_out_prediction(group, index)))
    return fit


def records_from_benchmark(result: dict, parameters: int | None = None) -> list:
    """The :class:`CapacityRecord` of every timed method in one :func:`run_benchmark` result.

    ``parameters``: the network's parameter count, when the result does not record it (by
    default it is counted on the architecture named in the result, with random weights).
    Methods that were skipped or whose cost could not be counted are left out.
    """
    settings = result["settings"]
    if parameters is None:
        parameters = settings.get("parameters") or parameter_count(settings["model"])
    records = []
    for method, entry in result["methods"].items():
        cost = entry.get("cost", {})
        if "median_s" not in entry or "error" in cost:
            continue
        records.append(CapacityRecord(
            method=method, network=settings["model"], seconds=float(entry["median_s"]),
            passes={kind: cost.get(kind, 0) for kind in PASS_KINDS}, resolution=int(settings["input_size"]),
            channels=int(settings["channels"]), positions=int(settings["positions"]), batch=int(settings["batch"]),
            layer=settings.get("layer"), parameters=parameters, device=settings.get("device", "cpu")))
    return records


def parameter_count(model_name: str) -> int | None:
    """Parameters of the architecture ``model_name`` (``None`` for a model camsurvey does not know)."""
    from ...models import MODELS, load_model

    if model_name not in MODELS:
        return None
    return sum(p.numel() for p in load_model(model_name, weights=None, device="cpu").parameters())


def plot_capacity(fit: CostFit, axes=None, methods=None, quantities=tuple(AXES)):
    """Time against each of ``quantities`` (channels K, positions HW, input resolution, parameter
    count): measured (dots) and the cost model's prediction (crosses), one colour a method, log-log.
    Returns the figure."""
    import matplotlib.pyplot as plt

    unknown = [q for q in quantities if q not in AXES]
    if unknown:
        raise ValueError(f"unknown quantities {unknown}; choose from {list(AXES)}")
    if axes is None:
        _, axes = plt.subplots(1, len(quantities), figsize=(4 * len(quantities), 3.6), squeeze=False)
        axes = axes[0]
    names = methods or list(dict.fromkeys(p.record.method for p in fit.predictions))
    colours = plt.get_cmap("tab20")
    for ax, quantity in zip(axes, quantities):
        for number, name in enumerate(names):
            rows = sorted((getattr(p.record, quantity), p.record.seconds, p.predicted) for p in fit.predictions
                          if p.record.method == name and getattr(p.record, quantity) is not None)
            if not rows:
                continue
            x, measured, predicted = zip(*rows)
            colour = colours(number % 20)
            ax.plot(x, measured, "o-", color=colour, label=name)
            ax.plot(x, predicted, "x", color=colour, markersize=8)
        ax.set_xscale("log"), ax.set_yscale("log")
        ax.set_xlabel(AXES[quantity]), ax.set_ylabel("seconds per call")
    axes[0].set_title("measured (o) and cost model (x)", fontsize="small")
    axes[-1].legend(fontsize="x-small", loc="center left", bbox_to_anchor=(1.02, 0.5))
    figure = axes[0].figure
    figure.tight_layout()
    return figure


# The capacity study as recorded for the book: one `camsurvey bench` result per network, in
# data/bench/capacity/ (the performance chapter reads them; the command is in its text).
RECORDED_STUDY = "capacity"


def recorded_study() -> list[dict]:
    """The recorded capacity study, one benchmark result per network, the smallest network first."""
    from .report import RECORDED_DIR

    paths = sorted((RECORDED_DIR / RECORDED_STUDY).glob("*.json"))
    if not paths:
        raise FileNotFoundError(f"no recorded capacity study in {RECORDED_DIR / RECORDED_STUDY}; record one with "
                                "`camsurvey bench --model NAME --size RESOLUTION --no-peers --output FILE` per network")
    results = [json.loads(path.read_text()) for path in paths]
    return sorted(results, key=lambda result: parameter_count(result["settings"]["model"]) or 0)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="camsurvey bench capacity",
                                     description="Fit the cost model T = B (F t_f + G t_b + H t_h) to benchmark results.")
    parser.add_argument("results", nargs="+", help="JSON files written by `camsurvey bench` (one per network)")
    args = parser.parse_args(argv)
    try:
        records = [r for path in args.results for r in records_from_benchmark(json.loads(Path(path).read_text()))]
        fit = fit_cost_model(records)
    except (OSError, ValueError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(fit.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
