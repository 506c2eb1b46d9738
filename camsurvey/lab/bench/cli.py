"""``camsurvey bench`` (or ``python -m camsurvey.lab.bench``): run the benchmark, print it, write its JSON."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from ...methods import METHODS
from .report import DEFAULT_OUTPUT, format_table, write_json
from .run import run_benchmark

DESCRIPTION = "The benchmark of survey Section V.C: every method's time against its irreducible work and the peers."


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="camsurvey bench", description=DESCRIPTION,
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

