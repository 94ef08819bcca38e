"""Hounsfield units ↔ the networks' [0, 1] range (spec §9.2, A15)."""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

HU_MIN = -1024.0
HU_MAX = 3072.0
HU_RANGE = HU_MAX - HU_MIN

ArrayLike = TypeVar("ArrayLike", np.ndarray, torch.Tensor)


def hu_to_unit(hu: ArrayLike) -> ArrayLike:
    """Clip to [−1024, 3072] HU and map linearly to [0, 1]."""
    if isinstance(hu, torch.Tensor):
        return (hu.clamp(HU_MIN, HU_MAX) - HU_MIN) / HU_RANGE
    return (np.clip(hu, HU_MIN, HU_MAX) - HU_MIN) / HU_RANGE


def unit_to_hu(unit: ArrayLike) -> ArrayLike:
    """Inverse of :func:`hu_to_unit` (no clipping)."""
    return unit * HU_RANGE + HU_MIN
