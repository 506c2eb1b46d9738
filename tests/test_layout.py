"""The package's layers: imports run one way, and no private name crosses a module boundary."""

from __future__ import annotations

import ast
from pathlib import Path

import camsurvey

PACKAGE = Path(camsurvey.__file__).resolve().parent

# lowest first; a module may import from its own layer and the layers below it
LAYERS = [
    ("torch-free core", ("camsurvey.common", "camsurvey.files", "camsurvey.typing", "camsurvey.deploy", "camsurvey.deploy.runtime")),
    ("library", ("camsurvey.models", "camsurvey.images", "camsurvey.datasets", "camsurvey.plumbing",
                 "camsurvey.methods", "camsurvey.metrics", "camsurvey.predict", "camsurvey.viz")),
    ("deployment export", ("camsurvey.deploy.onnx_export",)),
    ("laboratory", ("camsurvey.lab",)),
    ("book tooling", ("camsurvey.book", "camsurvey.cli", "camsurvey.__main__")),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    """The layer of ``module``: the most specific prefix listed in :data:`LAYERS`."""
    best = None
    for rank, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > best[1]:
                    best = (rank, len(prefix))
    assert best is not None, f"{module} is in no layer of tests/test_layout.py"
    return best[0]


def imports(path: Path):
    """``(imported module, imported names)`` for every import of a camsurvey module in ``path``."""
    source = module_name(path)
    package = source if path.name == "__init__.py" else source.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "camsurvey":
                continue
            names = [alias.name for alias in node.names]
            # "from . import x" imports the submodule x
            submodules = [f"{target}.{n}" for n in names if (PACKAGE.parent / f"{target}.{n}".replace(".", "/")).exists()
                          or (PACKAGE.parent / (f"{target}.{n}".replace(".", "/") + ".py")).exists()]
            yield (submodules[0] if len(submodules) == len(names) == 1 else target), names
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "camsurvey":
                    yield alias.name, []


# lazy facades: their __getattr__ loads a higher layer on first use, so that importing them stays light
FACADES = (PACKAGE / "__init__.py", PACKAGE / "deploy" / "__init__.py")
MODULES = [p for p in sorted(PACKAGE.rglob("*.py")) if p not in FACADES]


def test_every_import_goes_down_the_layers():
    upward = []
    for path in MODULES:
        source = module_name(path)
        for target, _ in imports(path):
            if target == "camsurvey":
                continue
            if layer_of(target) > layer_of(source):
                upward.append(f"{source} ({LAYERS[layer_of(source)][0]}) imports {target} "
                              f"({LAYERS[layer_of(target)][0]})")
    assert not upward, "\n".join(upward)


def test_no_private_name_is_imported_from_another_module():
    private = [f"{module_name(path)} imports {name} from {target}" for path in MODULES
               for target, names in imports(path) for name in names if name.startswith("_")]
    assert not private, "\n".join(private)


def test_the_layer_rule_can_fail():
    assert layer_of("camsurvey.lab.bench.run") > layer_of("camsurvey.methods.registry")
    assert layer_of("camsurvey.deploy.onnx_export") > layer_of("camsurvey.deploy.runtime")
