"""The student edition of the book: the same pages without the solutions.

``camsurvey student -o _build/student-src`` (``make student``) copies the book and
removes, everywhere:

* every ``{solution}`` block of sphinx-exercise (backtick or colon fences, and the gated
  ``{solution-start}`` ... ``{solution-end}`` form) from markdown pages and markdown cells;
* the body of every code cell tagged ``solution``: its functions keep their signature and
  docstring, and the body becomes ``# YOUR CODE HERE`` and ``raise NotImplementedError``
  (the grader recognises that and says what to do); other code in such a cell becomes a
  ``# YOUR CODE HERE`` line;
* the stored outputs of every notebook that had a solution cell (they would show the answers).

The copied ``_config.yml`` does not execute notebooks (the stubs would raise), and the
instructor page is left out of the student table of contents.
"""

from __future__ import annotations

import argparse
import ast
import re
import shutil
import sys
from pathlib import Path

import nbformat
import yaml

SOLUTION_TAG = "solution"
STUB_LINE = "# YOUR CODE HERE"
INSTRUCTOR_PAGES = ("book/instructor",)
_FENCE = re.compile(r"^\s*(`{3,}|:{3,})\s*\{(solution|solution-start|solution-end)\}")


def _fence_kind(line: str) -> str | None:
    """``"solution"``, ``"solution-start"`` or ``"solution-end"`` if ``line`` opens such a fence."""
    match = _FENCE.match(line)
    return match.group(2) if match else None


def strip_solution_blocks(text: str) -> str:
    """``text`` (MyST markdown) without its sphinx-exercise solution blocks."""
    out, lines, i = [], text.splitlines(keepends=True), 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            out.append(lines[i])
            i += 1
            continue
        fence, kind = match.groups()
        i += 1
        if kind == "solution-start":  # gated form: drop everything up to and including {solution-end}
            while i < len(lines) and _fence_kind(lines[i]) != "solution-end":
                i += 1
            end = _FENCE.match(lines[i]) if i < len(lines) else None
            end_fence = end.group(1) if end else fence
            i += 1
            fence = end_fence
            if i < len(lines) and lines[i].strip() == fence:
                i += 1
            continue
        if kind == "solution-end":
            if i < len(lines) and lines[i].strip() == fence:
                i += 1
            continue
        while i < len(lines) and lines[i].strip() != fence:  # a nested fence is longer, so this ends ours
            i += 1
        i += 1
    return re.sub(r"\n{3,}", "\n\n", "".join(out))


def stub_code(source: str) -> str:
    """A solution cell's code as a stub: imports and signatures stay, bodies become ``# YOUR CODE HERE``."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return STUB_LINE + "\n"
    lines = source.splitlines()
    parts, pending_stub = [], False
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            parts.append(ast.get_source_segment(source, node))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.decorator_list[0].lineno if node.decorator_list else node.lineno
            header = "\n".join(lines[first - 1 : node.body[0].lineno - 1])
            indent = " " * node.body[0].col_offset
            docstring = ast.get_docstring(node, clean=False)
            body = node.body[0]
            text = header
            if docstring is not None and isinstance(body, ast.Expr):
                text += "\n" + "\n".join(lines[body.lineno - 1 : body.end_lineno])
            parts.append(f"{text}\n{indent}{STUB_LINE}\n{indent}raise NotImplementedError")
        elif not pending_stub:
            parts.append(STUB_LINE)
            pending_stub = True
            continue
        pending_stub = False
    return "\n\n".join(p for p in parts if p) + "\n"


def student_notebook(notebook):
    """A copy of ``notebook`` with its solution blocks, solution cells and (if it had any) outputs removed."""
    notebook = nbformat.from_dict(notebook)
    has_solutions = False
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            stripped = strip_solution_blocks(cell.source)
            has_solutions |= stripped != cell.source
            cell.source = stripped
        elif cell.cell_type == "code" and SOLUTION_TAG in cell.get("metadata", {}).get("tags", []):
            has_solutions = True
            cell.source = stub_code(cell.source)
            cell.metadata["tags"] = [t for t in cell.metadata["tags"] if t != SOLUTION_TAG] + ["student"]
    if has_solutions:
        for cell in notebook.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        notebook.metadata.pop("widgets", None)
    return notebook


def _drop_pages(entries, pages):
    kept = []
    for entry in entries:
        if isinstance(entry, dict) and entry.get("file") in pages:
            continue
        if isinstance(entry, dict):
            entry = dict(entry)
            for key in ("sections", "chapters", "parts"):
                if key in entry:
                    entry[key] = _drop_pages(entry[key], pages)
        kept.append(entry)
    return kept


def make_student_source(source=".", output="_build/student-src") -> Path:
    """Write the student edition's sources (book, config, table of contents, bibliography) to ``output``."""
    source, output = Path(source).resolve(), Path(output).resolve()
    if output == source / "book" or source / "book" in output.parents:
        raise ValueError("the student edition must not be written inside book/")
    if output.exists():
        shutil.rmtree(output)
    (output / "book").mkdir(parents=True)
    for path in sorted((source / "book").iterdir()):
        if f"book/{path.stem}" in INSTRUCTOR_PAGES:
            continue
        if path.suffix == ".ipynb":
            nbformat.write(student_notebook(nbformat.read(path, as_version=4)), output / "book" / path.name)
        elif path.suffix == ".md":
            (output / "book" / path.name).write_text(strip_solution_blocks(path.read_text()))
        elif path.is_file():
            shutil.copy2(path, output / "book" / path.name)
        elif path.name == "_static":  # the book's stylesheet (html_static_path in _config.yml)
            shutil.copytree(path, output / "book" / path.name)
    for name in ("references.bib",):
        shutil.copy2(source / name, output / name)
    config = yaml.safe_load((source / "_config.yml").read_text())
    config["title"] = config.get("title", "") + " (student edition)"
    config.setdefault("execute", {})["execute_notebooks"] = "off"
    (output / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    toc = yaml.safe_load((source / "_toc.yml").read_text())
    toc["chapters"] = _drop_pages(toc.get("chapters", []), INSTRUCTOR_PAGES)
    (output / "_toc.yml").write_text(yaml.safe_dump(toc, sort_keys=False))
    return output


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="camsurvey student", description=__doc__.split("\n\n")[0])
    parser.add_argument("-s", "--source", default=".", help="the repository root (default: .)")
    parser.add_argument("-o", "--output", default="_build/student-src", help="where to write the student sources")
    args = parser.parse_args(argv)
    try:
        print(f"wrote {make_student_source(args.source, args.output)}")
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
