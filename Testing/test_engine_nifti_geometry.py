"""NIfTI geometry round trip through the pieces ``synthesize`` uses: read_nifti → synthesize_volume → write_nifti
with upsampled_affine → nibabel, for axis-aligned and oblique (rotated, with a flipped axis) affines and the thick
axis first, second or third.

The synthesized grid must keep the origin and the direction cosines, divide the thick axis's spacing by r and
leave the others alone, and carry the acquired slices through exactly, at the same world positions.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Tuple

import nibabel as nib
import numpy as np
import pytest

from CTSliceSynthesisLib import cli
from CTSliceSynthesisLib.core.geometry import thick_axis, upsampled_affine, voxel_spacing
from CTSliceSynthesisLib.inference.model_store import save_model
from CTSliceSynthesisLib.inference.synthesis import synthesize_volume
from CTSliceSynthesisLib.io.nifti import read_nifti, write_nifti
from conftest import untrained_lite

SPACINGS = {0: (3.0, 0.7, 0.7), 1: (0.7, 2.5, 0.75), 2: (0.75, 0.7, 2.0)}
IN_PLANE = (19, 22)  # odd and not multiples of 8: SInt pads and crops
SLICES = 5
ORIGIN = (-120.5, 84.25, 33.0)


def rotation(axis: int, degrees: float) -> np.ndarray:
    """3×3 rotation about world axis ``axis``."""
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    i, j = [k for k in range(3) if k != axis]
    matrix = np.eye(3)
    matrix[i, i], matrix[i, j], matrix[j, i], matrix[j, j] = c, -s, s, c
    return matrix


def make_affine(thick: int, kind: str) -> np.ndarray:
    """Voxel → world: spacing with the thick axis ``thick``; ``oblique`` rotates by 20° about a world axis and
    flips one voxel axis (negative spacing along it, a left-handed grid)."""
    spacing = np.array(SPACINGS[thick])
    directions = np.eye(3)
    if kind == "oblique":
        directions = rotation((thick + 1) % 3, 20.0)
        directions[:, (thick + 2) % 3] *= -1.0  # the flipped axis
    affine = np.eye(4)
    affine[:3, :3] = directions * spacing
    affine[:3, 3] = ORIGIN
    return affine


def volume_shape(thick: int) -> Tuple[int, int, int]:
    shape = list(IN_PLANE)
    shape.insert(thick, SLICES)
    return tuple(shape)


def ct_volume(shape, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(0, 3, n) for n in shape], indexing="ij")
    volume = 650 * np.sin(2 * grids[0]) * np.cos(3 * grids[1]) + 90 * grids[2] + rng.normal(0, 35, shape)
    return volume.astype(np.int16)


def directions_of(affine: np.ndarray) -> np.ndarray:
    matrix = np.asarray(affine, dtype=np.float64)[:3, :3]
    return matrix / np.linalg.norm(matrix, axis=0)


pytestmark = pytest.mark.usefixtures("one_torch_thread")
lite = untrained_lite


def write_input(path: Path, thick: int, kind: str) -> Path:
    image = nib.Nifti1Image(ct_volume(volume_shape(thick), seed=thick), make_affine(thick, kind))
    image.set_qform(image.affine, code=1)
    image.set_sform(image.affine, code=1)
    nib.save(image, str(path))
    return path


def check_round_trip(source: Path, output: Path, thick: int, kind: str, scale: int) -> None:
    """Everything the synthesized file must satisfy relative to its input."""
    before, after = nib.load(str(source)), nib.load(str(output))
    original = np.asanyarray(before.dataobj)
    result = np.asanyarray(after.dataobj)

    expected_shape = list(original.shape)
    expected_shape[thick] = (SLICES - 1) * scale + 1
    assert result.shape == tuple(expected_shape)
    assert result.dtype == original.dtype == np.int16
    acquired = np.take(result, np.arange(0, result.shape[thick], scale), axis=thick)
    assert np.array_equal(acquired, original)

    spacing_in, spacing_out = voxel_spacing(before.affine), voxel_spacing(after.affine)
    expected_spacing = np.array(SPACINGS[thick], dtype=np.float64)
    np.testing.assert_allclose(spacing_in, expected_spacing, rtol=1e-6)
    expected_spacing[thick] /= scale
    np.testing.assert_allclose(spacing_out, expected_spacing, rtol=1e-6)
    np.testing.assert_allclose(after.header.get_zooms(), expected_spacing, rtol=1e-6)

    np.testing.assert_allclose(after.affine[:3, 3], ORIGIN, atol=1e-4)
    np.testing.assert_allclose(after.affine[:3, 3], before.affine[:3, 3], atol=1e-5)
    np.testing.assert_allclose(directions_of(after.affine), directions_of(before.affine), atol=1e-6)
    np.testing.assert_allclose(directions_of(after.affine), directions_of(make_affine(thick, kind)), atol=1e-6)
    assert np.sign(np.linalg.det(after.affine[:3, :3])) == np.sign(np.linalg.det(before.affine[:3, :3]))

    # qform and sform agree: readers that use either (ITK / Slicer use the qform) see the same grid.
    np.testing.assert_allclose(after.header.get_qform(), after.header.get_sform(), atol=1e-4)
    assert int(after.header["qform_code"]) == int(before.header["qform_code"]) == 1
    assert int(after.header["sform_code"]) == int(before.header["sform_code"]) == 1

    # Output voxel i·r along the thick axis is exactly where input voxel i was, in world coordinates.
    index_in = np.zeros((4, SLICES))
    index_in[3] = 1
    index_in[thick] = np.arange(SLICES)
    index_in[(thick + 1) % 3] = 3
    index_out = index_in.copy()
    index_out[thick] *= scale
    np.testing.assert_allclose(after.affine @ index_out, before.affine @ index_in, atol=1e-4)


@pytest.mark.parametrize("scale", [2, 3, 4, 5, 6])
@pytest.mark.parametrize("kind", ["axis_aligned", "oblique"])
@pytest.mark.parametrize("thick", [0, 1, 2])
def test_geometry_round_trip(tmp_path: Path, thick: int, kind: str, scale: int) -> None:
    source = write_input(tmp_path / "in.nii.gz", thick, kind)
    volume = read_nifti(source)
    assert volume.data.shape == volume_shape(thick)
    spacing = voxel_spacing(volume.affine)
    axis = thick_axis(spacing)
    assert axis == thick

    result = synthesize_volume(volume.data, scale, lite(scale), axis=axis).volume
    output = tmp_path / "out.nii.gz"
    write_nifti(output, result, upsampled_affine(volume.affine, axis, scale), volume.header)

    check_round_trip(source, output, thick, kind, scale)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.nii.gz", "out.nii.gz"]  # no temporary left


def test_oblique_affine_is_really_oblique_and_flipped() -> None:
    """Guard on the fixture itself: the oblique affines are neither diagonal nor right-handed."""
    for thick in range(3):
        affine = make_affine(thick, "oblique")
        off_diagonal = affine[:3, :3] - np.diag(np.diag(affine[:3, :3]))
        assert np.abs(off_diagonal).max() > 0.1
        assert np.linalg.det(affine[:3, :3]) < 0
        np.testing.assert_allclose(voxel_spacing(affine), SPACINGS[thick])


@pytest.mark.parametrize("thick", [0, 1])
def test_cli_uses_the_same_geometry(tmp_path: Path, thick: int) -> None:
    """``synthesize`` itself (in process) on an oblique volume whose thick axis is not the last one."""
    source = write_input(tmp_path / "in.nii.gz", thick, "oblique")
    checkpoint = tmp_path / "lite_x2.pt"
    save_model(lite(2), checkpoint)
    output = tmp_path / "out.nii.gz"
    code = cli.main(
        ["synthesize", "--input", str(source), "--output", str(output), "--scale", "2", "--model", str(checkpoint),
         "--device", "cpu", "--quiet", "--adapt-seconds", "0"]
    )
    assert code == 0
    check_round_trip(source, output, thick, "oblique", 2)


def test_explicit_axis_overrides_the_spacing(tmp_path: Path) -> None:
    """``--axis`` picks another axis than the thickest: that axis's spacing is divided, the others kept."""
    source = write_input(tmp_path / "in.nii.gz", 2, "oblique")
    checkpoint = tmp_path / "lite_x2.pt"
    save_model(lite(2), checkpoint)
    output = tmp_path / "out.nii.gz"
    code = cli.main(
        ["synthesize", "--input", str(source), "--output", str(output), "--scale", "2", "--model", str(checkpoint),
         "--device", "cpu", "--quiet", "--axis", "0", "--adapt-seconds", "0"]
    )
    assert code == 0
    before, after = nib.load(str(source)), nib.load(str(output))
    assert after.shape == (37, 22, SLICES)
    expected = np.array(SPACINGS[2])
    expected[0] /= 2
    np.testing.assert_allclose(voxel_spacing(after.affine), expected, rtol=1e-6)
    np.testing.assert_allclose(after.affine[:3, 3], before.affine[:3, 3], atol=1e-5)
    np.testing.assert_allclose(directions_of(after.affine), directions_of(before.affine), atol=1e-6)
    assert np.array_equal(np.asanyarray(after.dataobj)[::2], np.asanyarray(before.dataobj))


@pytest.mark.parametrize("in_plane", [(1, 6), (5, 22), (8, 8), (9, 2)])
def test_in_plane_sizes_below_the_sint_block_work(tmp_path: Path, in_plane: Tuple[int, int]) -> None:
    """In-plane sizes up to SInt's 8-pixel block (a thin slab, or ``--axis`` along a short axis) are padded to
    two blocks instead of failing inside SInt's reflection padding."""
    data = ct_volume((*in_plane, 4))
    source = tmp_path / "in.nii.gz"
    nib.save(nib.Nifti1Image(data, make_affine(2, "oblique")), str(source))
    volume = read_nifti(source)
    result = synthesize_volume(volume.data, 3, lite(3), axis=thick_axis(voxel_spacing(volume.affine))).volume
    assert result.shape == (*in_plane, 10)
    assert np.array_equal(result[..., ::3], data)
