"""Command line: ``python -m camsurvey run CHAPTER -p NAME VALUE ...`` and friends."""

from __future__ import annotations

import argparse
import sys

from . import notebooks


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m camsurvey", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="execute a chapter with parameters into a folder outside book/")
    run.add_argument("chapter", help="chapter name (see `python -m camsurvey list`)")
    run.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                     help="set a parameter; VALUE is read as a Python literal (3, 0.5, ['chelsea'])")
    run.add_argument("-o", "--output", default="runs", help="output folder (default: runs/)")
    run.add_argument("--force", action="store_true", help="overwrite an existing executed copy")
    commands.add_parser("list", help="list the chapters and their parameters")
    refresh = commands.add_parser("refresh", help="re-execute chapters in place (make outputs)")
    refresh.add_argument("chapters", nargs="*", help="chapter names or paths (default: all)")
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
        else:
            notebooks.refresh(args.chapters or None)
    except (ValueError, FileExistsError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
