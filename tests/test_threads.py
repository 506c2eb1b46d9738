"""The thread rule (camsurvey.common.free_threads) and where it is used: the cores other work leaves
free where threads change only speed, a fixed count where they change stored outputs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from camsurvey import common

ROOT = Path(__file__).resolve().parents[1]


def test_thread_rule_picks_one_thread_on_a_loaded_two_core_machine_and_two_when_idle():
    assert common.free_threads(cores=2, load=2.0) == 1
    assert common.free_threads(cores=2, load=0.0) == 2


def test_thread_rule_rounds_the_free_cores_and_stays_between_one_and_the_cores():
    assert common.free_threads(cores=2, load=0.4) == 2  # less than half a core busy
    assert common.free_threads(cores=2, load=0.6) == 1
    assert common.free_threads(cores=2, load=7.5) == 1  # never 0 threads
    assert common.free_threads(cores=16, load=3.2) == 13
    assert common.free_threads(cores=4, load=0.0) == 4  # never more than the cores
    with pytest.raises(ValueError, match="load"):
        common.free_threads(cores=2, load=-1.0)
    with pytest.raises(ValueError, match="cores"):
        common.free_threads(cores=0, load=0.0)


def test_thread_rule_reads_this_machine_without_torch():
    assert 1 <= common.free_threads() <= common.available_cores()
    assert common.machine_load() >= 0.0
    printed = subprocess.run([sys.executable, "-c", "import sys, runpy; sys.modules['torch'] = None; "
                              "runpy.run_module('camsurvey.common', run_name='__main__')"],
                             capture_output=True, text=True, check=True, cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert 1 <= int(printed.stdout) <= common.available_cores()


def test_makefile_keeps_stored_outputs_at_the_fixed_thread_count_and_builds_the_book_with_the_rule():
    makefile = (ROOT / "Makefile").read_text()
    fixed = re.search(r"^export OMP_NUM_THREADS := (\d+)$", makefile, flags=re.M)
    assert fixed and int(fixed.group(1)) == common.OUTPUT_THREADS  # nbval, make outputs, the unit tests
    assert "SPEED_THREADS = $(shell $(PY) -m camsurvey.common)" in makefile
    book = makefile.split("\nbook:", 1)[1].split("\n\n", 1)[0]
    assert "OMP_NUM_THREADS=$(SPEED_THREADS) $(VENV)/bin/jupyter-book build" in book
    for target in ("unit", "nbval", "outputs"):
        recipe = makefile.split(f"\n{target}:", 1)[1].split("\n\n", 1)[0]
        assert "SPEED_THREADS" not in recipe


def test_thread_environment_sets_the_kernels_threads_unless_the_caller_did(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    with common.thread_environment(3):
        assert os.environ["OMP_NUM_THREADS"] == "3"
    assert "OMP_NUM_THREADS" not in os.environ  # restored
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    with common.thread_environment(3):
        assert os.environ["OMP_NUM_THREADS"] == "5"  # the caller's choice wins
    assert os.environ["OMP_NUM_THREADS"] == "5"


def test_chapter_runs_use_the_rule_and_refreshed_outputs_the_fixed_count(monkeypatch, tmp_path):
    import nbclient
    import papermill

    from camsurvey.book import notebooks

    seen = {}
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(notebooks, "free_threads", lambda: 7)

    def execute_notebook(source, output, **options):
        seen["run"] = os.environ.get("OMP_NUM_THREADS")
        Path(output).write_text(Path(source).read_text())

    monkeypatch.setattr(papermill, "execute_notebook", execute_notebook)
    notebooks.run_chapter("conclusion", output_dir=tmp_path)
    assert seen["run"] == "7"

    chapter = tmp_path / "copy.ipynb"
    chapter.write_text((ROOT / "book" / "conclusion.ipynb").read_text())
    monkeypatch.setattr(nbclient.NotebookClient, "execute",
                        lambda self: seen.__setitem__("refresh", os.environ.get("OMP_NUM_THREADS")))
    notebooks.refresh([chapter])
    assert seen["refresh"] == str(common.OUTPUT_THREADS)
    assert "OMP_NUM_THREADS" not in os.environ
