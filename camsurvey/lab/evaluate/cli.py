"""``camsurvey evaluate``: Table I on a labelled dataset, resumable, in-process or on Dask.

    camsurvey evaluate --data ILSVRC --format imagenet --model resnet101 --weights resnet101-63fe2227.pth \\
        --preset recipro-cam-paper --out runs/table1 --cluster local:4

Writes one Parquet file per shard, a manifest, and the aggregated Table I (``table.md``,
``table.csv``) into ``--out``. The same command again resumes an interrupted run. ``--dry-run``
prints what the run would cost and stops.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from ...datasets.annotated import FORMATS
from .protocol import PRESETS, Protocol, parse_value, protocol
from .run import DEFAULT_SHARD_SIZE, Settings, resolve_model


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="camsurvey evaluate", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Protocol fields for --set: " + ", ".join(
                                         f.name for f in fields(Protocol) if f.name != "name"))
    parser.add_argument("--data", required=True, help="the dataset folder")
    parser.add_argument("--format", required=True, choices=FORMATS, help="its layout")
    parser.add_argument("--model", required=True, help="a name of camsurvey.MODELS, or a weights file")
    parser.add_argument("--weights", default="imagenet",
                        help="'imagenet' (the model's own, never downloaded), 'none' (seeded random) or a path")
    parser.add_argument("--synsets", default=None, help="synset mapping file (default: the dataset's, if any)")
    parser.add_argument("--preset", default="camsurvey", choices=list(PRESETS), help="evaluation protocol")
    parser.add_argument("--methods", nargs="+", default=None, metavar="NAME", help="methods (default: the preset's)")
    parser.add_argument("--layer", default=None, help="layer to explain (default: the model's CAM layer)")
    parser.add_argument("--steps", type=int, default=None, help="steps of the insertion and deletion curves")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override any protocol field, e.g. --set resize=72 --set crop=64 --set target=top1")
    parser.add_argument("--out", required=False, help="results folder")
    parser.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE, help="images per shard file")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images")
    parser.add_argument("--seed", type=int, default=0, help="seed of every image's randomness")
    parser.add_argument("--cluster", default=None, metavar="local:N", help="run on a Dask LocalCluster of N workers")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS", help="run on an existing Dask cluster")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per process (per worker)")
    parser.add_argument("--new", action="store_true",
                        help="if --out holds another run's results, write into a new folder beside it")
    parser.add_argument("--dry-run", action="store_true", help="print the cost estimate and stop")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def chosen_protocol(args) -> Protocol:
    overrides = {}
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set takes FIELD=VALUE, got {item!r}")
        try:
            overrides[name] = parse_value(name, value)
        except (ValueError, IndexError):
            raise ValueError(f"--set {item}: {value!r} is not a value for {name} (e.g. resize=256 or resize=256,320, "
                             "crop=224 or crop=none, steps=16, methods=gradcam,scorecam)") from None
    if args.methods is not None:
        overrides["methods"] = tuple(args.methods)
    if args.layer is not None:
        overrides["layer"] = args.layer
    if args.steps is not None:
        overrides["steps"] = args.steps
    return protocol(args.preset, **overrides)


def dry_run(settings: Settings) -> str:
    import torch

    from ...datasets.annotated import transformed
    from .cost import estimate, format_estimate
    from .run import read_settings_dataset, worker_model

    model = worker_model(settings.model, settings.weights)
    dataset = read_settings_dataset(settings, model.categories)
    if not len(dataset):
        raise ValueError(f"{settings.data} has no readable image")
    transform = settings.protocol.transform()
    images = torch.stack([transformed(image, transform)[0] for image in dataset.images[:8]])
    lines = [skip.line() for skip in dataset.skipped]
    lines.append(format_estimate(estimate(model, settings.protocol, images, len(dataset))))
    return "\n".join(lines)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        model, weights = resolve_model(args.model, None if args.weights.lower() == "none" else args.weights)
        settings = Settings(str(Path(args.data)), args.format, model, chosen_protocol(args), weights=weights,
                            synsets=args.synsets, seed=args.seed, shard_size=args.shard_size, limit=args.limit)
        if args.dry_run:
            print(dry_run(settings))
            return 0
        if args.out is None:
            raise ValueError("give the results folder with --out (or --dry-run for the estimate alone)")
        from .results import markdown_table, write_tables
        from .run import run_evaluation

        plan = run_evaluation(settings, args.out, cluster=args.cluster, scheduler=args.scheduler, threads=args.threads,
                              new=args.new, progress=not args.no_progress,
                              log=lambda message: print(message, file=sys.stderr, flush=True))
        summary, markdown, table_csv = write_tables(plan.folder)
        print(markdown_table(summary))
        print(f"wrote {markdown} and {table_csv}")
    except (ValueError, TypeError, FileExistsError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
