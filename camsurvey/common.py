"""What the PyTorch methods and the torch-free ONNX runtime (:mod:`camsurvey.deploy.runtime`) share.

Nothing here imports torch, so the runtime can use it in a serving image without PyTorch.
"""

from __future__ import annotations

import hashlib
import operator
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

# A map whose spread (max - min) is at most this fraction of its largest magnitude is constant:
# float32 rounding (about 1e-7 relative) cannot tell it from one, so norm(.) would amplify noise.
# The one tolerance of both paths (camsurvey.plumbing.is_constant, camsurvey.deploy.runtime.is_constant).
CONSTANT_RTOL = 1e-6


def check_int(value, name: str, minimum: int | None = 1, maximum: int | None = None, hint: str = "") -> int:
    """``value`` if it is an integer (not a bool) in ``[minimum, maximum]``, else a ValueError that names
    ``name``, says what it must be and, with ``hint``, what to do. Every integer argument is checked here."""
    if not isinstance(value, bool) and isinstance(value, int) and (minimum is None or value >= minimum) \
            and (maximum is None or value <= maximum):
        return value
    if minimum == 1 and maximum is None:
        wanted = "a positive integer"
    elif maximum is None:
        wanted = "an integer" if minimum is None else f"an integer >= {minimum}"
    else:
        wanted = f"an integer <= {maximum}" if minimum is None else f"an integer from {minimum} to {maximum}"
    raise ValueError(f"{name} must be {wanted}, got {value!r}" + (f"; {hint}" if hint else ""))


def check_class_indices(target, classes: int) -> None:
    """Refuse, with a message naming ``target``, a class index that is not a whole number in
    ``[0, classes)``: a bool, a float, a huge integer, an empty list, a nested list. ``None`` (each
    image's top-1) and tensors/arrays are left to the caller's own conversion."""
    if target is None or not isinstance(target, (int, list, tuple)):
        return
    indices = list(target) if isinstance(target, (list, tuple)) else [target]
    if not indices:
        raise ValueError("target is empty; give None (each image's top-1 class), one class index or one per image")
    for index in indices:
        try:
            if isinstance(index, bool):
                raise TypeError
            value = operator.index(index)  # ints, numpy integers, 0-d integer tensors; not floats
        except TypeError:
            raise TypeError(f"target must be None, an integer class index or a list of them, got {target!r}") from None
        if not 0 <= value < classes:
            raise ValueError(f"target class index out of range: the model has classes 0..{classes - 1}, got {target!r}")


def check_batch_size(batch_size) -> int:
    return check_int(batch_size, "batch_size", hint="it is how many items one pass holds")


def batches(total: int, batch_size: int):
    """Slices ``[start, stop)`` covering ``range(total)`` in chunks of ``batch_size``."""
    for start in range(0, total, batch_size):
        yield slice(start, min(start + batch_size, total))


def sha256_of(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
