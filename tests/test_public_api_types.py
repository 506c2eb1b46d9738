"""The public API is typed: every parameter and return of the functions a reader calls has a hint
(checked with mypy in ``make lint``)."""

from __future__ import annotations

import importlib
import inspect

import pytest

# the modules whose public functions (their __all__, or every name without an underscore) are the API
PUBLIC = ["camsurvey.methods.registry", "camsurvey.models", "camsurvey.images", "camsurvey.metrics",
          "camsurvey.predict", "camsurvey.deploy.onnx_export", "camsurvey.deploy.runtime", "camsurvey.models.wrap"]


def public_functions(name: str):
    module = importlib.import_module(name)
    names = getattr(module, "__all__", None) or [n for n in dir(module) if not n.startswith("_")]
    for attribute in names:
        function = getattr(module, attribute, None)
        if inspect.isfunction(function) and function.__module__ == module.__name__:
            yield f"{name}.{attribute}", function


@pytest.mark.parametrize("module", PUBLIC)
def test_every_public_function_is_annotated(module):
    missing = []
    for name, function in public_functions(module):
        signature = inspect.signature(function)
        missing += [f"{name}({p.name})" for p in signature.parameters.values()
                    if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.annotation is p.empty]
        if signature.return_annotation is signature.empty:
            missing.append(f"{name} -> ?")
    assert not missing, "\n".join(missing)


def test_the_check_can_fail():
    def untyped(x):
        return x

    assert inspect.signature(untyped).parameters["x"].annotation is inspect.Parameter.empty
