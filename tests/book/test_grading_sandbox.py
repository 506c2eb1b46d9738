"""Grades cannot be forged, and grading cannot hang or escape: camsurvey grade's sandbox.

One grading run over five submissions (each a process and a Jupyter kernel, so this module
takes about a minute): an honest one, a forger that attacks the old log and the grader's
functions and calls the reference, one that deletes an exercise, one that will not stop, and a
file that is not a notebook. Two of them share a file name in different folders.
"""

from __future__ import annotations

import json
import os

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from camsurvey.book import grading, sandbox

HONEST = [
    "import torch",
    "def my_cam_map(fc_weights, activations):\n    return (fc_weights[:, :, None, None] * activations).sum(1)",
    "def my_gradcam_weights(gradients):\n    return gradients.mean((-2, -1))",
    "def my_gradcam_map(weights, activations):\n    return torch.relu((weights[:, :, None, None] * activations).sum(1))",
    "from camsurvey.book import grading\nreport = grading.check('cam_map', my_cam_map, seed=0)",
]

FORGER = [
    # the old grader's log, the grader's own functions, another student's file: none of it counts
    "import json, os\n"
    "log = os.environ.get('CAMSURVEY_GRADE_LOG')\n"
    "if log:\n"
    "    open(log, 'a').write(json.dumps({'exercise': 'gradcam_map', 'passed': True}) + '\\n')\n"
    "open(os.environ['HOME'] + '/../answers-forged.pt', 'w').write('x')",
    "from camsurvey.book import grading\n"
    "grading._matches = lambda *args: True\n"
    "grading.verdict = lambda *args: None",
    "def my_cam_map(fc_weights, activations):\n    return fc_weights  # wrong",
    "from camsurvey.methods import gradient\n"
    "def my_gradcam_weights(gradients):\n    return gradient.gradcam_weights(gradients)  # the package's answer",
    "raise ValueError('a cell that fails')",
    "while True:\n    pass",
    "def my_gradcam_map(weights, activations):\n    import sys\n    sys.exit(0)",
]

DELETER = [  # the failing exercise deleted: the denominator still counts it
    "import torch",
    "def my_cam_map(fc_weights, activations):\n    return (fc_weights[:, :, None, None] * activations).sum(1)",
    "def my_gradcam_weights(gradients):\n    return gradients.mean((-2, -1))",
]

STUBBORN = [  # ignores the interrupt of its time limit
    "def my_insertion_auc(model, images, saliency, target, steps):\n    return 0",
    "while True:\n    try:\n        while True:\n            pass\n    except KeyboardInterrupt:\n        pass",
]


def write(path, cells, assignment=None):
    notebook = new_notebook(cells=[new_markdown_cell("# homework")] + [new_code_cell(c) for c in cells])
    if assignment:
        notebook.metadata["camsurvey"] = {"assignment": assignment}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, str(path))
    return path


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("submissions")
    paths = [write(root / "a" / "hw.ipynb", HONEST, "assignment_cam"),
             write(root / "b" / "hw.ipynb", FORGER, "assignment_cam"),
             write(root / "assignment_cam-seed3.ipynb", DELETER),
             write(root / "c" / "late.ipynb", STUBBORN, "assignment_metric")]
    (root / "d.ipynb").write_text("{ this is not a notebook")
    paths.append(root / "d.ipynb")
    before = {path: path.read_bytes() for path in paths}
    (root / "grades").mkdir()  # the README's `-o grades/`, a folder that already exists
    os.environ["CAMSURVEY_GRADE_LOG"] = str(root / "log.jsonl")
    try:
        report = sandbox.grade_notebooks(paths, root / "grades", cell_timeout=8, timeout=240)
    finally:
        del os.environ["CAMSURVEY_GRADE_LOG"]
    return root, paths, report, before


def rows(graded):
    return {row["submission"]: row for row in graded[2]["submissions"]}


def test_an_honest_submission_gets_every_exercise(graded):
    paths = graded[1]
    honest = rows(graded)[str(paths[0])]
    assert (honest["status"], honest["passed"], honest["total"], honest["flagged"]) == ("graded", 3, 3, [])
    assert all(exercise["passed_cases"] == exercise["total"] == 8 for exercise in honest["exercises"])


def test_a_forger_gets_only_what_its_functions_compute_and_is_flagged(graded):
    root, paths = graded[:2]
    forger = rows(graded)[str(paths[1])]
    assert forger["status"] == "graded" and forger["total"] == 3
    assert forger["passed"] == 1  # gradcam_weights, computed by the package itself ...
    assert forger["flagged"] == ["camsurvey.methods.gradient.gradcam_weights"]  # ... and flagged
    by_name = {e["exercise"]: e for e in forger["exercises"]}
    assert not by_name["cam_map"]["passed"] and "expected shape" in by_name["cam_map"]["feedback"][1]
    assert "sys.exit" in by_name["gradcam_map"]["feedback"][1]
    problems = " | ".join(forger["problems"])
    assert "raised ValueError: a cell that fails" in problems and "time limit" in problems
    assert not (root / "log.jsonl").exists()  # the grader keeps no log a submission could write


def test_the_score_counts_every_exercise_of_the_assignment(graded):
    _, paths, _, _ = graded
    deleter = rows(graded)[str(paths[2])]
    assert deleter["assignment"] == "assignment_cam"  # from the file name
    assert (deleter["passed"], deleter["total"]) == (2, 3)
    missing = next(e for e in deleter["exercises"] if not e["passed"])
    assert missing["exercise"] == "gradcam_map" and "not defined" in " ".join(missing["feedback"])


def test_a_submission_that_will_not_stop_fails_alone_and_leaves_no_process(graded):
    _, paths, _, _ = graded
    stubborn, broken = rows(graded)[str(paths[3])], rows(graded)[str(paths[4])]
    assert stubborn["status"].startswith("failed:") and "interrupt" in stubborn["status"]
    assert stubborn["seconds"] < 200
    assert broken["status"].startswith("failed: not a notebook")
    leftovers = [pid for pid in os.listdir("/proc") if pid.isdigit()
                 and "camsurvey-grade-" in (os.readlink(f"/proc/{pid}/cwd") if os.path.exists(f"/proc/{pid}/cwd") else "")]
    assert not leftovers


def test_the_report_and_the_executed_copies_are_written_once_each_and_submissions_are_untouched(graded):
    root, paths, report, before = graded
    assert json.loads((root / "grades" / "grades.json").read_text()) == report
    executed = sorted(p.name for p in (root / "grades" / "executed").iterdir())
    assert executed == ["001-hw.ipynb", "002-hw.ipynb", "003-assignment_cam-seed3.ipynb", "004-late.ipynb"]
    assert {path: path.read_bytes() for path in paths} == before
    assert all(sandbox.summary(row).startswith(row["submission"]) for row in report["submissions"])


def test_answers_files_are_read_as_data_only(tmp_path):
    import pickle

    class Boom:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    (tmp_path / "cam_map.pt").write_bytes(pickle.dumps({"values": [Boom()], "problems": [None], "reference_calls": [[]]}))
    assert isinstance(grading.load_answers(tmp_path / "cam_map.pt", 1), str)
    assert not (tmp_path / "pwned").exists()


def test_every_assignment_lists_the_exercises_its_cells_check():
    import re

    from camsurvey.book import notebooks

    for name, path in notebooks.chapters().items():
        if not name.startswith("assignment_") or name == "assignment_scenes":
            continue
        checked = re.findall(r"grading\.check\(\"(\w+)\"", "\n".join(c.source for c in nbformat.read(path, 4).cells))
        assert sorted(grading.assignment_exercises(path)) == sorted(checked), name


def test_the_instructors_page_states_the_grader_s_real_limits_and_what_it_does_not_protect():
    from camsurvey import files

    page = (files.BOOK_DIR / "instructor.md").read_text()
    assert f"`--cell-timeout`, {sandbox.CELL_TIMEOUT} s" in page and f"`--timeout`, {sandbox.SUBMISSION_TIMEOUT} s" in page
    assert "not** a security boundary" in page and "student edition" in page
