"""Grading submitted notebooks: each in its own process, with time limits, judged where it cannot reach.

``camsurvey grade submissions/*.ipynb -o grades/`` (:func:`grade_notebooks`). For each
submission, in turn:

1. The grader reads the notebook into memory (before any student code runs anywhere) and
   copies it alone into a fresh temporary folder.
2. A runner process (``python -m camsurvey.book.sandbox``, in a new session, with that folder as
   its working directory and as ``HOME`` and ``TMPDIR``) executes the submission's code cells in
   a Jupyter kernel, each cell with a time limit (``cell_timeout``) and the whole submission with
   another (``timeout``). A cell that raises is recorded and the next cell runs, as when a student
   runs all cells; a cell that runs too long is interrupted.
3. After the student's cells, one more cell per exercise of the assignment (the assignment's
   list, :func:`camsurvey.book.grading.assignment_exercises`, not the ``check`` calls the
   notebook happens to make) calls the student's function ``my_NAME`` on the grader's own
   randomised cases, drawn from the grader's ``seed``, and saves what it returns.
4. The kernel is killed with its process group. The runner itself, which never ran student
   code, then loads those outputs as plain tensors (``torch.load(weights_only=True)``: no code in
   them can run), draws the same cases, computes the reference and judges each case. What the
   student's notebook printed, logged or returned from ``grading.check`` counts for nothing.
5. The grader collects one row per submission; a submission that fails, hangs, kills its kernel
   or is not a notebook gets a ``failed: reason`` row, and the others are graded.

What this protects against, and what not, is said on the instructor's page (``book/instructor.md``):
it is not a security boundary against a determined attacker who runs code under the same user id.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .. import files

SUBMISSION_TIMEOUT = 600  # seconds for one submission: every cell, the grader's cells and the checks
CELL_TIMEOUT = 120  # seconds for one cell
GRADER_SEED = 20240  # the grader's cases; not the notebook's `seed`, so answers cannot be written in advance
STARTUP_GRACE = 60  # seconds beyond `timeout` for starting the kernel and judging, before the runner is killed
FILE_SIZE_LIMIT = 2 * 1024**3  # bytes: no file the submission writes may grow past this
REPORT_FILE = "grades.json"


# --- which assignment, which exercises -------------------------------------------------------

def assignment_of(notebook: dict, path: Path, given: str | None) -> str:
    """The assignment a submission answers: ``given`` (``--assignment``), else the metadata the
    variants carry (``camsurvey.assignment``), else the file name (``assignment_cam-seed3.ipynb``)."""
    from .notebooks import chapters

    known = sorted(name for name in chapters() if name.startswith("assignment_"))
    if given is not None:
        if given not in known:
            raise ValueError(f"unknown assignment {given!r}; choose one of {known}")
        return given
    claimed = notebook.get("metadata", {}).get("camsurvey", {}).get("assignment")
    if claimed in known:
        return claimed
    for name in sorted(known, key=len, reverse=True):
        if path.stem == name or path.stem.startswith(name + "-"):
            return name
    raise ValueError(f"cannot tell which assignment {path.name} answers; pass --assignment (one of {known})")


def exercises_of(assignment: str) -> list[str]:
    from .grading import assignment_exercises
    from .notebooks import chapter_path

    return assignment_exercises(chapter_path(assignment))


# --- the runner: executes one submission, then judges it --------------------------------------

def collection_cell(exercise: str, function_name: str, seed: int, answers: Path) -> str:
    """The grader's cell, run in the student's kernel after their cells: the function's outputs on the grader's cases."""
    return (f"from camsurvey.book import grading as _camsurvey_grading\n"
            f"_camsurvey_grading.collect_answers({exercise!r}, globals().get({function_name!r}), {seed}, "
            f"{str(answers)!r})")


@dataclass
class Execution:
    """What happened when the submission's cells ran."""

    cell_problems: list[str]
    stopped: str | None  # why execution stopped early (a dead kernel, the time limit), or None


def _cell_error(cell) -> str | None:
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return f"{output.get('ename')}: {output.get('evalue')}"
    return None


SETUP_CELL = "import camsurvey.book.grading  # the grader's first cell: torch and the grader, loaded once"
SETUP_TIMEOUT = 180  # seconds for the grader's first cell (importing torch on a busy machine)
PROBE_TIMEOUT = 5  # seconds an interrupted kernel has to answer again before the submission is stopped


def execute_submission(notebook, work: Path, exercises: list[str], seed: int, cell_timeout: float,
                       deadline: float) -> Execution:
    """Run the grader's setup cell, the student's code cells, then one collection cell per exercise,
    in one kernel in ``work``. Every cell has a time limit; the whole run ends by ``deadline``."""
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError
    from nbformat.v4 import new_code_cell

    from .grading import get_exercise

    answers = work / "answers"
    answers.mkdir()
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    setup = new_code_cell(SETUP_CELL, metadata={"tags": ["camsurvey-grader"]})
    grader_cells = [new_code_cell(collection_cell(name, get_exercise(name).function_name, seed, answers / f"{name}.pt"),
                                  metadata={"tags": ["camsurvey-grader"]}) for name in exercises]
    labels = {id(cell): f"the grader's cell for {name}" for cell, name in zip(grader_cells, exercises)}
    labels[id(setup)] = "the grader's first cell (import camsurvey)"
    notebook.cells = [setup, *notebook.cells, *grader_cells]
    limits: dict[int, float] = {}

    def timeout_of(cell) -> int:
        wanted = SETUP_TIMEOUT if cell is setup else cell_timeout
        limits[id(cell)] = max(1.0, min(wanted, deadline - time.monotonic()))
        return int(limits[id(cell)] + 0.999)

    # on a cell's time limit nbclient interrupts the kernel (as a student's "interrupt" button) and goes on
    client = NotebookClient(notebook, kernel_name="python3", allow_errors=True, timeout_func=timeout_of,
                            interrupt_on_timeout=True, iopub_timeout=PROBE_TIMEOUT, shutdown_kernel="immediate",
                            error_on_timeout={"ename": "TimeoutError", "evalue": "the cell ran past its time limit",
                                              "traceback": []},
                            startup_timeout=120, resources={"metadata": {"path": str(work)}})
    problems: list[str] = []
    stopped = None
    client.reset_execution_trackers()
    kernel_group = None

    def stop_kernel(signum, _frame):
        if kernel_group:
            try:
                os.killpg(kernel_group, signal.SIGKILL)
            except OSError:
                pass
        sys.exit(128 + signum)

    def timed(cell, index) -> bool:
        """Execute ``cell``; True if it ran into its time limit."""
        started = time.monotonic()
        client.execute_cell(cell, index)
        return time.monotonic() - started >= limits[id(cell)] - 0.5

    signal.signal(signal.SIGTERM, stop_kernel)
    with client.setup_kernel(cwd=str(work)):
        kernel_group = getattr(getattr(client.km, "provisioner", None), "pgid", None)
        for index, cell in enumerate(notebook.cells):
            if cell.cell_type != "code":
                continue
            label = labels.get(id(cell), f"cell {index}")  # the student's cells count from 1 after the setup cell
            if time.monotonic() >= deadline:
                stopped = "the submission ran past its time limit"
                break
            try:
                if timed(cell, index):
                    problems.append(f"{label} ran past its time limit of {limits[id(cell)]:.0f} s and was interrupted")
                    probe = new_code_cell("pass")
                    limits[id(probe)] = float(PROBE_TIMEOUT)
                    client.timeout_func = lambda _cell: PROBE_TIMEOUT
                    try:
                        if timed(probe, index):
                            stopped = f"{label} ignored the interrupt; the rest of the notebook was not run"
                            break
                    finally:
                        client.timeout_func = timeout_of
                        notebook.cells[index] = cell  # nbclient stores the executed cell at its index
            except DeadKernelError:
                stopped = f"the kernel died in {label} (the notebook ended its own Python, or ran out of memory)"
                break
            error = _cell_error(cell)
            if error and id(cell) not in labels and "TimeoutError" not in error and "KeyboardInterrupt" not in error:
                problems.append(f"{label} raised {error}")
    return Execution(problems, stopped)


def judge(exercises: list[str], answers: Path, seed: int) -> list[dict]:
    """Each exercise's report (a dict), from the outputs the kernel saved and the reference computed here."""
    from .grading import Report, draw_cases, get_exercise, load_answers, report_from_answers

    reports = []
    for name in exercises:
        entry = get_exercise(name)
        cases = draw_cases(entry, entry.cases, seed)
        found = load_answers(answers / f"{name}.pt", len(cases))
        if isinstance(found, str):
            report = Report(name, len(cases), 0, [f"{entry.function_name}: {found}"])
        else:
            report = report_from_answers(entry, cases, found, seed)
        reports.append(report.as_dict())
    return reports


def run(submission: Path, result: Path, exercises: list[str], seed: int, cell_timeout: float, timeout: float) -> int:
    """The runner's work (in its own process): execute ``submission`` in its folder, judge, write ``result``."""
    import nbformat

    deadline = time.monotonic() + timeout
    work = submission.parent
    outcome: dict = {"exercises": [], "problems": [], "status": "graded"}
    try:
        notebook = nbformat.read(str(submission), as_version=4)
    except Exception as error:  # whatever the file holds
        outcome["status"] = f"failed: not a readable notebook ({type(error).__name__}: {error})"
        result.write_text(json.dumps(outcome))
        return 0
    try:
        execution = execute_submission(notebook, work, exercises, seed, cell_timeout, deadline)
    except Exception as error:  # the kernel could not start, or nbclient failed
        outcome["status"] = f"failed: the notebook could not be executed ({type(error).__name__}: {error})"
        result.write_text(json.dumps(outcome))
        return 0
    outcome["problems"] = execution.cell_problems
    if execution.stopped:
        outcome["status"] = f"failed: {execution.stopped}"
    outcome["exercises"] = judge(exercises, work / "answers", seed)
    executed = result.with_suffix(".ipynb")
    nbformat.write(notebook, str(executed))
    result.write_text(json.dumps(outcome))
    return 0


# --- the grader: one runner per submission -----------------------------------------------------

def sandbox_environment(work: Path) -> dict:
    """The runner's environment: the grader's, with HOME and TMPDIR inside ``work`` and no camsurvey settings."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("CAMSURVEY_", "JPY_"))}
    for name, folder in (("HOME", "home"), ("TMPDIR", "tmp"), ("MPLCONFIGDIR", "matplotlib"), ("IPYTHONDIR", "ipython")):
        (work / folder).mkdir(exist_ok=True)
        environment[name] = str(work / folder)
    _seed_matplotlib_cache(work / "matplotlib")
    environment["PYTHONDONTWRITEBYTECODE"] = "1"
    here = str(files.ROOT)  # the runner and the kernel import the camsurvey that grades
    environment["PYTHONPATH"] = os.pathsep.join([here, *[p for p in environment.get("PYTHONPATH", "").split(os.pathsep)
                                                      if p and p != here]])
    return environment


def _seed_matplotlib_cache(folder: Path) -> None:
    """Copy matplotlib's font list into the fresh config folder, so the kernel does not rebuild it (seconds)."""
    try:
        import matplotlib

        for cached in Path(matplotlib.get_cachedir()).glob("fontlist-*.json"):
            shutil.copy2(cached, folder / cached.name)
    except Exception:  # no cache to copy: matplotlib builds one
        pass


def _limits(timeout: float):
    """resource limits for the runner and the kernel it starts (they inherit them)."""
    def apply():
        cpu = int(timeout + STARTUP_GRACE) * max(1, os.cpu_count() or 1) * 2
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
        resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    return apply


def _kill_group(process: subprocess.Popen) -> None:
    """End the runner's process group: SIGTERM (the runner then kills its kernel), then SIGKILL."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except OSError:
        return  # nothing left in the group
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except OSError:
        pass


def grade_submission(content: bytes, exercises: list[str], *, seed: int, timeout: float,
                     cell_timeout: float) -> tuple[dict, bytes | None]:
    """Grade one submission (its bytes, read beforehand) in a runner process; returns (row, executed notebook)."""
    with tempfile.TemporaryDirectory(prefix="camsurvey-grade-") as work_dir, \
            tempfile.TemporaryDirectory(prefix="camsurvey-result-") as private:
        work = Path(work_dir)
        submission = work / "submission.ipynb"
        submission.write_bytes(content)
        result = Path(private) / "result.json"
        command = [sys.executable, "-m", "camsurvey.book.sandbox", str(submission), str(result), "--seed", str(seed),
                   "--cell-timeout", str(cell_timeout), "--timeout", str(timeout), "--exercises", *exercises]
        started = time.monotonic()
        process = subprocess.Popen(command, cwd=work, env=sandbox_environment(work), stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                                   preexec_fn=_limits(timeout))
        try:
            log, _ = process.communicate(timeout=timeout + STARTUP_GRACE)
            status = None
        except subprocess.TimeoutExpired:
            _kill_group(process)
            log, _ = process.communicate()
            status = f"failed: still running after {timeout + STARTUP_GRACE:.0f} s, stopped"
        finally:
            _kill_group(process)  # anything the runner left behind in its group
        seconds = round(time.monotonic() - started, 1)
        try:
            outcome = json.loads(result.read_text())
        except (OSError, ValueError):
            tail = log.decode(errors="replace").strip().splitlines()[-3:] if log else []
            outcome = {"exercises": [], "problems": [],
                       "status": status or f"failed: the grader's runner stopped ({' | '.join(tail) or 'no output'})"}
        executed = result.with_suffix(".ipynb")
        notebook = executed.read_bytes() if executed.is_file() else None
    outcome["seconds"] = seconds
    return outcome, notebook


def _row(path: Path, assignment: str | None, exercises: list[str], outcome: dict) -> dict:
    reports = {report["exercise"]: report for report in outcome.get("exercises", [])}
    passed = sum(1 for name in exercises if reports.get(name, {}).get("passed"))
    flagged = sorted({call for report in reports.values() for call in report.get("reference_calls", [])})
    return {"submission": str(path), "assignment": assignment, "status": outcome.get("status", "graded"),
            "passed": passed, "total": len(exercises), "flagged": flagged, "problems": outcome.get("problems", []),
            "exercises": [reports.get(name, {"exercise": name, "passed": False}) for name in exercises],
            "seconds": outcome.get("seconds")}


def output_paths(output) -> tuple[Path, Path]:
    """(report file, folder of executed copies) for ``-o``: a folder (``grades/``: ``grades/grades.json``
    and ``grades/executed/``), or a ``.json`` file (``x.json`` and ``x-executed/`` beside it)."""
    if not isinstance(output, (str, os.PathLike)):
        raise TypeError(f"the output must be a folder or a .json file path, got {type(output).__name__}")
    path = Path(output)
    if path.suffix == ".json":
        return path, path.with_name(path.stem + "-executed")
    if path.suffix:
        raise ValueError(f"the grades go to a folder or a .json file, not {str(path)!r} (a {path.suffix} file)")
    return path / REPORT_FILE, path / "executed"


def grade_notebooks(paths, output="runs/grades", *, assignment: str | None = None, force: bool = False,
                    seed: int = GRADER_SEED, timeout: float = SUBMISSION_TIMEOUT,
                    cell_timeout: float = CELL_TIMEOUT, progress=None) -> dict:
    """Grade each submitted notebook in its own sandboxed process; write the report; returns it.

    ``output``: a folder (``grades.json`` and ``executed/`` in it) or a ``.json`` file. The rule of
    :mod:`camsurvey.files` applies: not into the project's ``book/`` or ``data/``, never over a
    submission, an existing report only replaced with ``force``. ``assignment``: which assignment
    (default: from each notebook's metadata or name). The score of each submission counts every
    exercise of its assignment. ``seed`` draws the grader's cases; ``timeout`` and
    ``cell_timeout`` are the limits per submission and per cell, in seconds.
    """
    from .grading import check_seed

    paths = [Path(p) for p in ([paths] if isinstance(paths, (str, os.PathLike)) else paths)]
    if not paths:
        raise ValueError("give at least one submitted notebook")
    check_seed(seed)
    for value, name in ((timeout, "timeout"), (cell_timeout, "cell_timeout")):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"{name} is a time limit in seconds and must be > 0, got {value!r}")
    report_path, executed_dir = output_paths(output)
    report_path = files.check_new_file(report_path, force=force, inputs=paths, what="grades report")
    files.check_output(executed_dir, inputs=paths, what="folder of executed submissions")
    contents = {}
    for path in paths:  # every submission is read before any of them runs
        if not path.is_file():
            raise FileNotFoundError(f"no submitted notebook {str(path)!r}")
        contents[path] = path.read_bytes()
    rows, executed = [], {}
    for number, path in enumerate(paths, start=1):
        try:
            notebook = json.loads(contents[path])
            chosen = assignment_of(notebook, path, assignment)
            exercises = exercises_of(chosen)
        except (ValueError, UnicodeDecodeError) as error:
            reason = f"not a notebook ({error})" if isinstance(error, (json.JSONDecodeError, UnicodeDecodeError)) else error
            rows.append(_row(path, assignment, exercises_of(assignment) if assignment else [],
                             {"status": f"failed: {reason}"}))
        else:
            outcome, copy = grade_submission(contents[path], exercises, seed=seed, timeout=timeout,
                                             cell_timeout=cell_timeout)
            rows.append(_row(path, chosen, exercises, outcome))
            if copy is not None:
                executed[f"{number:03d}-{path.stem}.ipynb"] = copy
        if progress:
            progress(rows[-1])
    files.ensure_folder(executed_dir, inputs=paths, what="folder of executed submissions")
    for name, copy in executed.items():
        rows[int(name[:3]) - 1]["executed"] = str(files.write_file(executed_dir / name, copy, force=force,
                                                                    inputs=paths, what="executed submission"))
    report = {"seed": seed, "timeout": timeout, "cell_timeout": cell_timeout, "submissions": rows}
    files.write_file(report_path, json.dumps(report, indent=2), force=force, inputs=paths, what="grades report")
    return report


def summary(row: dict) -> str:
    """One line for the command line: the score, what was flagged, why it failed."""
    line = f"{row['submission']}: {row['passed']}/{row['total']} exercises passed"
    if row["assignment"]:
        line += f" ({row['assignment']})"
    if row["status"] != "graded":
        line += f" -- {row['status']}"
    if row["flagged"]:
        line += f" -- FLAGGED: calls the package's reference {', '.join(row['flagged'])}"
    return line


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m camsurvey.book.sandbox",
                                     description="the grader's runner for one submission (started by camsurvey grade)")
    parser.add_argument("submission", type=Path)
    parser.add_argument("result", type=Path)
    parser.add_argument("--exercises", nargs="+", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--cell-timeout", type=float, default=CELL_TIMEOUT)
    parser.add_argument("--timeout", type=float, default=SUBMISSION_TIMEOUT)
    args = parser.parse_args(argv)
    return run(args.submission, args.result, args.exercises, args.seed, args.cell_timeout, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
