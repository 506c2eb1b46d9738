"""The book's structure: one chapter per survey section, parameters, stored outputs, bibliography."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))


def test_toc_has_a_chapter_per_survey_section_plus_exercises_and_bibliography():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]] + [c["file"] for c in toc["chapters"]]
    for chapter in ["intro", "cams", "smoothing", "helpers", "metrics", "performance", "discussion",
                    "conclusion", "exercises", "bibliography"]:
        assert f"book/{chapter}" in files
    for file in files:
        assert list(ROOT.glob(file + ".*")), f"{file} is in _toc.yml but does not exist"


def test_config_builds_offline_and_strictly():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["execute"]["execute_notebooks"] in ("force", "cache")
    assert config["execute"]["allow_errors"] is False
    assert config["execute"]["timeout"] > 0
    # a failing chapter is a warning (an error under -W) reported after every other page is written
    assert config["sphinx"]["config"]["nb_execution_raise_on_error"] is False
    assert "sphinx_exercise" in config["sphinx"]["extra_extensions"]
    assert "intersphinx" not in json.dumps(config)
    assert "-W -n --keep-going" in (ROOT / "Makefile").read_text()


def test_bibliography_holds_the_survey_references_and_every_method_s_and_citations_resolve():
    import camsurvey as cs

    bib = (ROOT / "references.bib").read_text()
    keys = re.findall(r"^@\w+\{([^,]+),", bib, flags=re.M)
    assert len(keys) == len(set(keys)) >= 36  # the survey's 36, and the sources of methods it does not list
    assert {entry.reference for entry in cs.METHODS.values()} <= set(keys)
    cited = set()
    for path in list(ROOT.glob("book/*.md")) + NOTEBOOKS:
        cited |= {k.strip() for group in re.findall(r"\{cite[a-z:]*\}`([^`]+)`", path.read_text()) for k in group.split(",")}
    assert cited, "no chapter cites anything"
    assert cited <= set(keys), f"unknown citation keys: {cited - set(keys)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_chapter_has_parameters_first_and_stored_outputs(path):
    cells = json.loads(path.read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    assert "parameters" in code[0].get("metadata", {}).get("tags", []), "the first code cell must be the parameters cell"
    assert any(c.get("outputs") for c in code), "stored without outputs: nbval would check nothing"
    assert not any(o.get("output_type") == "error" for c in code for o in c.get("outputs", []))


def _requirement_names(requirements):
    return {re.split(r"[<>=!\[ ]", r.strip())[0].lower(): r.replace(" ", "") for r in requirements}


def test_environment_yml_lists_the_same_dependencies_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [requirement for group in project["optional-dependencies"].values() for requirement in group]
    wanted = _requirement_names(project["dependencies"] + extras)
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in environment["dependencies"] if isinstance(d, dict))
    listed = _requirement_names([p for p in pip if not p.startswith("-e")])
    assert listed == wanted


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_a_chapter_that_loads_a_model_takes_it_as_a_parameter_named_model(path):
    """`camsurvey run CHAPTER -p model "'efficientnet_lite2'"` reruns it on another network (the
    scene chapters: scene_model, cue_model, photo_model)."""
    from camsurvey.book import notebooks

    parameters = notebooks.chapter_parameters(path)
    assert not [name for name in parameters if name.endswith("_name")]  # named after what they choose
    code = "".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
    for chosen in re.findall(r"cs\.load_model\((\w+)", code):
        loop = re.search(rf"for {chosen} in (\w+)", code)  # one network after another, from a parameter's list
        assert chosen in parameters or chosen == "model" or (loop and loop.group(1) in parameters), \
            f"cs.load_model({chosen}) is not given by a parameter"
    if "cs.load_model(model)" in code:
        assert parameters["model"][0] in __import__("camsurvey").MODELS  # (default, comment)
