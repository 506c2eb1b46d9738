"""The built book as its readers see it: every page of both editions opened in Chromium.

``make browser`` (part of ``make test``) builds the HTML book from the stored outputs and the
student edition, then runs this file with ``CAMSURVEY_SITE`` and ``CAMSURVEY_STUDENT_SITE``
naming them. Run alone, it looks at ``_build/html`` and ``_build/student/_build/html`` if they
were built and skips the edition that was not. Screenshots of every page go to
``_build/screenshots/`` (``student/`` for the student edition) for a person to look at.

Each check is proved able to fail on a book broken on purpose (``write_broken_book``), built in a
temporary folder. Without Chromium (Debian's ``chromium``) every test here skips, saying so.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import browser_checks as checks
import nbformat
import pytest

from camsurvey.book.student import INSTRUCTOR_PAGES, stub_code

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "_build" / "screenshots"
NO_BROWSER = ("NO BROWSER: Chromium is not installed, so the book was not looked at in a browser. "
              "Install it with `apt-get install chromium` (.ci/run does).")


def site_folder(variable: str, default: Path) -> Path:
    """The built site named by ``variable``, which must exist; else ``default`` if it was built."""
    if os.environ.get(variable):
        site = Path(os.environ[variable]).resolve()
        assert (site / "index.html").is_file() or list(site.rglob("*.html")), (
            f"{variable}={site} holds no built book: `make html` (or `make student`) builds it")
        return site
    if not default.is_dir():
        pytest.skip(f"no built book at {default}: `make html` builds it, `make browser` builds and checks it")
    return default


@pytest.fixture(scope="module")
def chromium():
    executable = checks.find_chromium()
    if executable is None:
        pytest.skip(NO_BROWSER)
    return executable


def visit_edition(site: Path, names: list[str], screenshots: Path) -> dict[str, checks.Page]:
    return {page.name: page for page in checks.visit_site(site, names, screenshots)}


@pytest.fixture(scope="module")
def book(chromium) -> tuple[Path, dict[str, checks.Page]]:
    site = site_folder("CAMSURVEY_SITE", ROOT / "_build" / "html")
    return site, visit_edition(site, checks.toc_pages(ROOT / "_toc.yml"), SCREENSHOTS)


@pytest.fixture(scope="module")
def student(chromium) -> tuple[Path, dict[str, checks.Page]]:
    site = site_folder("CAMSURVEY_STUDENT_SITE", ROOT / "_build" / "student" / "_build" / "html")
    names = [name for name in checks.toc_pages(ROOT / "_toc.yml") if name not in INSTRUCTOR_PAGES]
    return site, visit_edition(site, names, SCREENSHOTS / "student")


def report(pages: dict[str, checks.Page], check, *args) -> str:
    """Every problem ``check`` finds, page by page (empty when there is none)."""
    lines = []
    for name, page in pages.items():
        lines += [f"{name}: {problem}" for problem in check(page, *args)]
    return "\n".join(lines)


# --- the book --------------------------------------------------------------------------------------


def test_every_page_of_the_table_of_contents_was_built_and_screenshotted(book):
    pages = book[1]
    assert set(pages) == set(checks.toc_pages(ROOT / "_toc.yml"))
    missing = [name for name in pages if not (SCREENSHOTS / (name.replace("/", "_") + ".png")).is_file()]
    assert not missing, f"no screenshot of {missing}"


def test_every_page_loads_without_console_errors(book):
    assert not report(book[1], checks.console_problems)


def test_no_request_leaves_the_site_so_the_book_works_offline(book):
    assert not report(book[1], checks.external_request_problems)


def test_every_figure_loads(book):
    assert not report(book[1], checks.image_problems)


def test_mathjax_typesets_every_equation(book):
    assert not report(book[1], checks.math_problems)


def test_each_equation_shows_the_survey_s_number_once(book):
    assert not report(book[1], checks.equation_problems)


def test_the_survey_s_numbered_equations_are_shown_with_their_numbers(book):
    shown = {number for page in book[1].values() for eq in page.equations for number in checks.equation_numbers(eq)}
    expected = {str(n) for n in range(1, checks.SURVEY_COUNT + 1)}
    assert expected <= shown, f"equations of the survey the book never numbers: {sorted(expected - shown, key=int)}"


def test_every_citation_resolves_to_the_bibliography(book):
    site, pages = book
    assert sum(len(page.citations) for page in pages.values()) > 20
    assert not report(pages, checks.citation_problems, site)


def test_nothing_in_the_main_column_is_cut_off_or_wider_than_it(book):
    assert not report(book[1], checks.overflow_problems)


def test_internal_links_resolve(book):
    site, pages = book
    assert not report(pages, checks.link_problems, site)


def test_exercise_and_solution_blocks_render(book):
    pages = book[1]
    assert not report(pages, checks.exercise_problems)
    exercises = {name: page.exercises for name, page in pages.items() if page.exercises}
    assert set(exercises) >= {"book/assignment_cam", "book/assignment_scorecam", "book/assignment_metric"}, exercises
    assert all(pages[name].solutions or pages[name].solution_cells for name in exercises), (
        "a page with exercises shows no solution block in the public book")


def test_the_public_book_does_not_show_solutions_before_the_reader_asks(book):
    assert not report(book[1], checks.visible_solution_problems)


# myst-nb gives a figure from a cell the image's file name as its alt text unless the cell names
# one (mystnb: image: alt); tests/book/test_site.py checks that every figure cell does.
def test_every_figure_has_alt_text(book):
    assert not report(book[1], checks.alt_text_problems)


# --- the student edition ---------------------------------------------------------------------------


def solution_texts() -> list[str]:
    """Lines of the assignments' solution cells that their student stubs do not keep."""
    texts, elsewhere = set(), set()
    for path in sorted((ROOT / "book").glob("*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            lines = {line.strip() for line in cell.source.splitlines()}
            if cell.cell_type == "code" and "solution" in cell.get("metadata", {}).get("tags", []):
                kept = {line.strip() for line in stub_code(cell.source).splitlines()}
                texts |= {line for line in lines if len(line) >= 25 and line not in kept}
            else:
                elsewhere |= lines
    return sorted(texts - elsewhere)


def test_the_student_edition_shows_no_solution(student):
    pages = student[1]
    texts = solution_texts()
    assert texts, "no solution cell found in the assignments: the check would prove nothing"
    assert "book/instructor" not in pages
    assert not report(pages, checks.student_solution_problems, texts)


def test_the_student_edition_loads_cleanly(student):
    site, pages = student
    assert any(page.exercises for page in pages.values()), "the student edition lost its exercises"
    problems = "\n".join(filter(None, [report(pages, check) for check in
                                       (checks.console_problems, checks.external_request_problems,
                                        checks.image_problems, checks.math_problems)]
                                + [report(pages, checks.link_problems, site)]))
    assert not problems


# --- each check can fail ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def broken(chromium, tmp_path_factory) -> tuple[Path, dict[str, checks.Page]]:
    source = checks.write_broken_book(tmp_path_factory.mktemp("broken-book"))
    build = subprocess.run([str(Path(sys.executable).with_name("jupyter-book")), "build", str(source)],
                           capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    site = source / "_build" / "html"
    names = checks.toc_pages(source / "_toc.yml")
    return site, {page.name: page for page in checks.visit_site(site, names)}


def test_a_broken_citation_fails_the_citation_check(broken):
    site, pages = broken
    assert any("[]" in problem for problem in checks.citation_problems(pages["citation"], site))
    assert len(pages["citation"].citations) == 2  # the one that resolves is not reported
    assert len(checks.citation_problems(pages["citation"], site)) == 1


def test_an_oversized_table_and_a_long_code_line_fail_the_column_check(broken):
    problems = checks.overflow_problems(broken[1]["table"])
    assert any(problem.startswith("table") and "runs past the column" in problem for problem in problems), problems
    assert any(problem.startswith("code") and "instead of wrapping" in problem for problem in problems), problems
    assert not checks.overflow_problems(broken[1]["citation"])


def test_a_missing_image_fails_the_image_check(broken):
    assert checks.image_problems(broken[1]["image"]) == ["image did not load: missing.png"]
    assert checks.console_problems(broken[1]["image"])  # and the browser says so in its console


def test_a_remote_image_fails_the_offline_check(broken):
    assert checks.external_request_problems(broken[1]["remote"]) == [
        "request leaves the site: https://example.invalid/figure.png"]
    assert not checks.external_request_problems(broken[1]["equations"])  # MathJax comes from the site


def test_broken_links_fail_the_link_check(broken):
    site, pages = broken
    problems = checks.link_problems(pages["index"], site)
    assert any("missing file" in p and "nowhere.html" in p for p in problems), problems
    assert any("missing anchor" in p and "no-such-anchor" in p for p in problems), problems


def test_a_double_number_a_wrong_number_and_bad_tex_fail_the_equation_checks(broken):
    problems = checks.equation_problems(broken[1]["equations"])
    assert any(p.startswith("numbered twice, (1) (3)") for p in problems), problems
    assert any(p.startswith("(4) is the survey's") for p in problems), problems
    assert checks.math_problems(broken[1]["equations"])


def test_a_solution_in_plain_view_fails_the_solution_check(broken):
    problems = checks.visible_solution_problems(broken[1]["exercises"])
    assert any(p.startswith("solution in plain view") for p in problems), problems
    assert any(p.startswith("solution code in plain view") and "the answer" in p for p in problems), problems
    assert len(checks.student_solution_problems(broken[1]["exercises"], ["activations.mean(dim=(-2, -1))"])) == 3
