"""Running chapters: papermill with checked parameters, and refreshing stored outputs.

``camsurvey run CHAPTER -p NAME VALUE ...`` writes an executed copy of a chapter,
with the parameters injected, into a folder outside ``book/`` (``runs/`` by default). Each
parameter is checked against the chapter's ``parameters`` cell before anything executes.
"""

from __future__ import annotations

import ast
import io
import os
import tempfile
import tokenize
from pathlib import Path

from .. import files
from ..common import OUTPUT_THREADS, free_threads, thread_environment
from ..files import BOOK_DIR as BOOK
from ..files import ROOT


def chapters() -> dict[str, Path]:
    """``name -> notebook path`` for every chapter notebook of the book."""
    return {path.stem: path for path in sorted(BOOK.glob("*.ipynb"))}


def chapter_path(chapter: str) -> Path:
    known = chapters()
    if chapter in known:
        return known[chapter]
    path = Path(chapter)
    if path.suffix == ".ipynb" and path.is_file():
        return path
    raise ValueError(f"unknown chapter {chapter!r}; choose one of {sorted(known)}")


def parameters_cell(path: Path) -> str:
    """The source of the chapter's code cell tagged ``parameters``."""
    import nbformat

    cells = [cell for cell in nbformat.read(str(path), as_version=4).cells
             if cell.cell_type == "code" and "parameters" in cell.get("metadata", {}).get("tags", [])]
    if not cells:
        raise ValueError(f"{path.name} has no cell tagged 'parameters'")
    return cells[0].source


def chapter_parameters(path: Path) -> dict:
    """The chapter's parameters: ``name -> (default value, its comment)``.

    Read from the ``parameters`` cell with Python's own parser (every top-level ``name = value``
    or ``name: type = value``) and its tokenizer (the comment on the same line), so that any
    comment is fine, an ``=`` in it too; papermill's own reader skips such lines.
    """
    source = parameters_cell(path)
    comments = {token.start[0]: token.string.lstrip("#").strip()
                for token in tokenize.generate_tokens(io.StringIO(source).readline) if token.type == tokenize.COMMENT}
    defaults = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name, value = node.targets[0].id, node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            name, value = node.target.id, node.value
        else:
            continue
        text = ast.get_source_segment(source, value) or ""
        try:
            default = ast.literal_eval(value)
        except (ValueError, TypeError, SyntaxError, RecursionError):  # not a literal: papermill shows its source
            default = text
        defaults[name] = (default, comments.get(node.end_lineno or node.lineno, ""))
    return defaults


def parse_value(text: str):
    """A command-line value as Python: ``3``, ``0.5``, ``['chelsea', 'coffee']``, or a plain string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _same_kind(value, default) -> bool:
    if default is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    return isinstance(value, type(default)) and not (isinstance(value, bool) and not isinstance(default, bool))


def check_parameters(path: Path, given: dict) -> dict:
    """Reject unknown names and values of the wrong type, before anything executes."""
    defaults = chapter_parameters(path)
    checked = {}
    for name, value in given.items():
        if name not in defaults:
            raise ValueError(f"{path.stem} has no parameter {name!r}; its parameters are {sorted(defaults)}")
        default = defaults[name][0]
        if not _same_kind(value, default):
            raise ValueError(
                f"parameter {name!r} of {path.stem} must be like its default {default!r} "
                f"({type(default).__name__}), got {value!r}"
            )
        checked[name] = value
    return checked


class ChapterFailed(RuntimeError):
    """A chapter run stopped in one of its cells: which cell, the error's one line, where the partial copy is."""


def failure_summary(error: BaseException) -> str:
    """One line for papermill's execution error (its traceback is tens of lines of kernel internals)."""
    ename, evalue = getattr(error, "ename", None), getattr(error, "evalue", None)
    if ename is None:
        return f"{type(error).__name__}: {error}".strip()
    cell = getattr(error, "exec_count", None)
    return (f"cell [{cell}] raised " if cell is not None else "a cell raised ") + f"{ename}: {evalue}"


def run_chapter(chapter: str, parameters: dict | None = None, output_dir="runs", overwrite: bool = False,
                progress: bool = False) -> Path:
    """Execute ``chapter`` with ``parameters`` into ``output_dir``; returns the executed copy's path.

    The rule of :mod:`camsurvey.files` applies: not into the project's ``book/`` or ``data/``,
    an existing copy is replaced only with ``overwrite``, and the copy appears only once the
    chapter has run to its end. When a cell raises, :class:`ChapterFailed` says which and with
    what error, and the part that ran is kept as ``NAME.failed.ipynb`` to show where.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    path = chapter_path(chapter)
    parameters = check_parameters(path, parameters or {})
    output = files.check_new_file(Path(output_dir) / f"{path.stem}.ipynb", force=overwrite, inputs=[path],
                                  what="executed chapter")
    files.ensure_folder(output.parent, inputs=[path])
    with files.staged_file(output, force=overwrite, inputs=[path], what="executed chapter") as partial:
        try:
            with thread_environment(free_threads()):  # a run's threads change only its speed
                papermill.execute_notebook(str(path), str(partial), parameters=parameters, cwd=str(path.parent),
                                           progress_bar=progress, kernel_name="python3")
        except PapermillExecutionError as error:
            kept = output.with_suffix(".failed.ipynb")
            os.replace(partial, kept)
            raise ChapterFailed(f"{path.stem} stopped: {failure_summary(error)}; the executed part is in {kept}") from None
    return output


def refresh(paths=None, timeout: int = 1200) -> list[Path]:
    """Re-execute chapter notebooks in place so their stored outputs are today's (``make outputs``)."""
    import nbformat
    from nbclient import NotebookClient

    targets = [chapter_path(str(p)) for p in paths] if paths else list(chapters().values())
    for path in targets:
        notebook = nbformat.read(path, as_version=4)
        with thread_environment(OUTPUT_THREADS):  # stored outputs must not depend on the core count
            NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                           resources={"metadata": {"path": str(path.parent)}}).execute()
        handle, temporary = tempfile.mkstemp(suffix=".ipynb", dir=path.parent)
        with os.fdopen(handle, "w") as stream:
            nbformat.write(notebook, stream)
        os.replace(temporary, path)
        print(f"refreshed {path.relative_to(ROOT) if ROOT in path.parents else path}")
    return targets
