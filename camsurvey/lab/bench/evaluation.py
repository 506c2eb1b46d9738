"""The evaluation's benchmark: images/s of ``camsurvey evaluate`` in this process and on a LocalCluster.

    python -m camsurvey.lab.bench.evaluation --output runs/bench_evaluation.json

On the same cores, it runs the same evaluation twice, each into a fresh results folder: in this
process with ``cores`` torch threads, then on a ``dask.distributed`` LocalCluster of ``workers``
processes with ``cores / workers`` threads each. It reports images/s for both, the Dask
overhead as the ratio of the cluster's wall time to the in-process one (the project's target:
at most 1.1), the cluster's start-up time apart, the peak memory of this process during the
in-process run and of each worker (its peak resident set, ``ru_maxrss``), and whether the two
runs' rows are identical (with different thread counts, torch's kernels round differently: the
largest difference of a metric is reported). By default it evaluates the bundled scenes (written to a temporary
folder by :mod:`camsurvey.lab.evaluate.sample`) with ``scenes_cnn`` and the protocol's default
methods. Speed is a benchmark, never a test assertion: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from ...files import write_file
from ..evaluate.protocol import protocol
from ..evaluate.run import Settings, read_rows, require, run_evaluation, worker_model
from .timing import PeakMemory

OVERHEAD_TARGET = 1.1


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MiB (Linux reports ``ru_maxrss`` in KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def comparable_rows(folder) -> list[dict]:
    rows = [{k: v for k, v in row.items() if k != "seconds"} for row in read_rows(folder).to_pylist()]
    return sorted(rows, key=lambda r: (r["image_id"], r["method"] or ""))


def largest_difference(first: list[dict], second: list[dict]) -> float:
    """The largest absolute difference of a metric between two runs' rows (same images and methods)."""
    if [(r["image_id"], r["method"]) for r in first] != [(r["image_id"], r["method"]) for r in second]:
        raise ValueError("the two runs did not score the same images and methods")
    return max((abs(a[k] - b[k]) for a, b in zip(first, second) for k in a
                if isinstance(a[k], float) and isinstance(b[k], float)), default=0.0)


def benchmark_evaluation(settings: Settings, *, workers: int = 2, cores: int = 2, folder=None,
                         log=lambda message: None) -> dict:
    """Time ``settings`` in this process (``cores`` threads) and on ``workers`` LocalCluster workers
    (``cores // workers`` threads each); see the module docstring for what is reported."""
    distributed = require("dask.distributed")
    if workers < 1 or cores < workers:
        raise ValueError(f"need 1 <= workers <= cores, got {workers} workers on {cores} cores")
    with tempfile.TemporaryDirectory(prefix="camsurvey-bench-") as scratch:
        base = Path(folder or scratch)
        worker_model(settings.model, settings.weights)  # loaded before timing, as each worker does below
        log(f"in process, {cores} threads")
        with PeakMemory("cpu") as memory:
            start = time.perf_counter()
            plan = run_evaluation(settings, base / "in_process", threads=cores, progress=False, log=log)
            in_process_s = time.perf_counter() - start
        images = len(plan.dataset)
        log(f"LocalCluster of {workers} workers, {cores // workers} threads each")
        start = time.perf_counter()
        cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                           dashboard_address=None)
        client = distributed.Client(cluster)
        try:
            client.run(worker_model, settings.model, settings.weights)  # each worker loads the model once
            startup_s = time.perf_counter() - start
            start = time.perf_counter()
            run_evaluation(settings, base / "cluster", client=client, threads=cores // workers, progress=False,
                           log=log)
            cluster_s = time.perf_counter() - start
            worker_peaks = sorted(client.run(peak_rss_mb).values())
        finally:
            client.close()
            cluster.close()
        here, there = comparable_rows(base / "in_process"), comparable_rows(base / "cluster")
        identical, difference = here == there, largest_difference(here, there)
    overhead = cluster_s / in_process_s
    return {
        "settings": {**settings.as_dict(), "workers": workers, "cores": cores, "threads_in_process": cores,
                     "threads_per_worker": cores // workers, "torch": torch.__version__,
                     "platform": platform.platform(), "cpu_count": os.cpu_count(),
                     "load_average_before": os.getloadavg()},
        "images": images,
        "methods": list(settings.protocol.methods),
        "in_process": {"seconds": in_process_s, "images_per_s": images / in_process_s,
                       "peak_memory_mb": None if memory.peak is None else memory.peak / 2**20,
                       "memory": memory.how},
        "cluster": {"seconds": cluster_s, "images_per_s": images / cluster_s, "startup_s": startup_s,
                    "peak_memory_per_worker_mb": worker_peaks, "memory": "peak resident set (ru_maxrss) of each worker"},
        "dask_overhead": overhead,
        "overhead_target": OVERHEAD_TARGET,
        "overhead_met": overhead <= OVERHEAD_TARGET,
        "rows_identical": identical,
        "largest_metric_difference": difference,
        "load_average_after": os.getloadavg(),
    }


def format_result(result: dict) -> str:
    here, there = result["in_process"], result["cluster"]
    peaks = ", ".join(f"{p:.0f}" for p in there["peak_memory_per_worker_mb"])
    return "\n".join([
        f"{result['images']} images x {len(result['methods'])} methods ({', '.join(result['methods'])}); "
        f"{result['settings']['cores']} cores",
        f"in process : {here['images_per_s']:.3f} images/s ({here['seconds']:.1f} s), peak memory "
        f"{here['peak_memory_mb'] or 0:.0f} MB",
        f"LocalCluster: {there['images_per_s']:.3f} images/s ({there['seconds']:.1f} s, start-up "
        f"{there['startup_s']:.1f} s apart), peak memory per worker {peaks} MB",
        f"Dask overhead: {result['dask_overhead']:.3f}x of in-process (target <= {result['overhead_target']}): "
        f"{'met' if result['overhead_met'] else 'MISSED'}; rows identical: {result['rows_identical']} (largest "
        f"difference {result['largest_metric_difference']:.1e}: the thread counts differ)",
    ])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="camsurvey bench evaluation", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None, help="dataset folder (default: the bundled scenes, written to a temporary folder)")
    parser.add_argument("--format", default="voc", help="its layout (default voc)")
    parser.add_argument("--model", default="scenes_cnn")
    parser.add_argument("--preset", default="camsurvey")
    parser.add_argument("--resize", type=int, default=64, help="side the images are resized to (default 64, the scenes')")
    parser.add_argument("--methods", nargs="+", default=None, help="default: the preset's")
    parser.add_argument("--images", type=int, default=96, help="scenes to write / images to evaluate (default 96)")
    parser.add_argument("--shard-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cores", type=int, default=2, help="cores shared by both runs (default 2)")
    parser.add_argument("--output", default="runs/bench_evaluation.json", help="JSON file to write")
    parser.add_argument("--force", action="store_true", help="overwrite the output file")
    args = parser.parse_args(argv)
    log = lambda message: print(message, file=sys.stderr, flush=True)
    try:
        with tempfile.TemporaryDirectory(prefix="camsurvey-sample-") as scratch:
            data = args.data
            if data is None:
                from ..evaluate.sample import write_sample

                data = str(write_sample(Path(scratch) / "sample", scene_count=args.images, photos=False)["scenes"]
                           / args.format)
            overrides = {"resize": (args.resize, args.resize)}
            if args.methods:
                overrides["methods"] = tuple(args.methods)
            settings = Settings(data, args.format, args.model, protocol(args.preset, **overrides),
                                shard_size=args.shard_size, limit=args.images)
            result = benchmark_evaluation(settings, workers=args.workers, cores=args.cores, log=log)
        write_file(args.output, json.dumps(result, indent=2) + "\n", force=args.force, what="benchmark file")
    except (ValueError, FileExistsError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_result(result))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
