"""The evaluation benchmark, with tiny settings (its timings are recorded on a quiet machine, never asserted)."""

from __future__ import annotations

import json

from camsurvey.lab.bench import evaluation
from camsurvey.lab.evaluate import protocol
from camsurvey.lab.evaluate.run import Settings
from camsurvey.lab.evaluate.sample import write_sample


def test_the_evaluation_benchmark_reports_both_runs_the_overhead_and_worker_memory(tmp_path):
    data = write_sample(tmp_path / "sample", scene_count=4, photos=False)["scenes"] / "voc"
    settings = Settings(str(data), "voc", "scenes_cnn", protocol(resize=(64, 64), methods=("gradcam",), steps=2,
                                                                 metrics=("average_drop", "adcc", "coherency",
                                                                          "complexity")), shard_size=1)
    result = evaluation.benchmark_evaluation(settings, workers=2, cores=2, folder=tmp_path / "runs")
    # 2 threads in process, 1 a worker: the same rows up to the rounding of torch's kernels
    assert result["images"] == 4 and result["largest_metric_difference"] < 1e-2
    assert result["in_process"]["images_per_s"] > 0 and result["cluster"]["images_per_s"] > 0
    assert result["dask_overhead"] == result["cluster"]["seconds"] / result["in_process"]["seconds"]
    assert len(result["cluster"]["peak_memory_per_worker_mb"]) == 2
    assert all(peak > 50 for peak in result["cluster"]["peak_memory_per_worker_mb"])  # a worker holds torch
    json.dumps(result)  # JSON-ready
    assert "Dask overhead" in evaluation.format_result(result)


def test_the_benchmark_command_writes_its_json_and_refuses_the_project_s_data_folder(tmp_path, capsys):
    from camsurvey.files import DATA_DIR

    assert evaluation.main(["--images", "2", "--methods", "gradcam", "--output", str(DATA_DIR / "bench" / "x.json"),
                            "--shard-size", "1"]) == 2
    assert "refusing to write" in capsys.readouterr().err and not (DATA_DIR / "bench" / "x.json").exists()
