"""The capacity study's cost model: T = B (F t_forward + G t_backward + H t_head), fitted per configuration.

Synthetic records follow a known cost law, so the fit must recover it; no test asserts a timing.
"""

from __future__ import annotations

import json
import re

import matplotlib.pyplot as plt
import numpy as np
import pytest

import camsurvey as cs
from camsurvey.lab.bench import capacity
from camsurvey.lab.bench.capacity import CapacityRecord

# Three networks at their resolutions, with their default layer's K and HW, and (made-up) true
# seconds per pass per image that grow with capacity.
NETWORKS = {
    "efficientnet_lite0": dict(resolution=224, channels=1280, positions=49, parameters=4_652_008,
                               truth={"forward": 0.010, "backward": 0.014, "head": 0.00002}),
    "efficientnet_lite1": dict(resolution=240, channels=1280, positions=64, parameters=5_416_680,
                               truth={"forward": 0.016, "backward": 0.022, "head": 0.00003}),
    "efficientnet_lite2": dict(resolution=260, channels=1280, positions=81, parameters=6_092_072,
                               truth={"forward": 0.024, "backward": 0.033, "head": 0.00004}),
}


def passes(method: str, channels: int, positions: int) -> dict:
    """Per-image passes of a few methods, from the registry (the one source of a method's cost)."""
    return cs.METHODS[method].count_passes(channels, positions)


METHODS = ("gradcam", "gradcam++", "scorecam", "ablationcam", "reciprocam", "smoothgrad")


def synthetic_records(noise: float = 0.0, seed: int = 0, batch: int = 1, slow: dict | None = None) -> list:
    """Records whose times are the cost law, times ``(1 + noise * u)`` with u uniform in [-1, 1]."""
    generator = np.random.default_rng(seed)
    records = []
    for network, spec in NETWORKS.items():
        for method in METHODS:
            counts = passes(method, spec["channels"], spec["positions"])
            seconds = capacity.predicted_seconds(counts, batch, spec["truth"])
            seconds *= (1 + noise * generator.uniform(-1, 1)) * (slow or {}).get(method, 1.0)
            records.append(CapacityRecord(method, network, seconds, counts, spec["resolution"], spec["channels"],
                                          spec["positions"], batch=batch, layer="conv_head",
                                          parameters=spec["parameters"]))
    return records


def test_a_known_cost_law_is_recovered_exactly():
    fit = capacity.fit_cost_model(synthetic_records(batch=2))
    assert len(fit.seconds_per_pass) == 3
    for configuration, per_pass in fit.seconds_per_pass.items():
        truth = NETWORKS[configuration[0]]["truth"]
        assert per_pass.keys() == truth.keys()
        for kind in truth:
            assert per_pass[kind] == pytest.approx(truth[kind], rel=1e-9)
    assert fit.largest_residual < 1e-9 and fit.error < 1e-9


def test_the_cost_model_is_time_per_pass_times_passes():
    per_pass = {"forward": 0.5, "backward": 2.0, "head": 0.01}
    assert capacity.predicted_seconds({"forward": 3, "backward": 1, "head": 100}, 4, per_pass) == \
        pytest.approx(4 * (3 * 0.5 + 1 * 2.0 + 100 * 0.01))


@pytest.mark.parametrize("seed", range(5))
def test_the_stated_error_bounds_every_residual_of_the_fit(seed):
    fit = capacity.fit_cost_model(synthetic_records(noise=0.10, seed=seed))
    residuals = [abs(p.error) for p in fit.predictions]
    assert max(residuals) <= fit.error + 1e-12
    for prediction in fit.predictions:  # leaving a record out never brings the fit closer to it
        if prediction.held_out_error is not None:
            assert abs(prediction.held_out_error) >= abs(prediction.error) - 1e-12
    for configuration, per_pass in fit.seconds_per_pass.items():  # 10% noise: the law is still found
        truth = NETWORKS[configuration[0]]["truth"]
        assert per_pass["forward"] == pytest.approx(truth["forward"], rel=0.15)
        assert per_pass["head"] == pytest.approx(truth["head"], rel=0.25)


def test_the_printed_error_is_the_bound_and_covers_every_printed_residual():
    fit = capacity.fit_cost_model(synthetic_records(noise=0.05, seed=1))
    text = fit.table()
    stated = float(re.search(r"predicts every measured time within (\d+)%", text).group(1)) / 100
    printed = [abs(float(e)) / 100 for e in re.findall(r" ([+-]\d+)% +(?:[+-]\d+%|-)$", text, re.MULTILINE)]
    assert len(printed) == len(fit.predictions)
    assert stated == pytest.approx(fit.error, abs=0.005) and max(printed) <= stated + 0.005
    assert "t_forward = " in text and "efficientnet_lite2 at 260 px" in text


def test_a_method_that_does_work_its_passes_do_not_count_stands_out():
    fit = capacity.fit_cost_model(synthetic_records(noise=0.02, slow={"gradcam++": 3.0}))
    worst = max(fit.predictions, key=lambda p: abs(p.held_out_error or 0))
    assert worst.record.method == "gradcam++" and abs(worst.held_out_error) > 0.5
    assert fit.error > 0.5  # the model does not claim an accuracy it lacks


def test_records_that_cannot_separate_the_pass_times_are_refused():
    gradient_only = [r for r in synthetic_records() if r.method in ("gradcam", "gradcam++")]
    with pytest.raises(ValueError, match=r"cannot separate .*forward.*backward"):
        capacity.fit_cost_model(gradient_only)
    with pytest.raises(ValueError, match="needs benchmark records"):
        capacity.fit_cost_model([])


def test_a_record_nothing_else_can_predict_has_no_held_out_error():
    records = [r for r in synthetic_records(noise=0.05) if r.method in ("gradcam", "scorecam", "reciprocam")]
    fit = capacity.fit_cost_model(records)
    reciprocam = [p for p in fit.predictions if p.record.method == "reciprocam"]
    assert all(p.held_out is None for p in reciprocam)  # the only method with head passes
    assert all(abs(p.error) < 1e-9 for p in reciprocam)  # and so fitted exactly


def test_nonpositive_times_are_refused():
    record = synthetic_records()[0]
    bad = CapacityRecord(record.method, record.network, 0.0, record.passes, record.resolution, record.channels,
                         record.positions)
    with pytest.raises(ValueError, match="positive and finite"):
        capacity.fit_seconds_per_pass([bad])


def test_prediction_for_an_unfitted_configuration_is_refused():
    fit = capacity.fit_cost_model(synthetic_records())
    record = synthetic_records()[0]
    other = CapacityRecord(record.method, "resnet101", 1.0, record.passes, 224, 2048, 49)
    with pytest.raises(ValueError, match="no pass times were fitted"):
        fit.predict(other)


def benchmark_result(network: str, spec: dict) -> dict:
    """A result shaped like run_benchmark's (the fields the cost model reads)."""
    methods = {}
    for method in METHODS:
        counts = passes(method, spec["channels"], spec["positions"])
        methods[method] = {"cost": counts, "median_s": capacity.predicted_seconds(counts, 1, spec["truth"])}
    methods["scorecam"] = {"cost": methods["scorecam"]["cost"], "skipped": "irreducible work exceeds --skip-over"}
    methods["sess"] = {"cost": {"error": "ValueError: cannot count"}, "median_s": 1.0}
    settings = {"model": network, "input_size": spec["resolution"], "channels": spec["channels"],
                "positions": spec["positions"], "batch": 1, "layer": "conv_head", "device": "cpu"}
    return {"settings": settings, "passes": {}, "methods": methods}


def test_records_from_benchmark_results_leave_out_skipped_and_uncounted_methods():
    spec = NETWORKS["efficientnet_lite1"]
    records = capacity.records_from_benchmark(benchmark_result("efficientnet_lite1", spec))
    assert {r.method for r in records} == set(METHODS) - {"scorecam"}
    assert {(r.resolution, r.channels, r.positions, r.layer) for r in records} == {(240, 1280, 64, "conv_head")}
    assert {r.parameters for r in records} == {5_416_680}  # counted on the architecture
    assert capacity.parameter_count("not_a_model") is None


def test_the_command_prints_the_fit_of_benchmark_files(tmp_path, capsys):
    paths = []
    for network, spec in NETWORKS.items():
        path = tmp_path / f"{network}.json"
        path.write_text(json.dumps(benchmark_result(network, spec)))
        paths.append(str(path))
    assert capacity.main(paths) == 0
    out = capsys.readouterr().out
    assert "predicts every measured time within 0%" in out and out.count("reciprocam") == 3
    assert capacity.main([str(tmp_path / "missing.json")]) == 2
    assert "error:" in capsys.readouterr().err


def test_plot_shows_time_against_channels_positions_resolution_and_parameters():
    fit = capacity.fit_cost_model(synthetic_records(noise=0.05))
    figure = capacity.plot_capacity(fit)
    axes = figure.axes
    assert [ax.get_xlabel() for ax in axes] == list(capacity.AXES.values())
    resolution_axis = axes[2]
    assert len(resolution_axis.lines) == 2 * len(METHODS)  # measured and predicted, per method
    xs = {tuple(line.get_xdata()) for line in resolution_axis.lines}
    assert (224, 240, 260) in xs
    plt.close(figure)
    with pytest.raises(ValueError, match="unknown quantities"):
        capacity.plot_capacity(fit, quantities=("flops",))


def test_cost_model_fits_a_real_benchmark_run():
    from camsurvey.lab.bench import run_benchmark

    model = cs.load_model("scenes_cnn", weights=None, device="cpu")
    result = run_benchmark(model, size=64, methods=["gradcam", "scorecam", "ablationcam", "reciprocam"], repeats=1,
                           peers=False, reference=False, throughput_batches=(1,), time_budget=2.0, layer="block5")
    records = capacity.records_from_benchmark(result)
    assert {r.method for r in records} == {"gradcam", "scorecam", "ablationcam", "reciprocam"}
    assert {r.parameters for r in records} == {sum(p.numel() for p in model.parameters())}
    fit = capacity.fit_cost_model(records)
    assert all(abs(p.error) <= fit.error + 1e-12 for p in fit.predictions)
    assert set(fit.seconds_per_pass[records[0].configuration]) == {"forward", "backward", "head"}


def test_the_recorded_study_is_three_networks_each_at_its_resolution_and_the_printed_error_covers_it():
    """The book's capacity study (data/bench/capacity/): Lite0, Lite1 and Lite2 at their training
    resolutions, timed by the benchmark, and the cost model fitted to them predicts every recorded
    time within the error it prints."""
    results = capacity.recorded_study()
    assert [(r["settings"]["model"], r["settings"]["input_size"]) for r in results] == [
        ("efficientnet_lite0", 224), ("efficientnet_lite1", 240), ("efficientnet_lite2", 260)]
    fit = capacity.fit_cost_model([record for result in results for record in capacity.records_from_benchmark(result)])
    assert {p.record.method for p in fit.predictions} >= {"gradcam", "scorecam", "ablationcam", "reciprocam"}
    assert np.isfinite(fit.error)
    assert all(abs(p.error) <= fit.error + 1e-12 for p in fit.predictions)
    printed = re.search(r"within (\d+)%", fit.table()).group(1)
    assert int(printed) == round(100 * fit.error)
