"""Voxel geometry: which axis is thick, and the grid of the synthesized volume. Pure numpy."""

from __future__ import annotations

from typing import Sequence

import numpy as np

ISOTROPY_TOLERANCE = 0.01


def voxel_spacing(affine: np.ndarray) -> np.ndarray:
    """Spacing of the three voxel axes: the lengths of the columns of ``affine[:3, :3]``."""
    matrix = np.asarray(affine, dtype=np.float64)
    if matrix.shape != (4, 4):
        raise ValueError(f"expected a 4×4 affine, got shape {matrix.shape}")
    return np.linalg.norm(matrix[:3, :3], axis=0)


def is_isotropic(spacing: Sequence[float], tolerance: float = ISOTROPY_TOLERANCE) -> bool:
    """True when the largest and smallest spacings differ by less than ``tolerance`` (relative)."""
    values = np.asarray(spacing, dtype=np.float64)
    return bool(values.max() - values.min() <= tolerance * values.max())


def thick_axis(spacing: Sequence[float], tolerance: float = ISOTROPY_TOLERANCE) -> int:
    """The axis with the largest spacing; among axes within ``tolerance`` of it, the last one.

    Ties go to the last axis because that is the slice axis of NIfTI files converted from DICOM.
    """
    values = np.asarray(spacing, dtype=np.float64)
    if values.ndim != 1 or values.size == 0 or not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ValueError(f"spacing must be positive and finite, got {list(values)}")
    candidates = np.flatnonzero(values >= values.max() * (1.0 - tolerance))
    return int(candidates[-1])


def upsampled_length(length: int, scale: int) -> int:
    """Slices after synthesis along the thick axis: ``(length − 1)·scale + 1``."""
    return (int(length) - 1) * int(scale) + 1


def upsampled_affine(affine: np.ndarray, axis: int, scale: int) -> np.ndarray:
    """Affine of the synthesized grid: column ``axis`` divided by ``scale``; origin and directions unchanged.

    Output voxel ``i·scale`` along ``axis`` sits exactly where input voxel ``i`` was.
    """
    result = np.array(affine, dtype=np.float64, copy=True)
    if result.shape != (4, 4):
        raise ValueError(f"expected a 4×4 affine, got shape {result.shape}")
    result[:3, axis] /= scale
    return result
