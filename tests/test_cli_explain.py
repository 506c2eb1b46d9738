"""``camsurvey explain IMAGE... -m METHOD -o FOLDER``: one overlay PNG per image and method."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from camsurvey import cli


def run(*argv) -> int:
    return cli.main(["explain", *argv])


def test_explain_writes_one_png_per_image_and_method_and_refuses_to_overwrite(tmp_path, capsys):
    folder = tmp_path / "maps"
    code = run("chelsea", "coffee", "-m", "gradcam", "-m", "eigencam", "--model", "torchvision:resnet18",
               "--layer", "layer4", "--size", "64", "-o", str(folder))
    assert code == 0
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["chelsea-eigencam.png", "chelsea-gradcam.png", "coffee-eigencam.png", "coffee-gradcam.png"]
    assert np.asarray(Image.open(folder / "chelsea-gradcam.png")).shape == (64, 64, 3)
    assert "random weights" in capsys.readouterr().err
    before = (folder / "chelsea-gradcam.png").read_bytes()
    assert run("chelsea", "-m", "gradcam", "--model", "torchvision:resnet18", "--size", "64", "-o", str(folder)) == 2
    assert "--force" in capsys.readouterr().err
    assert (folder / "chelsea-gradcam.png").read_bytes() == before


@pytest.mark.parametrize("argv, words", [
    (["chelsea", "-m", "gradcam+++", "--model", "torchvision:resnet18"], "unknown method"),
    (["chelsea", "-m", "gradcam", "--model", "torchvision:resnet9000"], "unknown torchvision classifier"),
    (["chelsea", "-m", "gradcam", "--model", "torchvision:resnet18", "--layer", "layer9"], "unknown layer"),
])
def test_explain_bad_arguments_give_one_line(tmp_path, capsys, argv, words):
    assert run(*argv, "--size", "64", "-o", str(tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err


def test_explain_refuses_the_projects_data_folder(capsys):
    from camsurvey.files import DATA_DIR

    assert run("chelsea", "-m", "gradcam", "--model", "torchvision:resnet18", "--size", "64",
               "-o", str(DATA_DIR / "maps")) == 2
    assert "data/" in capsys.readouterr().err
    assert not (DATA_DIR / "maps").exists()
