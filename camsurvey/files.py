"""Where the project's own files live, and the one rule for every command that writes (torch-free).

The repository's ``data/`` holds the committed weights, annotations and recorded benchmarks;
``book/`` holds the chapters. Every command that writes (``run``, ``variants``, ``grade``,
``student``, ``deploy.export``, ...) goes through the functions below, so that the rule is
written once:

* it refuses the project's ``data/`` and ``book/`` (:data:`PROTECTED`) and the command's own
  inputs (:func:`check_output`);
* it never replaces an existing file without ``force`` (``--force`` on the command line);
* it creates the folder it is given (:func:`ensure_folder`);
* it writes atomically: into a temporary file beside the target, moved into place with
  :func:`os.replace` only once complete (:func:`write_file`, :func:`staged_file`). A symbolic
  link at the target is replaced by the new file, never written through, so a link cannot
  make a command overwrite the file it points to;
* a command that writes a whole folder (the student edition) writes only into a new or empty
  folder or one that holds its own marker file (:func:`staged_folder`), and swaps the finished
  folder into place.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / "data"
BOOK_DIR = ROOT / "book"
PROTECTED = (DATA_DIR, BOOK_DIR)  # the repository's folders that no command writes into

PathLike = str | os.PathLike


def _absolute(path: PathLike) -> Path:
    """``path`` made absolute with its folder resolved, its last component kept as named.

    A link at the last component is the thing a command would replace, so it is not followed;
    links in the folders above it are (they say where the file really goes).
    """
    path = Path(path).expanduser()
    return path.parent.resolve() / path.name if path.name else path.resolve()


def _default_mode(folder: bool) -> int:
    """The permissions a plain ``open`` or ``mkdir`` would give (tempfile's are private to the owner)."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if folder else 0o666) & ~umask


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_output(path: PathLike, *, inputs: Iterable[PathLike] = (), protected: Iterable[PathLike] = PROTECTED,
                 what: str = "output", replaces_folder: bool = False) -> Path:
    """``path`` as an absolute path, or a :class:`ValueError` saying why a command may not write there.

    Refused: anything inside the project's ``data/`` or ``book/`` (``protected``), one of
    ``inputs`` (the files and folders the command reads) or anything inside an input folder;
    with ``replaces_folder`` (the command replaces the whole folder ``path``), also a folder
    that contains an input. A folder given through a link is judged where the link points; a
    file link is not followed (the new file replaces the link).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"the {what} must be a path (str or pathlib.Path), got {type(path).__name__}")
    target = _absolute(path)
    places = [target, target.resolve()] if target.is_dir() else [target]
    for folder in map(Path, protected):
        folder = folder.resolve()
        if any(_inside(place, folder) for place in places):
            raise ValueError(f"refusing to write the {what} {target}: it is inside the project's {folder.name}/ "
                             f"folder, which holds the book's own files; choose a folder of your own (e.g. runs/)")
    for source in inputs:
        source = Path(source).expanduser().resolve()
        if any(_inside(place, source) or (replaces_folder and _inside(source, place)) for place in places):
            raise ValueError(f"refusing to write the {what} {target}: it would replace the input {source}; "
                             "choose an output outside the inputs")
    return target


def ensure_folder(folder: PathLike, *, inputs: Iterable[PathLike] = (), what: str = "output folder") -> Path:
    """``folder`` checked (:func:`check_output`) and created with its parents; returns it resolved."""
    path = check_output(folder, inputs=inputs, what=what)
    if path.exists() and not path.is_dir():
        raise ValueError(f"the {what} {path} exists and is not a folder; choose a folder")
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()


def check_new_file(path: PathLike, *, force: bool = False, inputs: Iterable[PathLike] = (), what: str = "output") -> Path:
    """``path`` checked, and free to write: refused if it exists (a link counts) unless ``force``."""
    target = check_output(path, inputs=inputs, what=what)
    if target.is_dir() and not target.is_symlink():
        raise ValueError(f"the {what} {target} is a folder; give a file name")
    if (target.exists() or target.is_symlink()) and not force:
        raise FileExistsError(f"{target} exists; pass --force (force=True) to overwrite it, or choose another name")
    return target


@contextmanager
def staged_file(path: PathLike, *, force: bool = False, inputs: Iterable[PathLike] = (),
                what: str = "output") -> Iterator[Path]:
    """Write a file atomically: yields a temporary path beside ``path``; on success it replaces ``path``.

    The checks of :func:`check_new_file` run first; if the block raises, the temporary file is
    removed and ``path`` is as it was.
    """
    target = check_new_file(path, force=force, inputs=inputs, what=what)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    os.close(handle)
    os.chmod(temporary, _default_mode(folder=False))
    try:
        yield Path(temporary)
        os.replace(temporary, target)  # a link at target is replaced, not followed
    finally:
        Path(temporary).unlink(missing_ok=True)


def write_file(path: PathLike, content: str | bytes, *, force: bool = False, inputs: Iterable[PathLike] = (),
               what: str = "output") -> Path:
    """Write ``content`` (text or bytes) to ``path`` atomically under the rule of this module; returns the path."""
    with staged_file(path, force=force, inputs=inputs, what=what) as temporary:
        with open(temporary, "wb") as stream:
            stream.write(content.encode() if isinstance(content, str) else content)
            stream.flush()
            os.fsync(stream.fileno())
    return check_output(path, inputs=inputs, what=what)
