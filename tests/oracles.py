"""What the tests compare with, written once: the tests' own Pearson correlation (torch.corrcoef,
independent of camsurvey.metrics.pearson, which it also checks)."""

from __future__ import annotations

import torch


def pearson(a, b) -> float:
    """Pearson correlation of two maps (any shapes with as many elements), as a float."""
    pair = torch.stack([torch.as_tensor(a).flatten().double(), torch.as_tensor(b).flatten().double()])
    return float(torch.corrcoef(pair)[0, 1])
