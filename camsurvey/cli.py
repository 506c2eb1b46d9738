"""The ``camsurvey`` command (also ``python -m camsurvey``): ``camsurvey run CHAPTER -p NAME VALUE ...`` and friends.

``camsurvey explain IMAGE... -m METHOD --model NAME -o FOLDER`` writes one overlay PNG per image
and method (``--model torchvision:resnet50 --weights FILE`` for a plain torchvision module).

``camsurvey bench``, ``camsurvey train``, ``camsurvey student`` and ``camsurvey evaluate`` pass their
arguments on to :mod:`camsurvey.lab.bench`, :mod:`camsurvey.lab.train`, :mod:`camsurvey.book.student`
and :mod:`camsurvey.lab.evaluate.cli`
(``camsurvey bench --help`` lists them).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .book import notebooks, sandbox

# command -> (module whose main(argv) runs it, what it does)
DELEGATED = {
    "bench": ("camsurvey.lab.bench.cli", "time every method against its irreducible work and the peers"),
    "train": ("camsurvey.lab.train", "train a scene model"),
    "student": ("camsurvey.book.student", "write the student edition's sources"),
    "evaluate": ("camsurvey.lab.evaluate.cli", "Table I on a labelled dataset (ImageNet, VOC, folders), resumable, on Dask"),
}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in DELEGATED:
        return importlib.import_module(DELEGATED[argv[0]][0]).main(argv[1:])
    parser = argparse.ArgumentParser(prog="camsurvey", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (_, summary) in DELEGATED.items():
        commands.add_parser(name, help=f"{summary} (camsurvey {name} --help)", add_help=False)
    run = commands.add_parser("run", help="execute a chapter with parameters into a folder outside book/")
    run.add_argument("chapter", help="chapter name (see `camsurvey list`)")
    run.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                     help="set a parameter; VALUE is read as a Python literal (3, 0.5, ['chelsea'])")
    run.add_argument("-o", "--output", default="runs", help="output folder (default: runs/)")
    run.add_argument("--force", action="store_true", help="overwrite an existing executed copy")
    commands.add_parser("list", help="list the chapters and their parameters")
    refresh = commands.add_parser("refresh", help="re-execute chapters in place (make outputs)")
    refresh.add_argument("chapters", nargs="*", help="chapter names or paths (default: all)")
    variants = commands.add_parser("variants", help="per-student variants of an assignment (no solutions)")
    variants.add_argument("assignment", help="assignment notebook name, e.g. assignment_cam")
    variants.add_argument("--seeds", nargs="+", type=int, required=True, help="one seed per student")
    variants.add_argument("-o", "--output", default="runs/variants", help="output folder (not in book/ or data/)")
    variants.add_argument("--answer-keys", action="store_true", help="also execute each variant with solutions")
    explain = commands.add_parser("explain", help="write one saliency overlay PNG per image and method")
    explain.add_argument("images", nargs="+", help="image files (or names of the bundled photos)")
    explain.add_argument("-m", "--method", action="append", required=True,
                         help="a method of camsurvey.METHODS (repeat for several)")
    explain.add_argument("--model", default="efficientnet_lite0",
                         help="a camsurvey model name, or torchvision:ARCH for a torchvision architecture "
                              "(e.g. torchvision:resnet50) with --weights")
    explain.add_argument("--weights", default=None,
                         help="a state dict file for the model (torchvision:ARCH without it has random weights)")
    explain.add_argument("--layer", action="append", default=None,
                         help="the layer (default: the model's); repeat to fuse several")
    explain.add_argument("--target", type=int, default=None, help="class index (default: each image's top-1)")
    explain.add_argument("--size", type=int, default=224, help="image side in pixels (default 224)")
    explain.add_argument("--alpha", type=float, default=0.5, help="the map's weight in the overlay")
    explain.add_argument("--colormap", default="jet", help="a matplotlib colormap")
    explain.add_argument("-o", "--output", required=True, help="folder for the PNG files (created)")
    explain.add_argument("--force", action="store_true", help="overwrite existing PNG files")
    variants.add_argument("--force", action="store_true", help="replace handouts that exist (a teacher may have edited them)")
    grade = commands.add_parser("grade", help="grade submitted notebooks, each in its own sandboxed process")
    grade.add_argument("notebooks", nargs="+", help="submitted notebooks")
    grade.add_argument("-o", "--output", default="runs/grades",
                       help="a folder (grades.json and executed/ in it; default runs/grades) or a .json file")
    grade.add_argument("--assignment", help="the assignment graded (default: from each notebook's metadata or name)")
    grade.add_argument("--force", action="store_true", help="replace an existing report")
    grade.add_argument("--timeout", type=float, default=None,
                       help=f"seconds per submission (default {sandbox.SUBMISSION_TIMEOUT})")
    grade.add_argument("--cell-timeout", type=float, default=None, help=f"seconds per cell (default {sandbox.CELL_TIMEOUT})")
    grade.add_argument("--seed", type=int, default=None, help="seed of the grader's cases (keep it to yourself)")
    args = parser.parse_args(argv)

    try:
        if args.command == "list":
            for name, path in notebooks.chapters().items():
                print(name)
                for parameter, (value, comment) in notebooks.chapter_parameters(path).items():
                    print(f"    {parameter} = {value!r}  {comment}")
        elif args.command == "run":
            values = {name: notebooks.parse_value(value) for name, value in args.parameter}
            output = notebooks.run_chapter(args.chapter, values, args.output, overwrite=args.force, progress=True)
            print(f"wrote {output}")
        elif args.command == "variants":
            from .book import grading
            for path in grading.make_variants(args.assignment, args.seeds, args.output, answer_keys=args.answer_keys,
                                              force=args.force):
                print(f"wrote {path}")
        elif args.command == "explain":
            for path in explain_images(args):
                print(f"wrote {path}")
        elif args.command == "grade":
            limits = {name: value for name, value in (("timeout", args.timeout), ("cell_timeout", args.cell_timeout),
                                                      ("seed", args.seed)) if value is not None}
            report = sandbox.grade_notebooks(args.notebooks, args.output, assignment=args.assignment, force=args.force,
                                             progress=lambda row: print(sandbox.summary(row), flush=True), **limits)
            print(f"wrote {sandbox.output_paths(args.output)[0]} ({len(report['submissions'])} submissions)")
        else:
            notebooks.refresh(args.chapters or None)
    except (ValueError, TypeError, FileExistsError, FileNotFoundError, notebooks.ChapterFailed) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def explain_model(name: str, weights):
    """``--model``: a camsurvey model, or ``torchvision:ARCH`` built without downloading (``--weights`` or random)."""
    import camsurvey as cs

    if not name.startswith("torchvision:"):
        return cs.load_model(name, **({} if weights is None else {"weights": weights}))
    import torch

    from .models.wrap import plain_torchvision

    architecture = name.split(":", 1)[1]
    module = plain_torchvision(architecture)
    if weights is None:
        print(f"note: {architecture} has random weights (no --weights file given): the maps show the method, "
              "not a trained network", file=sys.stderr)
    else:
        try:
            module.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        except (OSError, RuntimeError) as error:
            raise ValueError(f"cannot load {weights!r} into {architecture}: {str(error).splitlines()[0]}") from None
    return cs.wrap(module.eval(), name=architecture)


def explain_images(args) -> list:
    """``camsurvey explain``: every (image, method) overlay, checked before any is computed."""
    from pathlib import Path

    from tqdm import tqdm

    import camsurvey as cs

    for method in args.method:
        cs.get_method(method)
    folder = Path(args.output)
    stems = [Path(image).stem for image in args.images]
    if len(set(stems)) != len(stems):
        raise ValueError("two images have the same file name, so their PNG files would overwrite each other; "
                         "explain them in separate runs or rename one")
    targets = {(image, method): folder / f"{stem}-{method}.png"
               for image, stem in zip(args.images, stems) for method in args.method}
    existing = [str(path) for path in targets.values() if path.exists()]
    if existing and not args.force:
        raise FileExistsError(f"{existing[0]} exists ({len(existing)} of the outputs do); pass --force to overwrite")
    model = explain_model(args.model, args.weights)
    layer = None if args.layer is None else args.layer if len(args.layer) > 1 else args.layer[0]
    written: list = []
    pictures: dict = {}
    for (image, method), path in tqdm(targets.items(), desc="explain", unit="map", disable=len(targets) < 2):
        picture = pictures.setdefault(image, cs.load_image(image, size=args.size))
        saliency = cs.explain(method, model, picture, target=args.target, layer=layer)
        written.append(cs.save_overlay(path, picture, saliency[0], alpha=args.alpha, colormap=args.colormap,
                                       overwrite=args.force))
    return written


if __name__ == "__main__":
    sys.exit(main())
