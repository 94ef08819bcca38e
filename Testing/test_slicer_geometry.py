"""The Slicer module's output grid: thick axis, dimensions, spacing and IJK-to-RAS for many input geometries."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from CTSliceSynthesisLib.core.errors import InputError
from CTSliceSynthesisLib.slicer_support.ijk_geometry import (
    AXIS_NAMES,
    nonlinear_transform_warning,
    numpy_axis,
    numpy_spacing,
    plan_output_grid,
    resolve_thick_axis,
)


def rotation(axis: np.ndarray, degrees: float) -> np.ndarray:
    """3×3 rotation about ``axis`` (Rodrigues)."""
    axis = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    angle = np.radians(degrees)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


DIRECTIONS = {
    "axis-aligned": np.eye(3),
    "oblique": rotation([1.0, 0.4, -0.2], 23.0),
    "flipped (LPS-like)": np.diag([-1.0, -1.0, 1.0]),
    "flipped and oblique (left-handed)": rotation([0.1, 1.0, 0.3], -37.0) @ np.diag([1.0, -1.0, 1.0]),
    "permuted (sagittal acquisition)": np.array([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]),
}


def ijk_to_ras(directions: np.ndarray, spacing, origin=(12.5, -40.0, 7.25)) -> np.ndarray:
    """4×4 IJK-to-RAS from direction cosines (columns), spacing and origin."""
    matrix = np.eye(4)
    matrix[:3, :3] = directions @ np.diag(spacing)
    matrix[:3, 3] = origin
    return matrix


@pytest.mark.parametrize("name", sorted(DIRECTIONS))
@pytest.mark.parametrize("thick", [0, 1, 2])
@pytest.mark.parametrize("scale", [2, 3, 4, 5, 6])
def test_output_grid_keeps_acquired_slices_in_place(name: str, thick: int, scale: int) -> None:
    spacing = [0.7, 0.8, 0.9]
    spacing[thick] = 5.0
    dims = [11, 9, 7]
    matrix = ijk_to_ras(DIRECTIONS[name], spacing)
    grid = plan_output_grid(dims, matrix, scale)

    assert grid.axis == thick and grid.axis_name == AXIS_NAMES[thick]
    expected_dims = list(dims)
    expected_dims[thick] = (dims[thick] - 1) * scale + 1
    assert grid.dimensions == tuple(expected_dims)
    expected_spacing = list(spacing)
    expected_spacing[thick] /= scale
    np.testing.assert_allclose(grid.spacing, expected_spacing)
    # Origin and direction cosines unchanged; only the thick column shrinks.
    np.testing.assert_allclose(grid.ijk_to_ras[:3, 3], matrix[:3, 3])
    np.testing.assert_allclose(grid.ijk_to_ras[:3, :3] / grid.spacing, matrix[:3, :3] / spacing, atol=1e-12)
    # Every acquired slice m sits where output slice m·r is, at every in-plane voxel.
    for m in range(dims[thick]):
        for corner in itertools.product(*[(0, d - 1) for d in dims]):
            source = np.array(corner + (1,), dtype=float)
            source[thick] = m
            target = source.copy()
            target[thick] = m * scale
            np.testing.assert_allclose(grid.ijk_to_ras @ target, matrix @ source, atol=1e-9)


@pytest.mark.parametrize("name", sorted(DIRECTIONS))
def test_user_override_picks_the_named_axis(name: str) -> None:
    matrix = ijk_to_ras(DIRECTIONS[name], [0.8, 0.8, 5.0])
    grid = plan_output_grid([10, 10, 10], matrix, 2, axis_choice="I")
    assert grid.axis == 0
    assert grid.dimensions == (19, 10, 10)
    np.testing.assert_allclose(grid.spacing, [0.4, 0.8, 5.0])


def test_ties_go_to_k() -> None:
    assert resolve_thick_axis([1.0, 1.0, 1.0]) == 2
    assert resolve_thick_axis([3.0, 3.0, 1.0]) == 1


@pytest.mark.parametrize("ijk_axis", [0, 1, 2])
def test_numpy_axis_matches_slicer_kji_arrays(ijk_axis: int) -> None:
    dims = (4, 5, 6)  # I, J, K
    k, j, i = np.meshgrid(np.arange(dims[2]), np.arange(dims[1]), np.arange(dims[0]), indexing="ij")
    array = np.stack([i, j, k])  # array[c][k, j, i] = IJK coordinate c of voxel (i, j, k)
    axis = numpy_axis(ijk_axis)
    assert numpy_axis(axis) == ijk_axis  # its own inverse
    assert array.shape[1:][axis] == dims[ijk_axis]
    for index in range(dims[ijk_axis]):
        plane = np.take(array, index, axis=axis + 1)
        assert np.all(plane[ijk_axis] == index)


@pytest.mark.parametrize("name", sorted(DIRECTIONS))
def test_numpy_spacing_is_in_kji_order(name: str) -> None:
    spacing = numpy_spacing(ijk_to_ras(DIRECTIONS[name], (0.7, 0.8, 5.0)))
    assert spacing == pytest.approx((5.0, 0.8, 0.7))
    assert all(type(value) is float for value in spacing)


@pytest.mark.parametrize(
    ("dims", "matrix", "scale", "choice", "words"),
    [
        ([8, 8, 1], ijk_to_ras(np.eye(3), [1, 1, 5]), 2, "auto", "at least 2"),
        ([8, 8, 8], ijk_to_ras(np.eye(3), [1, 1, 5]), 7, "auto", "unsupported scale 7"),
        ([8, 8, 8], np.zeros((4, 4)), 2, "auto", "not a valid"),
        ([8, 8, 8], ijk_to_ras(np.eye(3), [1, 1, 5]), 2, "Z", "slice axis"),
        ([8, 8], ijk_to_ras(np.eye(3), [1, 1, 5]), 2, "auto", "three positive"),
    ],
)
def test_impossible_inputs_raise_one_line_input_errors(dims, matrix, scale, choice, words) -> None:
    with pytest.raises(InputError) as raised:
        plan_output_grid(dims, matrix, scale, choice)
    assert words in str(raised.value)
    assert "\n" not in str(raised.value)


def test_nonlinear_transform_warning_names_volume_and_transform() -> None:
    text = nonlinear_transform_warning("CT chest", "Acquisition transform")
    assert "'CT chest'" in text and "'Acquisition transform'" in text and "harden" in text
