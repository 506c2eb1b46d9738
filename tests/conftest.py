"""Shared fixtures; and an offline guard: no test may reach the network (only loopback)."""

from __future__ import annotations

import ipaddress
import socket
import sys
from pathlib import Path

import matplotlib
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/oracles.py, shared by the test folders
matplotlib.use("Agg")  # this process only: kernels started by tests keep the inline backend

_real_connect = socket.socket.connect


def _is_local(address) -> bool:
    if isinstance(address, (str, bytes)):  # a unix socket path
        return True
    host = address[0]
    if host in ("localhost", "", "::1"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _guarded_connect(self, address):
    if not _is_local(address):
        raise RuntimeError(f"a test tried to reach the network ({address!r}); camsurvey must work offline")
    return _real_connect(self, address)


socket.socket.connect = _guarded_connect


@pytest.fixture(scope="session")
def model():
    """EfficientNet-Lite0 with its ImageNet weights (on the CPU, for reproducible tests)."""
    import camsurvey as cs

    return cs.load_model("efficientnet_lite0", device="cpu")


@pytest.fixture(scope="session")
def photos():
    import camsurvey as cs

    return cs.load_images(cs.bundled_photos())


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
