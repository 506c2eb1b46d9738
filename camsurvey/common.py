"""What the PyTorch methods and the torch-free ONNX runtime (:mod:`camsurvey.deploy.runtime`) share.

Nothing here imports torch, so the runtime can use it in a serving image without PyTorch.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import operator
import os
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


# Threads. The thread count changes float rounding in some reductions (a sum split over 2 threads
# is added in another order than over 1), so what is stored or compared -- chapter outputs (`make
# outputs`, nbval), the unit tests -- is computed with this fixed count, whatever the machine
# (the Makefile exports it as OMP_NUM_THREADS; tests/test_threads.py keeps the two in step).
OUTPUT_THREADS = 2


def available_cores() -> int:
    """The CPUs this process may run on: its affinity mask (a container's cpuset), else ``os.cpu_count()``."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def machine_load() -> float:
    """The 1-minute load average scaled to the cores this process may use (``os.getloadavg()``
    counts runnable tasks over every CPU of the machine, also those a cpuset keeps us off;
    our reading: spread evenly over them); 0.0 where the system has no load average."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0
    return load * available_cores() / (os.cpu_count() or available_cores())


def free_threads(cores: int | None = None, load: float | None = None) -> int:
    """The thread count for work where threads change only speed: the cores other work leaves free.

    ``cores`` (default :func:`available_cores`) minus ``load`` (default :func:`machine_load`, the
    runnable tasks of the last minute), rounded to the nearest whole core, at least 1 and at most
    ``cores``: a 2-core machine gets 2 threads when idle and 1 under a load of 0.6 to 2 or more
    (measured there: with another heavy process running, 2 threads made one Score-CAM photo 3.4x
    slower than 1 thread, since the two threads wait for each other at every layer).

    Used by ``camsurvey bench`` (``--threads`` overrides it), ``camsurvey run`` and ``make book``;
    never for stored outputs, which use :data:`OUTPUT_THREADS`. ``python -m camsurvey.common``
    prints it (the Makefile reads it there).
    """
    cores = available_cores() if cores is None else check_int(cores, "cores")
    load = machine_load() if load is None else float(load)
    if not load >= 0:
        raise ValueError(f"load must be a non-negative number of runnable tasks, got {load!r}")
    return max(1, min(cores, math.floor(cores - load + 0.5)))


@contextlib.contextmanager
def thread_environment(threads: int):
    """``OMP_NUM_THREADS=threads`` for the processes started inside the block (a chapter's kernel),
    unless the caller has set it; restored afterwards."""
    if "OMP_NUM_THREADS" in os.environ:
        yield
        return
    os.environ["OMP_NUM_THREADS"] = str(check_int(threads, "threads"))
    try:
        yield
    finally:
        os.environ.pop("OMP_NUM_THREADS", None)


if __name__ == "__main__":
    print(free_threads())
