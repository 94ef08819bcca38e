"""The grid of a synthesized volume in Slicer's IJK terms. Pure numpy.

Slicer describes a volume by its IJK dimensions and its 4×4 IJK-to-RAS matrix, and hands voxels to Python as a
numpy array in K, J, I order. The synthesized volume keeps the origin and the direction cosines, divides the
spacing of the thick (through-plane) axis by the factor ``r`` and has ``(n − 1)·r + 1`` slices along it, so that
output slice ``m·r`` lies exactly where input slice ``m`` was.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Tuple

import numpy as np

from ..core.config import check_scale
from ..core.errors import InputError
from ..core.geometry import is_isotropic, thick_axis, upsampled_affine, upsampled_length, voxel_spacing

AXIS_NAMES = ("I", "J", "K")
AXIS_CHOICES = ("auto",) + AXIS_NAMES
# Slice gaps may differ by 1 % (rounding in DICOM positions) before a volume counts as unevenly spaced.
SLICE_SPACING_TOLERANCE = 0.01


@dataclass(frozen=True)
class OutputGrid:
    """Where the voxels of a synthesized volume are: everything the output node needs besides the voxels."""

    axis: int
    scale: int
    dimensions: Tuple[int, int, int]
    spacing: Tuple[float, float, float]
    ijk_to_ras: np.ndarray

    @property
    def numpy_axis(self) -> int:
        """The thick axis in the K, J, I order of ``slicer.util.arrayFromVolume`` arrays."""
        return numpy_axis(self.axis)

    @property
    def axis_name(self) -> str:
        """``I``, ``J`` or ``K``."""
        return AXIS_NAMES[self.axis]


def numpy_axis(ijk_axis: int) -> int:
    """Map an IJK axis to the matching axis of a K, J, I ordered array (the mapping is its own inverse)."""
    if ijk_axis not in (0, 1, 2):
        raise InputError(f"axis must be 0, 1 or 2, got {ijk_axis}")
    return 2 - ijk_axis


def numpy_spacing(ijk_to_ras: np.ndarray) -> Tuple[float, float, float]:
    """The voxel spacing (mm) in the K, J, I order of ``slicer.util.arrayFromVolume`` arrays."""
    spacing = voxel_spacing(ijk_to_ras)
    return float(spacing[2]), float(spacing[1]), float(spacing[0])


def resolve_thick_axis(spacing: Sequence[float], choice: str = "auto") -> int:
    """The IJK axis to synthesize: the one with the largest spacing for ``auto``, else the named axis (I, J, K)."""
    if choice == "auto":
        try:
            return thick_axis(spacing)
        except ValueError as error:
            raise InputError(f"cannot find the slice axis: {error}") from None
    if choice not in AXIS_NAMES:
        raise InputError(f"slice axis must be one of {', '.join(AXIS_CHOICES)}, got {choice!r}")
    return AXIS_NAMES.index(choice)


def plan_output_grid(
    dimensions: Sequence[int], ijk_to_ras: np.ndarray, scale: int, axis_choice: str = "auto"
) -> OutputGrid:
    """The output grid for an input of IJK ``dimensions`` and matrix ``ijk_to_ras`` up-sampled ``scale`` times.

    Raises :class:`InputError` (one line) when the input cannot be synthesized: an unsupported factor,
    a degenerate matrix, isotropic voxels with ``axis_choice="auto"``, or fewer than two slices along the axis.
    """
    check_scale(scale)
    dims = tuple(int(d) for d in dimensions)
    if len(dims) != 3 or min(dims) < 1:
        raise InputError(f"expected three positive IJK dimensions, got {tuple(dimensions)}")
    matrix = np.asarray(ijk_to_ras, dtype=np.float64)
    if matrix.shape != (4, 4) or not np.all(np.isfinite(matrix)) or abs(np.linalg.det(matrix[:3, :3])) < 1e-12:
        raise InputError("the volume's IJK-to-RAS matrix is not a valid 4×4 geometry")
    spacing = voxel_spacing(matrix)
    if axis_choice == "auto" and is_isotropic(spacing):
        raise InputError(
            f"the voxels are isotropic ({spacing[0]:.3g} mm): there are no thick slices to fill; choose a slice "
            "axis (I, J or K) to up-sample one anyway"
        )
    axis = resolve_thick_axis(spacing, axis_choice)
    if dims[axis] < 2:
        raise InputError(f"axis {AXIS_NAMES[axis]} has {dims[axis]} slice; at least 2 are needed to synthesize between")
    out_dims = list(dims)
    out_dims[axis] = upsampled_length(dims[axis], scale)
    out_spacing = [float(s) for s in spacing]
    out_spacing[axis] /= scale
    return OutputGrid(
        axis=axis,
        scale=int(scale),
        dimensions=(out_dims[0], out_dims[1], out_dims[2]),
        spacing=(out_spacing[0], out_spacing[1], out_spacing[2]),
        ijk_to_ras=upsampled_affine(matrix, axis, scale),
    )


def nonlinear_transform_warning(volume_name: str, transform_name: str) -> str:
    """The message shown when a volume sits under a non-linear transform (e.g. a DICOM acquisition transform)."""
    return (
        f"'{volume_name}' is under the non-linear transform '{transform_name}' (for example a gantry-tilt or "
        "irregular-spacing correction from DICOM import). Synthesis works on the voxel grid, whose slices are then "
        "not evenly spaced in space; harden the transform first (Data module) for a geometrically exact result."
    )


def slice_centres(dimensions: Sequence[int], ijk_to_ras: np.ndarray, axis: int) -> np.ndarray:
    """RAS positions ``(n, 3)`` of the centre of each slice along IJK ``axis``, before any parent transform."""
    dims = np.asarray([int(d) for d in dimensions], dtype=np.float64)
    count = int(dims[axis])
    points = np.tile(np.append((dims - 1.0) / 2.0, 1.0), (count, 1))
    points[:, axis] = np.arange(count)
    return (np.asarray(ijk_to_ras, dtype=np.float64) @ points.T).T[:, :3]


def check_equal_slice_spacing(
    positions: Sequence, volume_name: str, tolerance: float = SLICE_SPACING_TOLERANCE
) -> float:
    """The common distance between consecutive slices at ``positions`` (mm along the slice axis, shape ``(n,)``, or
    points in space, shape ``(n, 3)``); :class:`InputError` when the gaps differ by more than ``tolerance``
    (relative), a slice repeats, or there are fewer than two slices.

    Synthesis puts ``r − 1`` slices evenly between neighbours, which is only right when the slices themselves are
    evenly spaced (DICOM series with a missing or extra slice, or variable-thickness acquisitions, are not).
    """
    points = np.asarray(positions, dtype=np.float64)
    points = points[:, None] if points.ndim == 1 else points
    if points.ndim != 2 or len(points) < 2 or not np.all(np.isfinite(points)):
        raise InputError(f"'{volume_name}' needs at least 2 slices with finite positions, got {len(points)}")
    gaps = np.linalg.norm(np.diff(points, axis=0), axis=1)
    smallest, largest = float(gaps.min()), float(gaps.max())
    if smallest <= 0 or largest - smallest > tolerance * largest:
        raise InputError(
            f"the slices of '{volume_name}' are not equally spaced (gaps from {smallest:.3g} to {largest:.3g} mm): "
            "resample it onto a regular grid first (for an acquisition transform: harden it in the Data module)"
        )
    return float(np.median(gaps))
