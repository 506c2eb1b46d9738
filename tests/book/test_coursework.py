"""Coursework: the grader accepts the reference solutions, names the typical mistakes, and the
student edition and the variants carry no solution."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
import torch

import camsurvey as cs
from camsurvey.book import grading, student

ROOT = Path(__file__).resolve().parents[2]
ASSIGNMENTS = sorted((ROOT / "book").glob("assignment_*.ipynb"))


def test_there_are_at_least_four_assignments_in_the_toc():
    import yaml

    assert len(ASSIGNMENTS) >= 4
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    exercises = next(c for c in toc["chapters"] if c["file"] == "book/exercises")
    listed = {s["file"] for s in exercises["sections"]}
    assert {f"book/{p.stem}" for p in ASSIGNMENTS} <= listed
    assert "book/instructor" in [c["file"] for c in toc["chapters"]]


@pytest.mark.parametrize("name", sorted(set(grading.EXERCISES) - {"insertion_auc"}))
def test_reference_solutions_pass_the_grader(name):
    report = grading.check(name, grading.EXERCISES[name].reference, verbose=False)
    assert report.passed and report.passed_cases == report.total and not report.feedback


def _solution_functions(path: Path) -> dict:
    """The functions the book's solution cells define (the 'student code' that the stored outputs grade)."""
    namespace = {}
    exec("import numpy as np\nimport torch\nimport camsurvey as cs\n", namespace)
    for cell in nbformat.read(path, as_version=4).cells:
        if "solution" in cell.metadata.get("tags", []) and "def " in cell.source:
            exec(cell.source, namespace)
    return {k[3:]: v for k, v in namespace.items() if k.startswith("my_")}


def test_the_books_solution_cells_pass_the_grader():
    checked = set()
    for path in ASSIGNMENTS:
        for name, function in _solution_functions(path).items():
            cases = 2 if name == "insertion_auc" else None
            assert grading.check(name, function, cases=cases, seed=3, verbose=False).passed, (path.name, name)
            checked.add(name)
    assert checked == set(grading.EXERCISES)


def test_a_missing_relu_fails_with_the_relu_hint():
    report = grading.check("gradcam_map", lambda w, a: (w[:, :, None, None] * a).sum(1), verbose=False)
    assert not report.passed
    text = str(report)
    assert "case 1" in text and "expected" in text and "got" in text and "missing ReLU" in text


def test_averaging_over_the_wrong_axis_fails_with_the_axis_hint():
    report = grading.check("gradcam_weights", lambda g: g.mean(dim=1), verbose=False)
    assert not report.passed and "channel axis (dim 1)" in str(report) and "expected shape" in str(report)
    report = grading.check("scorecam_weights", lambda m, s: torch.softmax(m - s[:, None], dim=0), verbose=False)
    assert not report.passed and "wrong axis" in str(report)
    masks = lambda a, size: (lambda u: (u - u.min()) / (u.max() - u.min()))(
        torch.nn.functional.interpolate(a[None], size=size, mode="bilinear", align_corners=False)[0])
    assert "over all channels at once" in str(grading.check("scorecam_masks", masks, verbose=False))


def test_an_off_by_one_in_the_insertion_auc_fails_with_the_off_by_one_hint():
    def skips_the_blurred_start(model, images, saliency, target, steps):
        curve = cs.metrics.insertion_curve(model, images, saliency, target, steps=steps)[:, 1:]
        return cs.metrics.curve_area(curve)

    report = grading.check("insertion_auc", skips_the_blurred_start, cases=2, verbose=False)
    assert not report.passed and "off-by-one" in str(report) and "steps + 1 points" in str(report)


def test_the_insertion_reference_is_the_metrics_modules_own_curve():
    case = grading.EXERCISES["insertion_auc"].make_case(torch.Generator().manual_seed(5), 0)
    curve = cs.metrics.insertion_curve(*list(case.values())[:4], steps=case["steps"])
    assert torch.equal(cs.metrics.curve_area(curve), grading.EXERCISES["insertion_auc"].reference(*case.values()))


@pytest.mark.parametrize("mistake", grading.EXERCISES["insertion_auc"].mistakes, ids=lambda m: m.name)
def test_each_insertion_mistake_is_recognised_by_its_own_hint(mistake):
    report = grading.check("insertion_auc", mistake.compute, cases=2, verbose=False)
    assert not report.passed and mistake.hint in str(report)


def test_a_function_that_calls_the_reference_passes_but_is_flagged():
    from camsurvey.methods import gradient

    report = grading.check("gradcam_map", lambda w, a: gradient.gradcam_map(w, a), verbose=False)
    assert report.passed and "camsurvey.methods.gradient.gradcam_map" in report.reference_calls
    assert "instructor" in str(report)
    assert not grading.check("gradcam_map", lambda w, a: torch.relu((w[:, :, None, None] * a).sum(1)),
                             verbose=False).reference_calls


def test_check_reports_odd_returns_and_exits_instead_of_raising():
    ragged = grading.check("gradcam_weights", lambda g: (1, [2, 3]), verbose=False)
    assert not ragged.passed and "not a rectangular array" in str(ragged)
    exits = grading.check("gradcam_weights", lambda g: __import__("sys").exit(1), verbose=False)
    assert not exits.passed and "sys.exit" in str(exits)
    for seed in (2.5, -1, True, "0"):
        with pytest.raises(ValueError, match="seed"):
            grading.check("gradcam_weights", lambda g: g, seed=seed)


def test_a_stub_is_told_to_write_code_and_errors_are_reported_not_raised():
    def stub(gradients):
        raise NotImplementedError

    assert "YOUR CODE HERE" in str(grading.check("gradcam_weights", stub, verbose=False))
    report = grading.check("gradcam_weights", lambda g: g.nonexistent(), verbose=False)
    assert "AttributeError" in str(report) and "hint" in str(report)


def test_grading_is_seeded():
    wrong = lambda g: g.sum(dim=(-2, -1))
    assert str(grading.check("gradcam_weights", wrong, seed=4, verbose=False)) == \
        str(grading.check("gradcam_weights", wrong, seed=4, verbose=False))
    with pytest.raises(ValueError, match="choose one of"):
        grading.check("no_such_exercise", wrong)


def test_stub_code_keeps_signature_and_docstring_only():
    source = 'import torch\n\ndef my_f(x):\n    """Doc."""\n    secret = x * 42\n    return secret\n\nvalue = 3\n'
    stub = student.stub_code(source)
    assert "def my_f(x):" in stub and '"""Doc."""' in stub and "# YOUR CODE HERE" in stub
    assert "secret" not in stub and "42" not in stub and "value = 3" not in stub
    compile(stub, "stub", "exec")


def test_student_edition_contains_no_solution_text(tmp_path):
    out = student.make_student_source(ROOT, tmp_path / "student-src")
    solution_lines, shared_lines = set(), set()
    for path in ASSIGNMENTS:
        for cell in nbformat.read(path, as_version=4).cells:
            if "solution" not in cell.metadata.get("tags", []):
                shared_lines |= {line.strip() for line in cell.source.splitlines()}
            else:
                solution_lines |= {line.strip() for line in cell.source.splitlines()
                                   if len(line.strip()) >= 25 and not line.strip().startswith(("def ", '"""', "import", "from"))}
    solution_lines -= shared_lines
    assert solution_lines
    for path in out.rglob("*"):
        if path.suffix in (".ipynb", ".md"):
            text = path.read_text()
            assert "{solution}" not in text, path
            if path.name.startswith("assignment_"):
                sources = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells)
                leaked = [line for line in solution_lines if line in sources]
                assert not leaked, (path.name, leaked[:3])
    for path in ASSIGNMENTS:
        notebook = nbformat.read(out / "book" / path.name, as_version=4)
        assert all(not c.get("outputs") for c in notebook.cells if c.cell_type == "code")
        assert sum("# YOUR CODE HERE" in c.source for c in notebook.cells) >= 1
    assert "{exercise}" in (out / "book" / "exercises.md").read_text()
    assert "instructor" not in (out / "_toc.yml").read_text()
    assert "off" == __import__("yaml").safe_load((out / "_config.yml").read_text())["execute"]["execute_notebooks"]


def test_variants_differ_by_seed_and_hold_no_solution(tmp_path):
    written = grading.make_variants("assignment_cam", [1, 2, 3], tmp_path)
    manifest = json.loads((tmp_path / "variants.json").read_text())["variants"]
    assert len(written) == 3 and len({json.dumps(v, sort_keys=True) for v in manifest.values()}) == 3
    assert manifest["2"]["seed"] == 2
    for path in written:
        notebook = nbformat.read(path, as_version=4)
        injected = [c for c in notebook.cells if "injected-parameters" in c.metadata.get("tags", [])]
        assert injected and "seed" in injected[0].source
        assert not any("solution" in c.metadata.get("tags", []) for c in notebook.cells)
    assert grading.variant_parameters(ROOT / "book" / "assignment_cam.ipynb", 2) == manifest["2"]


def test_the_public_book_folds_every_solution_away():
    """Solutions in plain view: in the public book every solution cell is folded (hide-input, closed until
    clicked) and every {solution} block is a closed dropdown; the student edition has none of them."""
    import re

    pages = ASSIGNMENTS + [ROOT / "book" / "exercises.md"]
    for path in pages:
        if path.suffix == ".ipynb":
            notebook = nbformat.read(path, as_version=4)
            for cell in notebook.cells:
                tags = cell.metadata.get("tags", [])
                if "solution" in tags:
                    assert "hide-input" in tags, (path.name, cell.source[:40])
            texts = [c.source for c in notebook.cells if c.cell_type == "markdown"]
        else:
            texts = [path.read_text()]
        for text in texts:
            for block in re.findall(r"\{solution\}[^\n]*\n((?::[^\n]*\n)*)", text):
                assert ":class: dropdown" in block, (path.name, block)


def test_the_student_edition_shows_the_stubs_unfolded(tmp_path):
    out = student.make_student_source(ROOT, tmp_path / "student-src")
    for path in ASSIGNMENTS:
        for cell in nbformat.read(out / "book" / path.name, as_version=4).cells:
            if "student" in cell.metadata.get("tags", []):
                assert "hide-input" not in cell.metadata["tags"] and "# YOUR CODE HERE" in cell.source
