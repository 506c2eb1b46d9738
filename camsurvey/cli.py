"""The ``camsurvey`` command (also ``python -m camsurvey``): ``camsurvey run CHAPTER -p NAME VALUE ...`` and friends.

``camsurvey bench``, ``camsurvey train``, ``camsurvey student`` and ``camsurvey evaluate`` pass their arguments on to
:mod:`camsurvey.lab.bench`, :mod:`camsurvey.lab.train`, :mod:`camsurvey.book.student` and
:mod:`camsurvey.lab.evaluate.cli`
(``camsurvey bench --help`` lists them).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .book import notebooks

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
    variants.add_argument("-o", "--output", default="runs/variants", help="output folder")
    variants.add_argument("--answer-keys", action="store_true", help="also execute each variant with solutions")
    grade = commands.add_parser("grade", help="execute submitted notebooks and collect their grader reports")
    grade.add_argument("notebooks", nargs="+", help="submitted notebooks")
    grade.add_argument("-o", "--output", default="runs/grades.json", help="where to write the reports (JSON)")
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
            for path in grading.make_variants(args.assignment, args.seeds, args.output, answer_keys=args.answer_keys):
                print(f"wrote {path}")
        elif args.command == "grade":
            from .book import grading
            for path, result in grading.grade_notebooks(args.notebooks, args.output).items():
                done = sum(r["passed"] for r in result["reports"])
                print(f"{path}: {done}/{len(result['reports'])} exercises passed" + (f" ({result['error']})" if result["error"] else ""))
        else:
            notebooks.refresh(args.chapters or None)
    except (ValueError, FileExistsError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
