"""The benchmark (camsurvey.lab.bench): it runs end to end, its arithmetic is right, it never
overwrites results, and Score-CAM agrees with a slow one-channel-at-a-time eq. (4).

No test asserts a timing: speed depends on the machine and its load.
"""

import json
import math

import pytest
import torch

import camsurvey as cs
from camsurvey import metrics
from camsurvey.lab import bench

TINY = ["--size", "64", "--layer", "block5", "--methods", "gradcam", "reciprocam", "--repeats", "1",
        "--throughput-batches", "1", "2", "--threads", "1"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "bench.json"
    code = bench.main(TINY + ["--output", str(path)])
    return code, path


def test_bench_runs_end_to_end_and_writes_json_with_every_field(tiny_run, capsys):
    code, path = tiny_run
    assert code == 0
    result = json.loads(path.read_text())
    settings = result["settings"]
    assert settings["input_size"] == 64 and settings["layer"] == "block5" and settings["batch"] == 1
    assert settings["device"] and settings["threads"] >= 1 and settings["channels"] == 80
    assert result["passes"]["forward_s"] > 0 and result["passes"]["forward_backward_s"] > 0
    assert result["passes"]["head_per_map_s"] > 0  # Recipro-CAM has head passes
    assert set(result["methods"]) == {"gradcam", "reciprocam"}
    for name, record in result["methods"].items():
        assert record["family"] == cs.METHODS[name].family
        assert record["median_s"] > 0 and record["repeats"] == 1 and len(record["times_s"]) == 1
        assert record["irreducible_s"] > 0
        assert math.isclose(record["ratio_to_irreducible"], record["median_s"] / record["irreducible_s"])
        assert record["peak_memory_mb"] is None or record["peak_memory_mb"] >= 0
    assert result["methods"]["reciprocam"]["cost"] == {"forward": 1, "backward": 0, "head": 16}
    # the peers: timed and correlated where installed, a clear note where not
    for library in bench.PEERS:
        note = settings[f"{library}_skipped"]
        peer = result["methods"]["gradcam"]["peers"].get(library)
        if note:
            assert peer is None and "not installed" in note
        else:
            assert math.isclose(peer["speedup"], peer["median_s"] / result["methods"]["gradcam"]["median_s"])
            assert peer["pearson"] > 0.99  # Grad-CAM is the same equation in every library
    assert result["methods"]["reciprocam"]["peers"] == {}  # no peer implements Recipro-CAM


def test_bench_refuses_to_overwrite_without_force(tiny_run, capsys):
    _, path = tiny_run
    before = path.read_text()
    assert bench.main(TINY + ["--output", str(path)]) == 2
    assert "--force" in capsys.readouterr().err
    assert path.read_text() == before
    with pytest.raises(FileExistsError, match="--force"):
        bench.write_json({"a": 1}, path)
    bench.write_json({"a": 1}, path, force=True)
    assert json.loads(path.read_text()) == {"a": 1}


def test_irreducible_seconds_prices_each_kind_of_pass():
    timings = dict(forward=0.5, forward_backward=1.25, forward_per_image=0.1, head_per_map=0.01)
    # a gradient method: one forward and one backward pass of the batch
    assert bench.irreducible_seconds({"forward": 1, "backward": 1, "head": 0}, 4, **timings) == 1.25
    # Score-CAM: the batch forward, then K = 10 more forward passes of each of the 4 images
    assert math.isclose(bench.irreducible_seconds({"forward": 11, "backward": 0, "head": 0}, 4, **timings),
                        0.5 + 10 * 4 * 0.1)
    # Ablation-CAM / Recipro-CAM: one forward pass and 49 head passes per image
    assert math.isclose(bench.irreducible_seconds({"forward": 1, "backward": 0, "head": 49}, 2, **timings),
                        0.5 + 49 * 2 * 0.01)
    # SmoothGrad-like: 1 + N forward and N backward passes (N = 3)
    assert math.isclose(bench.irreducible_seconds({"forward": 4, "backward": 3, "head": 0}, 1, **timings),
                        1.25 + 3 * 0.1 + 2 * 0.75)
    with pytest.raises(ValueError, match="forward"):
        bench.irreducible_seconds({"forward": 0, "backward": 0, "head": 0}, 1, **timings)
    with pytest.raises(ValueError, match="head_per_map"):
        bench.irreducible_seconds({"forward": 1, "head": 3}, 1, 0.5, 1.0)


def test_ratios_and_fits_are_computed_from_the_given_numbers():
    assert bench.ratio(3.0, 1.5) == 2.0
    assert bench.ratio(1.0, 0.0) is None and bench.ratio(None, 1.0) is None
    assert math.isclose(bench.fit_loglog_slope([1, 2, 4, 8], [3, 12, 48, 192]), 2.0)
    with pytest.raises(ValueError):
        bench.fit_loglog_slope([1], [1])


def test_pearson_of_maps():
    maps = torch.rand(2, 8, 8, generator=torch.Generator().manual_seed(0))
    assert math.isclose(metrics.mean_pearson(maps, 2 * maps + 1), 1.0)
    assert math.isclose(metrics.mean_pearson(maps, -maps), -1.0)
    assert metrics.mean_pearson(maps, torch.zeros_like(maps)) is None  # undefined, never NaN


def test_method_cost_counts_only_nonconstant_channels_for_scorecam():
    assert bench.method_cost("scorecam", 80, 16, 50)["forward"] == 51
    assert bench.method_cost("ablationcam", 80, 16, 50)["head"] == 80


def test_scorecam_matches_its_slow_one_channel_at_a_time_reference():
    model = cs.load_model("efficientnet_lite0", device="cpu")
    images = cs.load_images(["chelsea", "coffee"], size=64)
    layer = "block0"  # 16 channels: the slow reference stays quick
    ours = cs.explain("scorecam", model, images, layer=layer)
    reference = bench.scorecam_reference(model, images, layer=layer)
    assert metrics.mean_pearson(ours, reference) >= 0.999


def test_unknown_method_is_refused_with_the_list_of_names():
    with pytest.raises(ValueError, match="gradcam"):
        bench.run_benchmark(methods=["no-such-method"], size=64)


def test_target_checks_read_each_target_from_the_run():
    run = {"methods": {
        "scorecam": {"median_s": 10.0, "ratio_to_irreducible": 1.1, "reference": {"pearson": 0.9995},
                     "peers": {"pytorch-grad-cam": {"median_s": 25.0, "pearson": 0.995},
                               "torchcam": {"median_s": 15.0, "pearson": 0.98}}},
        "ablationcam": {"median_s": 0.2, "ratio_to_irreducible": 1.5,
                        "peers": {"pytorch-grad-cam": {"median_s": 30.0, "pearson": 0.9}}},
        "reciprocam": {"median_s": 0.1, "ratio_to_irreducible": 1.0, "peers": {}},
        "gradcam": {"skipped": "not timed"},
    }}
    met = {check["claim"]: check["met"] for check in bench.target_checks(run)}
    assert met["scorecam speedup over pytorch-grad-cam"] is True        # 2.5x
    assert met["scorecam speedup over torchcam"] is False               # 1.5x
    assert met["scorecam Pearson with torchcam"] is False
    assert met["scorecam Pearson with the slow eq. 4 reference"] is True
    assert met["ablationcam speedup over pytorch-grad-cam's ablationcam"] is True   # 150x
    assert met["reciprocam speedup over pytorch-grad-cam's ablationcam"] is True    # 300x
    assert met["ablationcam time / irreducible work"] is False
    assert "gradcam time / irreducible work" not in met
    del run["methods"]["ablationcam"]["peers"]["pytorch-grad-cam"]
    unmeasured = {check["claim"]: check for check in bench.target_checks(run)}
    assert unmeasured["reciprocam speedup over pytorch-grad-cam's ablationcam"]["met"] is None
    assert "not measured" in bench.format_checks(list(unmeasured.values()))


def test_the_recorded_full_run_holds_every_number_its_checks_need():
    recorded = bench.load_recorded("efficientnet_lite0_224_cpu")
    settings = recorded["settings"]
    assert settings["input_size"] == 224 and settings["model"] == "efficientnet_lite0"
    assert not settings["pytorch-grad-cam_skipped"] and not settings["torchcam_skipped"]
    checks = bench.target_checks(recorded)
    assert all(check["measured"] is not None for check in checks)
    assert {"scorecam", "ablationcam", "reciprocam", "gradcam"} <= set(recorded["methods"])
    with pytest.raises(FileNotFoundError, match="available"):
        bench.load_recorded("no_such_run")
