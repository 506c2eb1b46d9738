"""The ONNX runtime uses CUDA where onnxruntime has it (issue 19), the CPU always as the fallback."""

from __future__ import annotations

import pytest

from camsurvey.deploy import runtime


def test_cuda_comes_first_where_onnxruntime_has_it():
    assert runtime.execution_providers(["CUDAExecutionProvider", "CPUExecutionProvider"]) == [
        "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert runtime.execution_providers(["CPUExecutionProvider"]) == ["CPUExecutionProvider"]


def test_this_onnxruntime_gives_a_provider_list_ending_with_the_cpu():
    pytest.importorskip("onnxruntime")
    assert runtime.execution_providers()[-1] == "CPUExecutionProvider"
