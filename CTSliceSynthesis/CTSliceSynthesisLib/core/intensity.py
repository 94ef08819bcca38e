"""Hounsfield units ↔ the networks' [0, 1] range (spec §9.2, A15), for numpy arrays and torch tensors alike.

Torch-free: a tensor is recognised by its ``clamp`` method, so this module never imports torch.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np

HU_MIN = -1024.0
HU_MAX = 3072.0
HU_RANGE = HU_MAX - HU_MIN

ArrayLike = TypeVar("ArrayLike")  # a numpy array or a torch tensor; the result has the argument's type


def hu_to_unit(hu: ArrayLike) -> ArrayLike:
    """Clip to [−1024, 3072] HU and map linearly to [0, 1]."""
    if isinstance(hu, np.ndarray) or not hasattr(hu, "clamp"):
        return (np.clip(hu, HU_MIN, HU_MAX) - HU_MIN) / HU_RANGE
    return (hu.clamp(HU_MIN, HU_MAX) - HU_MIN) / HU_RANGE


def unit_to_hu(unit: ArrayLike) -> ArrayLike:
    """Inverse of :func:`hu_to_unit` (no clipping)."""
    return unit * HU_RANGE + HU_MIN
