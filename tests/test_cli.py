"""`python -m camsurvey run CHAPTER -p NAME VALUE`: papermill with checked parameters."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from camsurvey.book import notebooks


def _run(*args, cwd):
    return subprocess.run([sys.executable, "-m", "camsurvey", *args], cwd=cwd, capture_output=True, text=True)


def test_run_writes_an_executed_copy_with_the_parameters_outside_book(tmp_path):
    result = _run("run", "intro", "-p", "photos", "['coffee']", "-p", "method", "'xgradcam'",
                  "-o", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    executed = json.loads((tmp_path / "out" / "intro.ipynb").read_text())
    injected = [c for c in executed["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert injected and "xgradcam" in "".join(injected[0]["source"])
    text = json.dumps(executed["cells"])
    assert "espresso" in text and "chelsea" not in "".join(
        "".join(o.get("text", "")) for c in executed["cells"] for o in c.get("outputs", []))


def test_model_reruns_a_chapter_on_another_network(tmp_path):
    result = _run("run", "intro", "-p", "model", "'efficientnet_lite1'", "-p", "photos", "['coffee']",
                  "-o", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    executed = json.loads((tmp_path / "out" / "intro.ipynb").read_text())
    printed = "".join("".join(o.get("text", "")) for c in executed["cells"] for o in c.get("outputs", []))
    assert "efficientnet_lite1 | default CAM layer" in printed and "efficientnet_lite0" not in printed


def test_unknown_parameter_is_rejected_before_anything_executes(tmp_path):
    result = _run("run", "intro", "-p", "no_such_parameter", "1", "-o", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 2
    assert "no parameter 'no_such_parameter'" in result.stderr and "photos" in result.stderr
    assert not (tmp_path / "out").exists()


def test_value_of_the_wrong_type_is_rejected(tmp_path):
    result = _run("run", "intro", "-p", "top", "'five'", "-o", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 2 and "must be like its default" in result.stderr
    assert not (tmp_path / "out").exists()


def test_unknown_chapter_lists_the_chapters(tmp_path):
    result = _run("run", "no_such_chapter", cwd=tmp_path)
    assert result.returncode == 2 and "intro" in result.stderr


def test_an_existing_output_is_not_overwritten_without_force(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "intro.ipynb").write_text("my own notes")
    with pytest.raises(FileExistsError, match="--force"):
        notebooks.run_chapter("intro", {}, out)
    assert (out / "intro.ipynb").read_text() == "my own notes"


def test_output_inside_book_is_refused():
    with pytest.raises(ValueError, match="outside book"):
        notebooks.run_chapter("intro", {}, notebooks.BOOK / "runs")


def test_every_chapter_lists_its_parameters():
    for name, path in notebooks.chapters().items():
        assert notebooks.chapter_parameters(path), f"{name} has no parameters"
