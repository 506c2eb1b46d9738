"""The HTML book's build: the survey's equation numbers, MathJax served from the site, the
configuration that builds from stored outputs, and the rules of _config.yml."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from camsurvey.book import site

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))


def test_survey_tag_takes_the_number_out_of_the_tex():
    assert site.survey_tag("a_n = 1 \\tag{3}\n") == ("3", "a_n = 1")
    assert site.survey_tag("a = 1") == (None, "a = 1")
    assert site.survey_tag("a \\tag{1} \\\\ b \\tag{2}") == (None, "a \\tag{1} \\\\ b \\tag{2}")  # one number each


def test_stored_outputs_config_executes_nothing_and_changes_nothing_else():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    stored = site.stored_outputs_config(config)
    assert stored["execute"]["execute_notebooks"] == "off"
    assert config["execute"]["execute_notebooks"] == "force"  # the caller's dict is not changed
    assert {k: v for k, v in stored.items() if k != "execute"} == {k: v for k, v in config.items() if k != "execute"}
    assert {k: v for k, v in stored["execute"].items() if k != "execute_notebooks"} == {
        k: v for k, v in config["execute"].items() if k != "execute_notebooks"}


def test_write_config_is_atomic_refuses_its_input_and_protected_folders_and_others_files(tmp_path):
    source = ROOT / "_config.yml"
    output = site.write_config(source, tmp_path / "stored.yml")
    assert yaml.safe_load(output.read_text())["execute"]["execute_notebooks"] == "off"
    assert site.write_config(source, output) == output  # its own file: replaced
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left
    with pytest.raises(ValueError, match="would replace the input"):
        site.write_config(source, source)
    with pytest.raises(ValueError, match=r"inside the project.s book/ folder"):
        site.write_config(source, ROOT / "book" / "stored.yml")
    theirs = tmp_path / "mine.yml"
    theirs.write_text("title: a user's file\n")
    with pytest.raises(FileExistsError, match="--force"):
        site.write_config(source, theirs)
    assert theirs.read_text() == "title: a user's file\n"
    site.write_config(source, theirs, force=True)
    assert "execute_notebooks: 'off'" in theirs.read_text() or "execute_notebooks: off" in theirs.read_text()


def test_the_config_command_says_what_is_wrong(tmp_path, capsys):
    assert site.main(["config", "-o", str(ROOT / "_config.yml")]) == 2
    assert "would replace the input" in capsys.readouterr().err
    assert site.main(["config", "-o", str(tmp_path / "c.yml")]) == 0


def test_mathjax_comes_from_an_installed_package():
    folder = site.mathjax_folder()
    assert (folder / "tex-chtml.js").is_file()
    assert (folder / "output" / "chtml" / "fonts" / "woff-v2").is_dir()  # the fonts it loads beside itself


def test_config_builds_offline_strictly_and_reports_a_failing_chapter_without_losing_the_book():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["execute"]["execute_notebooks"] in ("force", "cache")
    assert config["execute"]["allow_errors"] is False
    sphinx = config["sphinx"]["config"]
    assert sphinx["nb_execution_raise_on_error"] is False  # a warning: -W fails the build after every page
    assert "camsurvey.book.site" in config["sphinx"]["extra_extensions"]
    assert "://" not in sphinx["mathjax_path"]  # served from the site
    assert sphinx["nb_ipywidgets_js"] == {}  # no require.js or widget manager from a CDN
    assert (ROOT / sphinx["html_static_path"][0] / sphinx["html_css_files"][0]).is_file()
    makefile = (ROOT / "Makefile").read_text()
    assert makefile.count("-W -n --keep-going") >= 3  # book, html, student


def test_no_launch_button_points_at_a_repository_that_does_not_exist():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    buttons = config.get("launch_buttons", {})
    assert not any(buttons.get(key) for key in ("binderhub_url", "colab_url", "jupyterhub_url", "thebe"))
    assert not config.get("html", {}).get("use_repository_button")
    assert "repository" not in config


def test_every_labelled_equation_carries_the_survey_s_number():
    """A labelled equation without \\tag{N} would be numbered by its position on the page."""
    missing = []
    for path in NOTEBOOKS:
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type != "markdown":
                continue
            for tex, label in re.findall(r"\$\$(.+?)\$\$ *\(([\w-]+)\)", cell.source, flags=re.S):
                if site.survey_tag(tex)[0] is None:
                    missing.append(f"{path.stem}: {label}")
            for tex in re.findall(r"```\{math\}\n(:label:.*?)```", cell.source, flags=re.S):
                if site.survey_tag(tex)[0] is None:
                    missing.append(f"{path.stem}: {tex.splitlines()[0]}")
            assert not re.search(r"\\q?quad\s*\(\d+\)\s*\$\$", cell.source), f"{path.stem}: a number typed by hand"
    assert not missing


@pytest.fixture(scope="module")
def tiny_book(tmp_path_factory):
    """A two-page Jupyter Book built with the extension (about five seconds)."""
    source = tmp_path_factory.mktemp("tiny-book")
    (source / "_config.yml").write_text(yaml.safe_dump({
        "title": "tiny", "execute": {"execute_notebooks": "off"},
        "sphinx": {"extra_extensions": ["sphinx_exercise", "camsurvey.book.site"],
                   "config": {"mathjax_path": "mathjax/tex-chtml.js"}},
    }))
    (source / "_toc.yml").write_text("format: jb-book\nroot: index\nchapters:\n  - file: other\n  - file: exercise\n")
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.cells = [
        nbformat.v4.new_markdown_cell("# Exercise\n\n```{exercise}\n:label: ex-sum\nAdd.\n```"),
        nbformat.v4.new_code_cell("answer = 1 + 1  # the solution", metadata={"tags": ["solution"]}),
        nbformat.v4.new_code_cell("shown = 2"),
        nbformat.v4.new_markdown_cell("```{solution} ex-sum\nTwo.\n```"),
    ]
    nbformat.write(notebook, source / "exercise.ipynb")
    (source / "index.md").write_text("# Index\n\n$$\na_n = 1 \\tag{3}\n$$ (eq-weights)\n\n"
                                     "$$\nb = 2 \\tag{2}\n$$ (eq-map)\n\nBy {eq}`eq-weights` and {eq}`eq-map`.\n\n"
                                     "$$\nc = 1 \\tag{5}\n$$\n\n$$\nd = 1\n$$ (eq-unnumbered)\n")
    (source / "other.md").write_text("# Other\n\nAs in {eq}`eq-weights`.\n")
    build = subprocess.run([str(Path(sys.executable).with_name("jupyter-book")), "build", str(source)],
                           capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    return source / "_build" / "html", build.stdout + build.stderr


def test_a_labelled_equation_shows_its_tag_once_as_sphinx_s_number(tiny_book):
    html = (tiny_book[0] / "index.html").read_text()
    numbers = re.findall(r'<span class="eqno">\((\d+)\)', html)
    assert numbers[:2] == ["3", "2"]  # the survey's numbers, in the page's order, not (1) (2)
    assert "\\tag{3}" not in html and "\\tag{2}" not in html  # MathJax does not number them again
    assert "\\tag{5}" in html  # an unlabelled equation keeps its tag, for MathJax to show


def test_references_read_the_survey_s_number_on_every_page(tiny_book):
    index = (tiny_book[0] / "index.html").read_text()
    assert re.search(r'href="#equation-eq-weights">\(3\)</a>', index)
    assert re.search(r'href="#equation-eq-map">\(2\)</a>', index)
    assert re.search(r'href="index.html#equation-eq-weights">\(3\)</a>', (tiny_book[0] / "other.html").read_text())


def test_a_labelled_equation_without_a_tag_is_a_warning(tiny_book):
    assert "equation 'eq-unnumbered' is numbered by its position on the page" in tiny_book[1]


def test_mathjax_is_served_from_the_site(tiny_book):
    html = (tiny_book[0] / "index.html").read_text()
    assert re.search(r'<script defer="defer" src="_static/mathjax/tex-chtml.js', html)
    assert "cdn.jsdelivr" not in html
    assert (tiny_book[0] / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").is_dir()


def test_solutions_are_folded_away_in_the_public_book(tiny_book):
    html = (tiny_book[0] / "exercise.html").read_text()
    folded = html[html.index("<details"):html.index("</details>")]
    assert "the solution" in folded and site.SHOW_SOLUTION in folded  # the solution's code, behind a prompt
    assert "shown" not in folded  # other code stays in view
    assert re.search(r'<div class="solution[^"]*dropdown', html)


def test_each_script_is_included_once(tiny_book):
    html = (tiny_book[0] / "index.html").read_text()
    assert html.count("const THEBE_JS_URL") <= 1


def test_a_failing_chapter_fails_make_book_but_every_other_page_is_written(tmp_path):
    """`make book`'s settings: the failure is reported (non-zero exit, traceback on its page), the rest built."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    (tmp_path / "_config.yml").write_text(yaml.safe_dump({
        "title": "one chapter fails", "execute": config["execute"],
        "sphinx": {"config": {key: config["sphinx"]["config"][key]
                              for key in ("nb_execution_raise_on_error", "nb_execution_show_tb")}},
    }))
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: index\nchapters:\n  - file: failing\n  - file: after\n")
    (tmp_path / "index.md").write_text("# Index\n")
    (tmp_path / "after.md").write_text("# A chapter after the failing one\n")
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.cells = [nbformat.v4.new_markdown_cell("# Failing"),
                      nbformat.v4.new_code_cell("raise ValueError('this chapter fails')")]
    nbformat.write(notebook, tmp_path / "failing.ipynb")
    build = subprocess.run([str(Path(sys.executable).with_name("jupyter-book")), "build", str(tmp_path),
                            "-W", "-n", "--keep-going"], capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    html = tmp_path / "_build" / "html"
    assert build.returncode != 0  # reported: make book fails
    assert "Executing notebook failed" in build.stdout + build.stderr
    assert (html / "after.html").is_file() and (html / "index.html").is_file()  # the rest of the book is there
    assert "this chapter fails" in (html / "failing.html").read_text()  # and the page says what went wrong


def test_no_page_promises_launch_buttons_the_book_does_not_have():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    if any((config.get("launch_buttons") or {}).values()):
        pytest.skip("the book has launch buttons")
    promises = []
    for path in sorted((ROOT / "book").glob("*.md")) + NOTEBOOKS:
        cells = (nbformat.read(path, as_version=4).cells if path.suffix == ".ipynb"
                 else [nbformat.v4.new_markdown_cell(path.read_text())])
        for cell in cells:
            if cell.cell_type == "markdown" and re.search(r"launch button|\bBinder\b|\bColab\b|\bThebe\b", cell.source):
                promises.append(path.stem)
    assert not promises, f"pages that mention launch buttons: {sorted(set(promises))}"


def test_every_figure_cell_describes_its_figure_for_a_screen_reader():
    """A cell that draws a figure says in words what it shows (myst-nb's ``mystnb.image.alt``):
    without it the page's <img> carries the file name as its alt text."""
    missing = []
    for path in NOTEBOOKS:
        for cell in nbformat.read(path, as_version=4).cells:
            draws = cell.cell_type == "code" and any(
                "image/png" in output.get("data", {}) or "image/svg+xml" in output.get("data", {})
                for output in cell.get("outputs", []))
            alt = cell.metadata.get("mystnb", {}).get("image", {}).get("alt", "")
            if draws and len(alt.split()) < 5:
                missing.append(f"{path.stem}: cell {cell.get('id')}")
    assert not missing, f"figure cells without a description (mystnb: image: alt): {missing}"


def test_the_whole_book_builds_from_its_stored_outputs_without_a_warning(tmp_path):
    """`make html`'s build, here among the unit tests (seconds): a Sphinx warning (a role with no
    target, such as ``{mod}`` in a book without API pages, a broken citation) fails it."""
    config = site.write_config(ROOT / "_config.yml", tmp_path / "stored.yml")
    build = subprocess.run([str(Path(sys.executable).with_name("jupyter-book")), "build", str(ROOT),
                            "--config", str(config), "--path-output", str(tmp_path / "out"), "-W", "-n",
                            "--keep-going"], capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=600)
    warnings = [line for line in (build.stdout + build.stderr).splitlines() if "WARNING" in line]
    assert build.returncode == 0 and not warnings, "\n".join(warnings) or build.stdout[-3000:]
    assert (tmp_path / "out" / "_build" / "html" / "book" / "evaluation.html").is_file()
