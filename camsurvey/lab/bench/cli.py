"""``camsurvey bench`` (or ``python -m camsurvey.lab.bench``): run the benchmark, print it, write its JSON."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ...common import available_cores, free_threads, machine_load
from ...methods import METHODS
from .interleave import DISAGREEMENT
from .load import BUSY_LOAD
from .report import DEFAULT_OUTPUT, check_output, format_table, recorded_path, untrusted, write_json
from .run import BenchSettings, run_benchmark

DESCRIPTION = """The benchmark of survey Section V.C: every method's time against its irreducible work and the peers.

Each method and its contenders (the peers' versions, the passes its irreducible work is priced
with) are timed in interleaved rounds, and each ratio is the median of the per-round ratios,
printed with its spread [min-max]. Exit status: 0, 2 on bad arguments, 3 with --strict when a
ratio's pairs disagree or the machine was busy. The JSON is written in every case but 2 (with
--strict and --update-data, a flagged run goes to --output and the recorded run stays as it was)."""

BUSY = 3  # exit status of --strict when the machine was too busy to trust


def parse(argv):
    parser = argparse.ArgumentParser(prog="camsurvey bench", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="efficientnet_lite0", help="a name from camsurvey.MODELS")
    parser.add_argument("--weights", default="imagenet", help="'imagenet' or 'none' (random weights, fine for timing)")
    parser.add_argument("--layer", default=None, help="layer to explain (default: the model's default layer)")
    parser.add_argument("--size", type=int, default=224, help="input size in pixels (square)")
    parser.add_argument("--batch", type=int, default=1, help="images per call")
    parser.add_argument("--methods", nargs="+", default=None, metavar="NAME",
                        help=f"methods to time (default: all registered: {' '.join(METHODS)})")
    parser.add_argument("--repeats", type=int, default=3,
                        help="interleaved rounds per method, after one warm-up call of each contender")
    parser.add_argument("--time-budget", type=float, default=60.0,
                        help="seconds of timed calls per contender; rounds are cut to fit (at least 1)")
    parser.add_argument("--skip-over", type=float, default=300.0,
                        help="skip methods whose irreducible work exceeds this many seconds")
    parser.add_argument("--throughput-batches", type=int, nargs="+", default=[1, 4, 8, 16, 32],
                        help="batch sizes tried for the best forward-pass throughput")
    parser.add_argument("--no-peers", action="store_true", help="do not time pytorch-grad-cam and torchcam")
    parser.add_argument("--no-reference", action="store_true", help="skip Score-CAM's slow eq. 4 reference")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: the cores other work leaves free, "
                             "camsurvey.common.free_threads)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the order of the contenders in each round")
    parser.add_argument("--disagreement", type=float, default=DISAGREEMENT,
                        help=f"flag a ratio whose per-pair values span more than this factor (default {DISAGREEMENT})")
    parser.add_argument("--busy-load", type=float, default=BUSY_LOAD,
                        help="flag a method timed while other processes' load exceeded this many cores "
                             f"(default {BUSY_LOAD})")
    parser.add_argument("--strict", action="store_true",
                        help=f"exit with status {BUSY} when any ratio is flagged (the machine was too busy)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: CUDA when present)")
    parser.add_argument("--output", default=DEFAULT_OUTPUT, help=f"JSON file to write (default {DEFAULT_OUTPUT})")
    parser.add_argument("--force", action="store_true", help="overwrite an existing output file")
    parser.add_argument("--update-data", action="store_true",
                        help="write the recorded run the book reads, data/bench/MODEL_SIZE_DEVICE.json, instead of "
                             "--output (replaces it)")
    return parser.parse_args(argv)


def choose_threads(requested: int | None) -> tuple[int, str]:
    """The torch thread count for the run, and why: ``--threads`` if given, else :func:`free_threads`."""
    if requested is not None:
        return requested, "--threads"
    cores, load = available_cores(), machine_load()
    return free_threads(cores, load), f"the free cores of {cores}, load average {load:.2f}; --threads overrides"


# ``camsurvey bench SUITE ...``: the other suites of the benchmark, each with its own options
SUITES = {"evaluation": "camsurvey.lab.bench.evaluation", "capacity": "camsurvey.lab.bench.capacity"}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in SUITES:  # images/s of `camsurvey evaluate`; the capacity study's cost model
        import importlib

        return importlib.import_module(SUITES[argv[0]]).main(argv[1:])
    args = parse(argv)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    try:
        if not args.update_data or args.strict:  # fail before timing, not after
            check_output(args.output, force=args.force)  # (--strict: a flagged run goes there, not to data/)
        threads, why = choose_threads(args.threads)
        log(f"threads: {threads} ({why})")
        settings = BenchSettings(
            layer=args.layer, size=args.size, batch=args.batch, methods=args.methods, repeats=args.repeats,
            peers=not args.no_peers, reference=not args.no_reference, throughput_batches=args.throughput_batches,
            time_budget=args.time_budget, skip_over=args.skip_over,
            weights=None if args.weights.lower() == "none" else args.weights, device=args.device, threads=threads,
            seed=args.seed, disagreement=args.disagreement, busy_load=args.busy_load)
        result = run_benchmark(args.model, settings, log=log)
        result["settings"]["threads_chosen_by"] = why
        ran, flagged = result["settings"], untrusted(result)
        recorded = args.update_data and not (args.strict and flagged)
        output = (recorded_path(ran["model"], ran["input_size"], ran["device"].split(":")[0]) if recorded
                  else Path(args.output))
        write_json(result, output, force=args.force, recorded=recorded)
    except (ValueError, TypeError, FileExistsError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_table(result))
    print(f"wrote {output}")
    if args.strict and flagged:
        kept = "; the recorded run was left as it was" if args.update_data else ""
        print(f"--strict: {len(flagged)} flag(s){kept}; exit status {BUSY}", file=sys.stderr)
        return BUSY
    return 0
