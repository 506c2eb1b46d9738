"""The HTML book: a Sphinx extension (the survey's equation numbers, solutions folded away, offline
MathJax), and the configuration that builds the book from its stored outputs.

The extension (``camsurvey.book.site`` in ``_config.yml``'s ``sphinx.extra_extensions``) does four
things while Jupyter Book builds:

* **One numbering, the survey's.** A chapter writes an equation with the survey's number as a
  ``\\tag{N}`` and a MyST label, ``$$ ... \\tag{3} $$ (eq-gradcam-weights)``, so that the notebook
  shows "(3)" in Jupyter too. Sphinx would number the labelled equation again by its order on the
  page ("(1) (3)"). The extension moves the tag into Sphinx's number (the tag leaves the TeX), so
  the page shows the survey's number once and ``{eq}`eq-gradcam-weights``` reads "(3)". A
  labelled equation without a tag, or two equations with one number on a page, is a build
  warning (an error under ``-W``).
* **Solutions folded away.** A code cell tagged ``solution`` shows its code only when the reader
  opens it ("Show the solution"), and every ``{solution}`` block is a closed dropdown;
  the student edition (``camsurvey.book.student``) has no solutions at all.
* **Each script once.** sphinx-thebe's configuration script is added twice under Jupyter Book;
  the page keeps one (the second was a console error on every page).
* **MathJax from the site.** ``mathjax_path`` names a file relative to ``_static``; the extension
  copies MathJax (3.2.2, from PyPI's ``django-static-mathjax``) there, so the book typesets its
  mathematics opened from disk without a network.

``python -m camsurvey.book.site config -o FILE`` writes a copy of ``_config.yml`` that builds from
the stored outputs (``execute_notebooks: off``): ``make html``, in ``make test``, builds the book
nbval has checked instead of executing every chapter again.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .. import files
from ..files import ROOT

TAG = re.compile(r"\\tag\{([^{}]*)\}")
MATHJAX_PACKAGE = "django-static-mathjax"  # on PyPI; its module is ``mathjax``
GENERATED = "# Written by `python -m camsurvey.book.site config` from {source}; edit that file instead.\n"


def survey_tag(latex: str) -> tuple[str | None, str]:
    """``(N, TeX without \\tag{N})`` for an equation that carries its survey number, else ``(None, TeX)``."""
    tags = TAG.findall(latex)
    if len(tags) != 1:
        return None, latex
    return tags[0].strip(), TAG.sub("", latex).rstrip()


def mathjax_folder() -> Path:
    """MathJax's browser components (``es5``) as the PyPI package installs them."""
    try:
        folder = Path(str(resources.files("mathjax"))) / "static" / "mathjax" / "es5"
    except ModuleNotFoundError:
        folder = None
    if folder is None or not (folder / "tex-chtml.js").is_file():
        raise FileNotFoundError(f"MathJax is not installed: pip install {MATHJAX_PACKAGE} "
                                "(the book serves MathJax from its own pages)")
    return folder


def stored_outputs_config(config: dict) -> dict:
    """``config`` (a parsed ``_config.yml``) changed to build from the stored outputs, executing nothing."""
    config = dict(config)
    config["execute"] = dict(config.get("execute") or {}, execute_notebooks="off")
    return config


def write_config(source: Path, output: Path, force: bool = False) -> Path:
    """Write :func:`stored_outputs_config` of ``source`` to ``output``, atomically.

    Refuses ``book/``, ``data/`` and ``source`` itself, and overwrites only a file this function
    wrote (or any file with ``force``)."""
    source, output = Path(source).resolve(), Path(output).resolve()
    ours = output.is_file() and output.read_text().startswith(GENERATED.split("{")[0])
    text = GENERATED.format(source=source.name) + yaml.safe_dump(
        stored_outputs_config(yaml.safe_load(source.read_text())), sort_keys=False)
    return files.write_file(output, text, force=force or ours, inputs=[source], what="book configuration")


# --- the Sphinx extension ---------------------------------------------------------------------------


def number_equations(app: Any, doctree: Any) -> None:
    """Give every labelled equation its ``\\tag{N}`` as Sphinx's number, once (``doctree-read``)."""
    from docutils import nodes
    from sphinx.util import logging

    logger = logging.getLogger(__name__)
    domain = app.env.get_domain("math")
    docname = app.env.docname
    shown: dict[str, Any] = {}
    for node in doctree.findall(nodes.math_block):
        number, latex = survey_tag(node.astext())
        label = node.get("label")
        if number is None:
            if label and node.get("number"):
                logger.warning(f"equation {label!r} is numbered by its position on the page, not by the survey: "
                               "write the survey's number as \\tag{N}, or drop the label",
                               location=node, type="camsurvey", subtype="equation")
            continue
        if number in shown:
            logger.warning(f"two equations on this page carry the number ({number}); a number appears once",
                           location=node, type="camsurvey", subtype="equation")
        shown[number] = node
        if not label:
            continue  # no Sphinx number: MathJax shows the tag
        node.children = [nodes.Text(latex)]
        node.rawsource = latex
        node["number"] = number
        domain.equations[label] = (docname, number)


SOLUTION_TAG = "solution"  # the tag of a solution's code cell (camsurvey.book.student strips them)
SHOW_SOLUTION, HIDE_SOLUTION = "Show the solution", "Hide the solution"


def fold_solutions(app: Any, doctree: Any) -> None:
    """Fold every solution away until the reader asks for it (``doctree-read``).

    A code cell tagged ``solution`` gets myst-nb's folded input (as ``hide-input`` would), and a
    ``{solution}`` block becomes a dropdown, so the public book shows neither in plain view.
    ``camsurvey_fold_solutions = False`` (Sphinx configuration) leaves them as they are written."""
    from docutils import nodes

    if not app.config.camsurvey_fold_solutions:
        return
    for node in doctree.findall(nodes.Element):
        classes = node.get("classes", [])
        if node.get("nb_element") == "cell_code" and f"tag_{SOLUTION_TAG}" in classes and not node.get("hide_mode"):
            node["hide_mode"] = "input"
            node["prompt_show"], node["prompt_hide"] = SHOW_SOLUTION, HIDE_SOLUTION
        elif isinstance(node, nodes.Admonition) and SOLUTION_TAG in classes and "dropdown" not in classes:
            classes.append("dropdown")


def check_mathjax(app: Any, config: Any) -> None:
    """Number equations the way :func:`number_equations` does, and find MathJax (``config-inited``)."""
    config.math_numfig = False  # numbers are the survey's, not "chapter.position"
    if _served_from_site(config.mathjax_path):
        mathjax_folder()


def _served_from_site(path: str) -> bool:
    return bool(path) and "://" not in path and not path.startswith("/")


def copy_mathjax(app: Any, exception: Exception | None) -> None:
    """Copy MathJax into ``_static`` where ``mathjax_path`` points (``build-finished``)."""
    if exception is not None or app.builder.format != "html" or not _served_from_site(app.config.mathjax_path):
        return
    source = mathjax_folder()
    target = Path(app.outdir) / "_static" / Path(app.config.mathjax_path).parent
    component = Path(app.config.mathjax_path).name

    def other_components(folder: str, names: list[str]) -> list[str]:
        """The combined components beside the one the pages load (they never load them): 15 MB."""
        if Path(folder) != source:
            return []
        return [name for name in names if name.endswith(".js") and name != component]

    shutil.copytree(source, target, ignore=other_components, dirs_exist_ok=True)
    if not (Path(app.outdir) / "_static" / app.config.mathjax_path).is_file():
        from sphinx.errors import ExtensionError

        raise ExtensionError(f"mathjax_path {app.config.mathjax_path!r} is not a file of MathJax's es5 folder "
                             "(for example mathjax/tex-chtml.js)")


def drop_repeated_scripts(app: Any, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    """Include each script once (``html-page-context``, after the others).

    sphinx-thebe adds its configuration twice under Jupyter Book, and the second
    ``const THEBE_JS_URL`` is a JavaScript error in every page's console."""
    scripts = context.get("script_files")
    if not isinstance(scripts, list):
        return
    seen, kept = set(), []
    for script in scripts:  # the same file or body with another priority is the same script
        key = (str(getattr(script, "filename", script) or ""), tuple(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            kept.append(script)
    scripts[:] = kept


def setup(app: Any) -> dict:
    app.add_config_value("camsurvey_fold_solutions", True, "env")
    app.connect("config-inited", check_mathjax)
    app.connect("doctree-read", number_equations)
    app.connect("doctree-read", fold_solutions)
    app.connect("html-page-context", drop_repeated_scripts, priority=900)
    app.connect("build-finished", copy_mathjax)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m camsurvey.book.site", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    config = commands.add_parser("config", help="write _config.yml for a build from the stored outputs")
    config.add_argument("-s", "--source", default=str(ROOT / "_config.yml"), help="the book's _config.yml")
    config.add_argument("-o", "--output", required=True, help="where to write the configuration")
    config.add_argument("--force", action="store_true", help="replace a file this command did not write")
    args = parser.parse_args(argv)
    try:
        print(f"wrote {write_config(Path(args.source), Path(args.output), force=args.force)}")
    except (ValueError, FileExistsError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
