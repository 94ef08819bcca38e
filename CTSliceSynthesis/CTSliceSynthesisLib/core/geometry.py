"""Voxel geometry: which axis is thick, the slices' spacing and thickness, and the grid of the synthesized
volume. Pure numpy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np

from .config import SUPPORTED_SCALES
from .errors import InputError

ISOTROPY_TOLERANCE = 0.01
# Where a slice thickness came from, most to least reliable: the user (command line, the Slicer panel), the
# DICOM Slice Thickness (0018,0050) of the loaded series, an estimate from the voxels, or the spacing itself.
THICKNESS_SOURCES = ("given", "dicom", "estimated", "spacing")


@dataclass(frozen=True)
class SliceGeometry:
    """The slices of a volume along its thick axis: spacing Δz and thickness T in mm, where T came from
    (:data:`THICKNESS_SOURCES`), and the pixel size of the two in-plane axes (in array order)."""

    spacing_mm: float
    thickness_mm: float
    thickness_source: str
    in_plane_mm: Tuple[float, float]

    def __post_init__(self) -> None:
        if self.thickness_source not in THICKNESS_SOURCES:
            raise ValueError(f"unknown thickness source {self.thickness_source!r}")

    @property
    def thickness_known(self) -> bool:
        """True when T was given or read from DICOM, not estimated or assumed."""
        return self.thickness_source in ("given", "dicom")

    def describe(self) -> str:
        """One line for logs, e.g. ``5 mm slices every 5 mm (thickness given)``."""
        return (
            f"{self.thickness_mm:.3g} mm slices every {self.spacing_mm:.3g} mm "
            f"(thickness {self.thickness_source}), pixels {self.in_plane_mm[0]:.3g} × {self.in_plane_mm[1]:.3g} mm"
        )


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


def checked_spacing(affine: np.ndarray, name: str) -> np.ndarray:
    """The voxel spacing of ``affine``; :class:`InputError` naming ``name`` when the affine is degenerate
    (not finite, or an axis of zero length)."""
    spacing = voxel_spacing(affine)
    if not np.all(np.isfinite(affine)) or not np.all(spacing > 0):
        raise InputError(f"{name} has a degenerate affine (voxel spacing {', '.join(f'{s:.3g}' for s in spacing)} mm)")
    return spacing


def choose_axis(affine: np.ndarray, name: str, choice: Optional[int]) -> Tuple[np.ndarray, int]:
    """``(voxel spacing, thick axis)`` of the volume ``name``: the axis given, else the one with the largest spacing.

    A degenerate affine is refused, and so are isotropic voxels without an explicit axis: there are no thick
    slices to fill.
    """
    spacing = checked_spacing(affine, name)
    if choice is not None:
        return spacing, choice
    if is_isotropic(spacing):
        raise InputError(
            f"{name} has isotropic voxels ({spacing[0]:.3g} mm): there are no thick slices to fill; "
            "pass --axis 0, 1 or 2 to up-sample one axis anyway"
        )
    return spacing, thick_axis(spacing)


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


def scale_for_target_spacing(slice_spacing: float, target_spacing: float) -> int:
    """The factor r of :data:`~.config.SUPPORTED_SCALES` whose output spacing ``slice_spacing / r`` comes closest
    to ``target_spacing`` without going above it; on a tie, the smaller r.

    5 mm to 1 mm is ×5, 2.5 mm to 1 mm is ×3 (0.83 mm), 3 mm to 1 mm is ×3. Raises :class:`InputError` (one line)
    when the slices are already at most ``target_spacing`` apart, or when even the largest factor stays above it.
    """
    if not (np.isfinite(slice_spacing) and np.isfinite(target_spacing)) or slice_spacing <= 0 or target_spacing <= 0:
        raise InputError(f"slice spacings must be positive, got {slice_spacing:.4g} and {target_spacing:.4g} mm")
    if slice_spacing <= target_spacing * (1 + 1e-9):
        raise InputError(
            f"the slices are already {slice_spacing:.3g} mm apart, not more than the target {target_spacing:.3g} mm")
    # A small tolerance keeps 5 mm / 5 = 1 mm at a 1 mm target despite rounding in the affine.
    reachable = [r for r in SUPPORTED_SCALES if slice_spacing / r <= target_spacing * (1 + 1e-6)]
    if not reachable:
        largest = SUPPORTED_SCALES[-1]
        raise InputError(
            f"{target_spacing:.3g} mm from {slice_spacing:.3g} mm slices needs more than ×{largest}, the largest "
            f"factor ({slice_spacing / largest:.3g} mm): ask for a target of at least that, or --scale {largest}")
    return min(reachable, key=lambda r: (target_spacing - slice_spacing / r, r))
