"""The helpers of the browser test (tests/book/browser_checks.py), without a browser."""

from __future__ import annotations

from pathlib import Path

import browser_checks as checks
import pytest

ROOT = Path(__file__).resolve().parents[2]
SURVEY_PLACES = [folder / "shared" / "seed" / "cam-survey.txt" for folder in (ROOT, *ROOT.parents)]


def page(**fields) -> checks.Page:
    return checks.Page(name="book/x", path=Path("/site/book/x.html"), **fields)


def test_toc_pages_lists_root_chapters_and_sections_in_reading_order(tmp_path):
    toc = tmp_path / "_toc.yml"
    toc.write_text("format: jb-book\nroot: book/intro\nchapters:\n  - file: book/cams\n    sections:\n"
                   "      - file: book/deploy.ipynb\n  - file: book/smoothing\n")
    assert checks.toc_pages(toc) == ["book/intro", "book/cams", "book/deploy", "book/smoothing"]


def test_the_book_s_toc_gives_every_chapter():
    names = checks.toc_pages(ROOT / "_toc.yml")
    assert names[0] == "book/intro" and "book/deploy" in names and "book/bibliography" in names
    assert all(list(ROOT.glob(name + ".*")) for name in names)


def test_survey_left_sides_are_the_survey_s_own():
    text = next((p.read_text() for p in SURVEY_PLACES if p.is_file()), None)
    if text is None:
        pytest.skip("the survey's text (shared/seed/cam-survey.txt) is not beside the repository")
    survey = checks.survey_equations(text)
    assert set(survey) == set(checks.SURVEY_LEFT_SIDES)
    for number, tex in survey.items():
        assert checks.left_side(tex) == checks.left_side(checks.SURVEY_LEFT_SIDES[number]), number
    assert max(int(n) for n in survey) == checks.SURVEY_COUNT


def test_survey_equations_reads_the_number_after_quad():
    text = r"x $$a_n = \frac{1}{Z} \quad (3)$$ y $$b = 1$$ z $$IC = 1 \quad (9)$$"
    assert checks.survey_equations(text) == {"3": r"a_n = \frac{1}{Z}", "9": "IC = 1"}


def test_left_side_ignores_typesetting():
    assert checks.left_side(r"L^c_{\text{Score-CAM}} = x") == checks.left_side(r"L_{Score-CAM}^c = y")
    assert checks.left_side(r"\mathrm{IoU} = 1") == {"IoU"}
    assert checks.left_side(r"\mathrm{AD} = 1") != checks.left_side(r"\mathrm{IC} = 1")


def test_equation_numbers_sees_sphinx_s_number_the_tag_and_a_number_typed_by_hand():
    assert checks.equation_numbers({"tex": "a = b", "sphinx": "(3)"}) == ["3"]
    assert checks.equation_numbers({"tex": r"a = b \tag{3}", "sphinx": None, "mathjax_tag": True}) == ["3"]
    assert checks.equation_numbers({"tex": r"a = b \qquad (6)", "sphinx": "(1)"}) == ["1", "6"]
    assert checks.equation_numbers({"tex": r"a = b", "sphinx": None}) == []


def test_equation_problems_finds_double_repeated_foreign_and_wrong_numbers():
    good = page(equations=[{"tex": r"a_n = \frac{1}{Z}", "sphinx": "(3)"},
                           {"tex": r"\mathrm{IoU} = 1", "sphinx": "(7)"}, {"tex": "x = 1", "sphinx": None}])
    assert checks.equation_problems(good) == []
    twice = page(equations=[{"tex": r"a_n = 1 \tag{3}", "sphinx": "(1)", "mathjax_tag": True}])
    assert any(p.startswith("numbered twice, (1) (3)") for p in checks.equation_problems(twice))
    repeated = page(equations=[{"tex": "a_n = 1", "sphinx": "(3)"}, {"tex": "a_n = 2", "sphinx": "(3)"}])
    assert any("appears twice" in p for p in checks.equation_problems(repeated))
    foreign = page(equations=[{"tex": "z = 1", "sphinx": "(11)"}])
    assert any("not a number of the survey" in p for p in checks.equation_problems(foreign))
    wrong = page(equations=[{"tex": r"\mathrm{AD} = 1", "sphinx": "(9)"}])
    assert any(p.startswith("(9) is the survey's") for p in checks.equation_problems(wrong))


def test_link_problems_resolve_files_and_anchors(tmp_path):
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "a.html").write_text('<h1 id="top">A</h1><a name="old">x</a>')
    base = (tmp_path / "book" / "a.html").as_uri()
    links = [base, base + "#top", base + "#old", base + "#gone", (tmp_path / "book" / "b.html").as_uri(),
             "https://example.org/elsewhere", "mailto:someone@example.org"]
    assert checks.link_problems(page(links=links), tmp_path) == [
        f"link to a missing anchor: {base}#gone", f"link to a missing file: {(tmp_path / 'book' / 'b.html').as_uri()}"]


def test_citation_problems_want_a_link_to_an_entry(tmp_path):
    (tmp_path / "bib.html").write_text('<div id="id7">Doe, 2020</div>')
    entry = (tmp_path / "bib.html").as_uri()
    cited = page(citations=[{"text": "[Doe, 2020]", "links": [entry + "#id7"]}])
    assert checks.citation_problems(cited, tmp_path) == []
    for citation in ({"text": "[]", "links": []}, {"text": "[Doe, 2020]", "links": [entry + "#id8"]},
                     {"text": "[nokey]", "links": []}):
        assert checks.citation_problems(page(citations=[citation]), tmp_path), citation


def test_image_and_alt_text_problems():
    images = [{"src": "../_images/a.png", "width": 640, "alt": "Grad-CAM of the cat"},
              {"src": "../_images/b.png", "width": 0, "alt": "a figure that failed"},
              {"src": "../_images/c.png", "width": 640, "alt": "../_images/c.png"},
              {"src": "../_images/d.png", "width": 640, "alt": ""}]
    assert checks.image_problems(page(images=images)) == ["image did not load: ../_images/b.png"]
    assert [p.split(":")[1].split()[0] for p in checks.alt_text_problems(page(images=images))] == [
        "../_images/c.png", "../_images/d.png"]


def test_student_solution_problems_find_solution_text_in_the_page():
    clean = page(text="Write my_cam_map. # YOUR CODE HERE")
    assert checks.student_solution_problems(clean, ["return torch.einsum('bk,bkhw->bhw', w, a)"]) == []
    leaked = page(text="return torch.einsum('bk,bkhw->bhw', w, a)")
    assert checks.student_solution_problems(leaked, ["return torch.einsum('bk,bkhw->bhw', w, a)"])
    assert checks.student_solution_problems(page(solutions=[{"text": "Solution", "visible": False}]), [])


def test_the_broken_book_breaks_one_thing_per_page(tmp_path):
    source = checks.write_broken_book(tmp_path)
    names = checks.toc_pages(source / "_toc.yml")
    assert names[0] == "index" and {"citation", "image", "remote", "equations", "table", "exercises"} <= set(names)
    assert (source / "table.ipynb").is_file() and "nosuchkey2020" in (source / "citation.md").read_text()


def test_exercise_problems_report_directives_left_as_text():
    assert checks.exercise_problems(page(raw_directives=[":::{exercise} as-cam-map"]))
    assert checks.exercise_problems(page()) == []
