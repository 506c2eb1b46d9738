"""Files are never lost: the one rule of camsurvey.files, and every command that writes follows it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import nbformat
import pytest
import torch
from torch import nn

from camsurvey import files
from camsurvey.book import grading, notebooks, sandbox, student
from camsurvey.models.base import CamModel, GlobalAvgPool, Normalize

ROOT = files.ROOT


def camsurvey(*arguments, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "camsurvey", *map(str, arguments)], capture_output=True, text=True,
                          cwd=cwd, env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=300)


# --- the rule -------------------------------------------------------------------------------

@pytest.mark.parametrize("protected", ["data", "book", "data/handouts", "book/x.ipynb"])
def test_the_projects_data_and_book_folders_are_refused(protected):
    with pytest.raises(ValueError, match=r"(data|book)/ folder"):
        files.check_output(ROOT / protected)


def test_a_link_to_a_protected_folder_is_judged_where_it_points(tmp_path):
    (tmp_path / "sneaky").symlink_to(ROOT / "data")
    with pytest.raises(ValueError, match="data/ folder"):
        files.ensure_folder(tmp_path / "sneaky")


def test_an_input_and_what_lies_inside_it_are_refused(tmp_path):
    source = tmp_path / "source"
    (source / "book").mkdir(parents=True)
    with pytest.raises(ValueError, match="replace the input"):
        files.check_output(source / "book" / "x.md", inputs=[source / "book"])
    with pytest.raises(ValueError, match="replace the input"):
        files.check_output(source / "hw.ipynb", inputs=[source / "hw.ipynb"])
    files.check_output(source / "out.json", inputs=[source / "book"])  # beside an input is fine
    with pytest.raises(ValueError, match="replace the input"):  # but not replacing the folder that holds it
        files.check_output(source, inputs=[source / "book"], replaces_folder=True)


def test_a_file_is_never_overwritten_without_force_and_a_failed_write_keeps_the_old_one(tmp_path):
    target = tmp_path / "new" / "deeper" / "report.json"
    files.write_file(target, "first")
    assert target.read_text() == "first"  # the folder was created
    with pytest.raises(FileExistsError, match="--force"):
        files.write_file(target, "second")
    with pytest.raises(RuntimeError, match="half-way"):
        with files.staged_file(target, force=True) as partial:
            partial.write_text("half a rep")
            raise RuntimeError("half-way")
    assert target.read_text() == "first"
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.json"]  # no temporary left behind
    files.write_file(target, "second", force=True)
    assert target.read_text() == "second"


def test_a_link_at_the_target_is_replaced_never_written_through(tmp_path):
    precious = tmp_path / "precious.json"
    precious.write_text("the user's data")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "report.json").symlink_to(precious)
    with pytest.raises(FileExistsError):
        files.write_file(tmp_path / "out" / "report.json", "report")
    files.write_file(tmp_path / "out" / "report.json", "report", force=True)
    assert precious.read_text() == "the user's data"
    assert not (tmp_path / "out" / "report.json").is_symlink()
    assert (tmp_path / "out" / "report.json").read_text() == "report"


def test_a_whole_folder_is_written_only_into_a_new_empty_or_marked_folder(tmp_path):
    mine = tmp_path / "thesis"
    mine.mkdir()
    (mine / "thesis.tex").write_text("three years of work")
    with pytest.raises(ValueError, match="did not write"):
        with files.staged_folder(mine, ".marker") as staging:
            (staging / "page.md").write_text("x")
    assert (mine / "thesis.tex").read_text() == "three years of work" and len(list(mine.iterdir())) == 1

    ours = tmp_path / "edition"
    with files.staged_folder(ours, ".marker") as staging:
        (staging / "page.md").write_text("one")
    with pytest.raises(RuntimeError):  # a failed rewrite leaves the previous edition whole
        with files.staged_folder(ours, ".marker") as staging:
            (staging / "page.md").write_text("two")
            raise RuntimeError("the build broke")
    assert (ours / "page.md").read_text() == "one"
    with files.staged_folder(ours, ".marker") as staging:
        (staging / "page.md").write_text("three")
    assert (ours / "page.md").read_text() == "three" and (ours / ".marker").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["edition", "thesis"]  # no staging folders left


# --- the commands ----------------------------------------------------------------------------

def test_student_edition_refuses_a_folder_of_the_users_the_checkout_and_data(tmp_path):
    users = tmp_path / "d"
    users.mkdir()
    (users / "thesis.tex").write_text("mine")
    for arguments in (["-o", users], ["-s", ".", "-o", "."], ["-o", "data"], ["-o", "book/student"]):
        done = camsurvey("student", *arguments)
        assert done.returncode == 2 and "refusing" in done.stderr, (arguments, done.stderr)
    assert (users / "thesis.tex").read_text() == "mine" and (ROOT / ".git").exists()
    assert (ROOT / "data" / "photos.json").is_file()


def test_student_edition_rewrites_its_own_folder(tmp_path):
    first = student.make_student_source(ROOT, tmp_path / "edition")
    (first / "book" / "stale.md").write_text("from an older edition")
    again = student.make_student_source(ROOT, tmp_path / "edition")
    assert (again / student.STUDENT_MARKER).is_file() and not (again / "book" / "stale.md").exists()


def test_run_refuses_data_and_book_and_never_overwrites_without_force(tmp_path):
    for folder in ("data", "data/handouts", "book"):
        with pytest.raises(ValueError, match="folder"):
            notebooks.run_chapter("intro", {}, ROOT / folder)
    existing = tmp_path / "intro.ipynb"
    existing.write_text("my edited copy")
    with pytest.raises(FileExistsError, match="--force"):
        notebooks.run_chapter("intro", {}, tmp_path)
    assert existing.read_text() == "my edited copy"


def test_run_reports_the_one_line_that_matters_when_a_chapter_fails(tmp_path):
    done = camsurvey("run", "intro", "-p", "photos", "['nope']", "-o", tmp_path)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "nope" in errors[0] and "FileNotFoundError" in errors[0], done.stderr
    assert "Traceback" not in done.stderr and "papermill" not in errors[0]
    assert (tmp_path / "intro.failed.ipynb").is_file() and not (tmp_path / "intro.ipynb").exists()


def test_variants_refuse_data_repeated_seeds_and_keep_edited_handouts(tmp_path):
    with pytest.raises(ValueError, match="data/ folder"):
        grading.make_variants("assignment_cam", [1], ROOT / "data" / "handouts")
    assert not (ROOT / "data" / "handouts").exists()
    with pytest.raises(ValueError, match="more than once"):
        grading.make_variants("assignment_cam", [1, 1], tmp_path)
    written = grading.make_variants("assignment_cam", [1, 2], tmp_path)
    written[0].write_text("a teacher's edited handout")
    with pytest.raises(FileExistsError, match="--force"):
        grading.make_variants("assignment_cam", [1, 2], tmp_path)
    assert written[0].read_text() == "a teacher's edited handout"
    grading.make_variants("assignment_cam", [1, 2], tmp_path, force=True)
    assert nbformat.read(written[0], as_version=4).metadata["camsurvey"]["assignment"] == "assignment_cam"


def test_grade_refuses_to_write_over_a_submission_or_into_data(tmp_path):
    submission = tmp_path / "carl.ipynb"
    submission.write_text("{}")
    with pytest.raises(ValueError, match=r"a \.ipynb file"):
        sandbox.grade_notebooks([submission], str(submission))
    with pytest.raises(ValueError, match="data/ folder"):
        sandbox.grade_notebooks([submission], ROOT / "data" / "grades")
    with pytest.raises(ValueError, match="replace the input"):
        sandbox.grade_notebooks([submission], tmp_path / "carl.ipynb" / "grades.json")
    assert submission.read_text() == "{}"
    existing = tmp_path / "grades"
    existing.mkdir()
    (existing / "grades.json").write_text("last week's grades")
    with pytest.raises(FileExistsError, match="--force"):
        sandbox.grade_notebooks([submission], existing)
    assert (existing / "grades.json").read_text() == "last week's grades"


# --- the ONNX export -----------------------------------------------------------------------

def tiny_model() -> CamModel:
    torch.manual_seed(0)
    stages = OrderedDict(normalize=Normalize([0.5] * 3, [0.25] * 3),
                         conv=nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU()),
                         pool=GlobalAvgPool(), fc=nn.Linear(4, 3))
    return CamModel(stages, name="tiny", default_layer="conv", categories=["a", "b", "c"]).eval().requires_grad_(False)


def test_export_replaces_a_link_in_its_folder_instead_of_writing_through_it(tmp_path):
    from camsurvey import deploy

    precious = tmp_path / "scenes_cnn.json"
    precious.write_text('{"the": "data"}')
    folder = tmp_path / "e"
    folder.mkdir()
    (folder / "features.onnx").symlink_to(precious)
    deploy.export(tiny_model(), folder, input_size=32, overwrite=True, threads=1)
    assert precious.read_text() == '{"the": "data"}'
    assert not (folder / "features.onnx").is_symlink() and deploy.load(folder).name == "tiny"


def test_a_failed_re_export_leaves_the_previous_export_working(tmp_path, monkeypatch):
    from camsurvey import deploy
    from camsurvey.deploy import onnx_export

    deploy.export(tiny_model(), tmp_path / "e", input_size=32, threads=1)
    before = {p.name: p.read_bytes() for p in (tmp_path / "e").iterdir()}
    with pytest.raises(ValueError, match="opset"):
        deploy.export(tiny_model(), tmp_path / "e", input_size=32, overwrite=True, opset=99)

    def broken(*args, **kwargs):
        raise RuntimeError("the exporter crashed half-way")

    monkeypatch.setattr(onnx_export, "_export_graph", broken)
    with pytest.raises(RuntimeError, match="half-way"):
        deploy.export(tiny_model(), tmp_path / "e", input_size=64, overwrite=True)
    assert {p.name: p.read_bytes() for p in (tmp_path / "e").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e"]  # no staging folder left
    assert deploy.load(tmp_path / "e").input_size == (32, 32)


def test_an_export_without_a_folder_leaves_no_temporary_folder_behind(monkeypatch):
    import gc

    from camsurvey import deploy
    from camsurvey.deploy import onnx_export

    onnx_model = deploy.export(tiny_model(), input_size=32, threads=1)
    folder = onnx_model.folder
    assert (folder / "features.onnx").is_file()
    del onnx_model
    gc.collect()
    assert not folder.exists()

    made = []
    real_mkdtemp = onnx_export.tempfile.mkdtemp
    monkeypatch.setattr(onnx_export.tempfile, "mkdtemp", lambda **kw: made.append(real_mkdtemp(**kw)) or made[-1])
    monkeypatch.setattr(onnx_export, "_export_graph", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("no")))
    with pytest.raises(RuntimeError):
        deploy.export(tiny_model(), input_size=32)
    assert made and not Path(made[0]).exists()


def test_every_writing_command_names_force_in_its_help():
    for command in ("run", "variants", "grade"):
        done = camsurvey(command, "--help")
        assert "--force" in done.stdout, command


def test_train_refuses_data_and_existing_files_before_it_trains(tmp_path):
    done = camsurvey("train", "--output", "data", "--epochs", "1")
    assert done.returncode == 2 and "data/ folder" in done.stderr and "--update-data" not in done.stdout
    (tmp_path / "scenes_cnn.json").write_text("an earlier run's log")
    done = camsurvey("train", "--output", tmp_path, "--epochs", "1")
    assert done.returncode == 2 and "--force" in done.stderr
    assert (tmp_path / "scenes_cnn.json").read_text() == "an earlier run's log"


def test_a_student_edition_written_before_the_marker_existed_is_still_rewritten(tmp_path):
    import shutil

    earlier = student.make_student_source(ROOT, tmp_path / "edition")
    (earlier / student.STUDENT_MARKER).unlink()  # as `make student` left it before this change
    shutil.copytree(earlier, tmp_path / "thesis")
    (tmp_path / "thesis" / "notes.tex").write_text("mine")  # a folder that merely looks like one is refused
    assert (student.make_student_source(ROOT, earlier) / student.STUDENT_MARKER).is_file()
    with pytest.raises(ValueError, match="did not write"):
        student.make_student_source(ROOT, tmp_path / "thesis")
