"""What the PyTorch methods and the torch-free ONNX runtime (:mod:`camsurvey.runtime`) share.

Nothing here imports torch, so the runtime can use it in a serving image without PyTorch.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

# Batch sizes of the gradient-free methods, the defaults of both paths.
# Score-CAM: masked images per forward pass. EfficientNet-Lite0 at 224 x 224 on a 2-core CPU:
# about 17 ms a masked image in batches of 4 with channels-last input, 25-90 ms in other
# layouts and batch sizes (the project's measurement).
SCORECAM_BATCH_SIZE = 4
# Ablated (or masked) feature maps per head pass: at conv_head, 128 copies of A stay in the CPU's
# cache where 256 spill out of it (2.5x slower, same maps); the masked maps of Recipro-CAM are
# only h*w = 49 there.
ABLATIONCAM_BATCH_SIZE = 128
RECIPROCAM_BATCH_SIZE = 256


def check_batch_size(batch_size):
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")


def batches(total: int, batch_size: int):
    """Slices ``[start, stop)`` covering ``range(total)`` in chunks of ``batch_size``."""
    for start in range(0, total, batch_size):
        yield slice(start, min(start + batch_size, total))


def sha256_of(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
