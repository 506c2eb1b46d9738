"""The benchmark (camsurvey.lab.bench): it runs end to end, its arithmetic is right, it never
overwrites results, and Score-CAM agrees with a slow one-channel-at-a-time eq. (4).

No test asserts a timing: speed depends on the machine and its load.
"""

import json
import math
import statistics

import pytest
import torch

import camsurvey as cs
from camsurvey import metrics
from camsurvey.lab import bench
from camsurvey.lab.bench.report import RECORDED_DIR

TINY = ["--size", "64", "--layer", "block5", "--methods", "gradcam", "reciprocam", "ablationcam", "--repeats", "2",
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
    assert settings["device"] and settings["threads"] == 1 and settings["channels"] == 80
    assert settings["threads_chosen_by"] == "--threads" and "interleaved" in settings["protocol"]
    assert result["passes"]["forward_s"] > 0 and result["passes"]["forward_backward_s"] > 0
    assert result["passes"]["head_per_map_s"] > 0  # Recipro-CAM has head passes
    assert result["passes"]["head_best_layout"] in ("contiguous", "channels_last")
    assert set(result["methods"]) == {"gradcam", "reciprocam", "ablationcam"}
    for name, record in result["methods"].items():
        assert record["family"] == cs.METHODS[name].family
        assert record["median_s"] > 0 and record["repeats"] == 2 and len(record["times_s"]) == 2
        assert record["irreducible_s"] == statistics.median(record["irreducible_times_s"]) > 0
        # the ratio is the median of per-round ratios, not a ratio of medians
        per_round = [t / i for t, i in zip(record["times_s"], record["irreducible_times_s"])]
        assert math.isclose(record["ratio_to_irreducible"], statistics.median(per_round))
        assert record["ratio_to_irreducible_spread"] == [min(per_round), max(per_round)]
        assert record["peak_memory_mb"] is None or record["peak_memory_mb"] >= 0
        # every round timed every contender once, ours among them
        assert len(record["order"]) == 2 and all(sorted(order) == sorted(record["warmup_s"]) for order in record["order"])
        assert "camsurvey" in record["warmup_s"]
        load = record["load"]
        assert load["threads"] == 1 and load["samples"] == 2 + 2 * len(record["warmup_s"])
        assert load["others_load"] >= 0 and load["busy"] == (load["others_load"] > bench.BUSY_LOAD)
        assert isinstance(record["flags"], list)
    assert result["methods"]["reciprocam"]["cost"] == {"forward": 1, "backward": 0, "head": 16}
    assert {"pass forward", "pass heads"} <= set(result["methods"]["reciprocam"]["warmup_s"])
    assert "pass forward+backward" in result["methods"]["gradcam"]["warmup_s"]
    # the peers: timed in the same rounds and correlated where installed, a clear note where not
    for library in bench.PEERS:
        note = settings[f"{library}_skipped"]
        peer = result["methods"]["gradcam"]["peers"].get(library)
        if note:
            assert peer is None and "not installed" in note
            continue
        ours = result["methods"]["gradcam"]["times_s"]
        per_round = [theirs / mine for theirs, mine in zip(peer["times_s"], ours)]
        assert math.isclose(peer["speedup"], statistics.median(per_round))
        assert peer["speedup_spread"] == [min(per_round), max(per_round)]
        assert peer["pearson"] > 0.99  # Grad-CAM is the same equation in every library
    assert result["methods"]["reciprocam"]["peers"] == {}  # no peer implements Recipro-CAM
    if not settings["pytorch-grad-cam_skipped"]:
        # Recipro-CAM is timed in Ablation-CAM's rounds, for its target against pytorch-grad-cam's Ablation-CAM
        companion = result["methods"]["ablationcam"]["companions"]["reciprocam"]
        theirs = result["methods"]["ablationcam"]["peers"]["pytorch-grad-cam"]["times_s"]
        speedup = companion["peers"]["pytorch-grad-cam"]["speedup"]
        assert math.isclose(speedup, statistics.median([t / m for t, m in zip(theirs, companion["times_s"])]))
        checks = {check["claim"]: check for check in bench.target_checks(result)}
        assert checks["reciprocam speedup over pytorch-grad-cam's ablationcam"]["measured"] == speedup


def test_the_table_prints_each_ratio_with_its_per_pair_spread(tiny_run):
    result = json.loads(tiny_run[1].read_text())
    table = bench.format_table(result)
    record = result["methods"]["gradcam"]
    low, high = record["ratio_to_irreducible_spread"]
    assert f"{record['ratio_to_irreducible']:.2f} [{low:.2f}-{high:.2f}]" in table
    assert "timing: interleaved" in table and "others" in table and "cpu/wall" in table


def test_strict_exits_non_zero_when_the_fake_load_says_the_machine_was_busy(monkeypatch, tmp_path, capsys):
    quick = ["--size", "64", "--layer", "block5", "--methods", "gradcam", "--repeats", "1", "--no-peers",
             "--threads", "1"]
    monkeypatch.setattr("camsurvey.lab.bench.load.machine_load", lambda: 0.2)  # quiet: 1 thread explains it
    assert bench.main(quick + ["--strict", "--output", str(tmp_path / "quiet.json")]) == 0
    monkeypatch.setattr("camsurvey.lab.bench.load.machine_load", lambda: 3.0)  # others: 2 cores' worth
    assert bench.main(quick + ["--output", str(tmp_path / "busy.json")]) == 0  # flagged, but not strict
    assert bench.main(quick + ["--strict", "--output", str(tmp_path / "strict.json")]) == 3
    busy = json.loads((tmp_path / "strict.json").read_text())  # written all the same, with its flags
    assert busy["methods"]["gradcam"]["load"]["busy"] and busy["methods"]["gradcam"]["load"]["others_load"] == 2.0
    assert any(flag.startswith("busy") for flag in busy["methods"]["gradcam"]["flags"])
    assert bench.untrusted(busy) and "flag: gradcam: busy" in capsys.readouterr().out
    # --strict --update-data never replaces the recorded run with a flagged one: it goes to --output
    monkeypatch.setattr("camsurvey.lab.bench.cli.recorded_path", lambda *_: pytest.fail("wrote data/"))
    assert bench.main(quick + ["--strict", "--update-data", "--output", str(tmp_path / "kept.json")]) == 3
    assert json.loads((tmp_path / "kept.json").read_text())["methods"]["gradcam"]["load"]["busy"]
    assert "recorded run was left as it was" in capsys.readouterr().err


def test_bench_chooses_threads_from_the_free_cores_unless_told(monkeypatch):
    from camsurvey.lab.bench import cli

    monkeypatch.setattr(cli, "machine_load", lambda: 2.0)
    monkeypatch.setattr(cli, "available_cores", lambda: 2)
    assert cli.choose_threads(None) == (1, "the free cores of 2, load average 2.00; --threads overrides")
    assert cli.choose_threads(2) == (2, "--threads")


def test_settings_are_checked_before_anything_is_timed():
    with pytest.raises(TypeError, match="no setting"):
        bench.run_benchmark(sizes=64)
    with pytest.raises(ValueError, match="repeats"):
        bench.BenchSettings(repeats=0)
    with pytest.raises(ValueError, match="disagreement"):
        bench.BenchSettings(disagreement=0.9)
    with pytest.raises(ValueError, match="gradcam"):
        bench.BenchSettings(methods=["no-such-method"])
    assert bench.BenchSettings(methods=["gradcam"]).methods == ("gradcam",)


def test_bench_refuses_the_repository_data_folder_unless_updating_the_recorded_run(tmp_path):
    target = bench.recorded_path("efficientnet_lite0", 224, "cpu")
    assert target == RECORDED_DIR / "efficientnet_lite0_224_cpu.json"  # the file the chapter reads
    with pytest.raises(ValueError, match="--update-data"):
        bench.check_output(target.parent / "mine.json")
    assert bench.main(TINY + ["--output", str(target.parent / "mine.json")]) == 2
    assert not (target.parent / "mine.json").exists()
    assert bench.check_output(target, recorded=True) == target  # --update-data may replace it


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


def test_irreducible_work_of_a_round_is_priced_with_that_round_s_pass_times():
    best = {"forward_best_batch": 4, "head_best_batch": 32}
    times = {"forward": 0.5, "forwards": 0.4, "heads": 0.32}
    assert math.isclose(bench.irreducible_in_round({"forward": 11, "backward": 0, "head": 0}, 2, times, best),
                        0.5 + 10 * 2 * 0.1)
    assert math.isclose(bench.irreducible_in_round({"forward": 1, "backward": 0, "head": 49}, 1, times, best),
                        0.5 + 49 * 0.01)
    with pytest.raises(ValueError, match="forward_backward"):  # a pass the round did not time
        bench.irreducible_in_round({"forward": 1, "backward": 1, "head": 0}, 1, times, best)


def test_target_checks_read_each_target_from_the_run():
    run = {"settings": {"protocol": "interleaved"}, "methods": {
        "scorecam": {"median_s": 10.0, "ratio_to_irreducible": 1.1, "ratio_to_irreducible_spread": [1.0, 1.2],
                     "reference": {"pearson": 0.9995},
                     "peers": {"pytorch-grad-cam": {"speedup": 2.5, "speedup_spread": [2.4, 2.6], "pearson": 0.995},
                               "torchcam": {"speedup": 1.5, "speedup_spread": [1.4, 1.6], "pearson": 0.98}}},
        "ablationcam": {"median_s": 0.2, "ratio_to_irreducible": 1.5,
                        "peers": {"pytorch-grad-cam": {"speedup": 150.0, "pearson": 0.9}},
                        "companions": {"reciprocam": {"peers": {"pytorch-grad-cam": {"speedup": 300.0}}}}},
        "reciprocam": {"median_s": 0.1, "ratio_to_irreducible": 1.0, "peers": {}},
        "gradcam": {"skipped": "not timed"},
    }}
    checks = {check["claim"]: check for check in bench.target_checks(run)}
    met = {claim: check["met"] for claim, check in checks.items()}
    assert met["scorecam speedup over pytorch-grad-cam"] is True        # 2.5x
    assert checks["scorecam speedup over pytorch-grad-cam"]["spread"] == [2.4, 2.6]
    assert met["scorecam speedup over torchcam"] is False               # 1.5x
    assert met["scorecam Pearson with torchcam"] is False
    assert met["scorecam Pearson with the slow eq. 4 reference"] is True
    assert met["ablationcam speedup over pytorch-grad-cam's ablationcam"] is True   # 150x
    assert met["reciprocam speedup over pytorch-grad-cam's ablationcam"] is True    # 300x, in the same rounds
    assert met["ablationcam time / irreducible work"] is False
    assert "gradcam time / irreducible work" not in met
    assert "[2.4-2.6]" in bench.format_checks(list(checks.values()))
    del run["methods"]["ablationcam"]["companions"]
    unmeasured = {check["claim"]: check for check in bench.target_checks(run)}
    assert unmeasured["reciprocam speedup over pytorch-grad-cam's ablationcam"]["met"] is None
    assert "not measured" in bench.format_checks(list(unmeasured.values()))
    # a run recorded before interleaving: the ratio of medians, with no spread
    del run["settings"]["protocol"]
    run["methods"]["ablationcam"]["peers"]["pytorch-grad-cam"]["median_s"] = 30.0
    old = {check["claim"]: check for check in bench.target_checks(run)}
    assert old["reciprocam speedup over pytorch-grad-cam's ablationcam"]["measured"] == 300.0
    assert old["reciprocam speedup over pytorch-grad-cam's ablationcam"]["spread"] is None
    assert "sequential" in bench.protocol(run)


def test_flags_make_a_run_untrusted_and_are_printed():
    run = {"methods": {"gradcam": {"flags": ["busy: other processes kept 2.0 cores' worth of tasks runnable"]},
                       "cam": {"flags": []}, "eigencam": {"skipped": "not timed"}}}
    assert bench.untrusted(run) == ["gradcam: busy: other processes kept 2.0 cores' worth of tasks runnable"]
    assert bench.untrusted({"methods": {"cam": {"flags": []}}}) == []


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


def test_a_plain_module_is_timed_beside_the_same_network_as_a_camsurvey_model():
    result = bench.run_benchmark("resnet18-random", size=64, methods=["gradcam"], repeats=1, peers=False,
                                 reference=False, time_budget=5, throughput_batches=(1,))
    settings, record = result["settings"], result["methods"]["gradcam"]
    assert settings["plain_module"] and settings["twin"] == "resnet18" and settings["layer"] == "layer4"
    assert record["ratio_to_camsurvey_model"] > 0 and len(record["ratio_to_camsurvey_model_spread"]) == 2
    claims = {check["claim"]: check for check in bench.target_checks(result)}
    assert claims["gradcam: plain module / camsurvey model"]["measured"] == record["ratio_to_camsurvey_model"]
    assert claims["gradcam: plain module / camsurvey model"]["at_least"] is False


def test_bench_suites_are_subcommands():
    from camsurvey.lab.bench import cli

    with pytest.raises(SystemExit) as stop:
        cli.main(["capacity", "--help"])
    assert stop.value.code == 0
