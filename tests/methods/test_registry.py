"""The registry: the survey's order, and a method's cost written once (its ``cost`` function)."""

from __future__ import annotations

import sympy

import camsurvey as cs
from camsurvey.lab import bench
from camsurvey.methods.registry import SYMBOLS, LayerShape

SURVEY_ORDER = ["II.A", "II.B", "II.C", "III", "IV"]  # written out again: the test's own statement


def test_registry_lists_methods_in_the_survey_order():
    ranks = [next(i for i, section in enumerate(SURVEY_ORDER) if entry.section.startswith(section))
             for entry in cs.METHODS.values()]
    assert ranks == sorted(ranks), list(cs.METHODS)
    assert list(cs.METHODS)[:3] == ["cam", "eigencam", "gradcam"]


def test_passes_text_is_the_cost_function_evaluated_on_symbols():
    for name, entry in cs.METHODS.items():
        symbolic = entry.cost_at(SYMBOLS)
        numbers = entry.count_passes(96, 49, 90)
        substituted = {kind: int(sympy.sympify(count).subs({SYMBOLS.channels: 96, SYMBOLS.positions: 49,
                                                            SYMBOLS.live_channels: 90}))
                       for kind, count in symbolic.items()}
        assert substituted == numbers, name
        for kind, count in symbolic.items():
            if count != 0:
                assert f"{sympy.sympify(count)} {kind}" in entry.passes, (name, entry.passes)


def test_cost_uses_the_given_parameters_and_the_defaults_for_the_rest():
    smoothgrad = cs.METHODS["smoothgrad"]
    assert smoothgrad.count_passes(10, 4) == {"forward": 51, "backward": 50, "head": 0}
    assert smoothgrad.count_passes(10, 4, samples=8) == {"forward": 9, "backward": 8, "head": 0}
    # the base method's cost is the base's own: SmoothGrad over Grad-CAM costs what Grad-CAM does, N times
    assert smoothgrad.count_passes(10, 4, samples=8, base="gradcam") == {"forward": 9, "backward": 8, "head": 0}


def test_scorecam_counts_only_the_channels_with_a_mask():
    scorecam = cs.METHODS["scorecam"]
    assert scorecam.count_passes(1280, 49) == {"forward": 1281, "backward": 0, "head": 0}
    assert scorecam.count_passes(1280, 49, 1200) == {"forward": 1201, "backward": 0, "head": 0}
    assert bench.method_cost("scorecam", 1280, 49, 1200)["forward"] == 1201
    assert bench.method_cost("ablationcam", 1280, 49, 1200)["head"] == 1280  # every channel is ablated
    assert cs.METHODS["reciprocam"].cost_at(LayerShape(1280, 49)) == {"forward": 1, "backward": 0, "head": 49}


def test_unknown_parameter_in_a_cost_is_refused():
    import pytest

    with pytest.raises(ValueError, match="no parameter"):
        cs.METHODS["scorecam"].count_passes(10, 4, samples=3)


def test_every_method_names_its_source_and_how_faithfully_it_follows_it():
    """Each method's docstring says where its definition comes from and whether we follow the
    authors' code, the paper's formula, or our own reading (issue 17)."""
    import re

    from camsurvey.lab import faithfulness

    follows = ("the authors' code", "the paper's formula", "our reading")  # written out again: the test's own
    pattern = re.compile(r"Source: (.+?) Follows: (" + "|".join(map(re.escape, follows)) + ")")
    for name, entry in cs.METHODS.items():
        docstring = " ".join((entry.function.__doc__ or "").split())
        found = pattern.search(docstring)
        assert found, f"{name}: the docstring lacks 'Source: ... Follows: {' | '.join(follows)}'"
        source = found.group(1)
        # a source is a repository (owner/name), a paper (authors and venue or arXiv id), or both
        assert re.search(r"[\w-]+/[\w.-]+|et al\.|arXiv:|\b(19|20)\d\d\b", source), (name, source)
        assert faithfulness.provenance(name).follows == found.group(2), name


def test_provenance_refuses_a_method_without_the_statement():
    import pytest

    from camsurvey.lab import faithfulness
    from camsurvey.methods.registry import METHODS, Method

    METHODS["undocumented"] = Method("undocumented", lambda *a: None, "helper", "IV", "", "", lambda shape: {}, False)
    try:
        with pytest.raises(ValueError, match="undocumented"):
            faithfulness.provenance("undocumented")
    finally:
        del METHODS["undocumented"]
