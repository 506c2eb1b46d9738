"""Running chapters: papermill with checked parameters, and refreshing stored outputs.

``camsurvey run CHAPTER -p NAME VALUE ...`` writes an executed copy of a chapter,
with the parameters injected, into a folder outside ``book/`` (``runs/`` by default). Each
parameter is checked against the chapter's ``parameters`` cell before anything executes.
"""

from __future__ import annotations

import ast
import os
import tempfile
from pathlib import Path

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


def chapter_parameters(path: Path) -> dict:
    """The chapter's parameters: ``name -> (default value, its comment)``."""
    import papermill

    found = papermill.inspect_notebook(str(path))
    if not found:
        raise ValueError(f"{path.name} has no cell tagged 'parameters'")
    defaults = {}
    for name, info in found.items():
        try:
            value = ast.literal_eval(info["default"])
        except (ValueError, SyntaxError):
            value = info["default"]
        defaults[name] = (value, info.get("help", ""))
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


def run_chapter(chapter: str, parameters: dict | None = None, output_dir="runs", overwrite: bool = False,
                progress: bool = False) -> Path:
    """Execute ``chapter`` with ``parameters`` into ``output_dir``; returns the executed copy's path."""
    import papermill

    path = chapter_path(chapter)
    parameters = check_parameters(path, parameters or {})
    output_dir = Path(output_dir).resolve()
    if output_dir == BOOK.resolve() or BOOK.resolve() in output_dir.parents:
        raise ValueError("the output folder must lie outside book/, so the book's stored outputs stay intact")
    output = output_dir / f"{path.stem}.ipynb"
    if output.exists() and not overwrite:
        raise FileExistsError(f"{output} exists; pass --force to overwrite it or choose another --output folder")
    output_dir.mkdir(parents=True, exist_ok=True)
    partial = output.with_suffix(".partial.ipynb")
    try:
        with thread_environment(free_threads()):  # a run's threads change only its speed
            papermill.execute_notebook(str(path), str(partial), parameters=parameters, cwd=str(path.parent),
                                       progress_bar=progress, kernel_name="python3")
    except BaseException:
        kept = output.with_suffix(".failed.ipynb")
        if partial.exists():
            os.replace(partial, kept)
            print(f"the executed part was kept in {kept} to show where it failed")
        raise
    os.replace(partial, output)
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
