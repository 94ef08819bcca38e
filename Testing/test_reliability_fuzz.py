"""Issue 6, fuzzing: random shapes, spacings, oblique and sheared affines, flips and factors.

For every valid volume the NIfTI round trip through the engine (read_nifti → thick_axis → synthesize_volume →
upsampled_affine → write_nifti) gives ``(n − 1)·r + 1`` slices along the thick axis, that axis's spacing divided
by r, the same origin and direction cosines, and the acquired slices bit for bit. For any input at all, the
command's pipeline (``cli.main`` in this process) ends with exit code 0 or 2 (one-line error, no output left),
never with an exception other than the documented :class:`CTSliceSynthesisError` subclasses.

Untrained lite models, one per factor; tiny volumes; one torch thread.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Dict, Tuple

import nibabel as nib
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from CTSliceSynthesisLib import cli
from CTSliceSynthesisLib.core.geometry import thick_axis, upsampled_affine, upsampled_length, voxel_spacing
from CTSliceSynthesisLib.inference.model_store import save_model
from CTSliceSynthesisLib.inference.synthesis import synthesize_volume
from CTSliceSynthesisLib.io.nifti import read_nifti, write_nifti
from conftest import untrained_lite

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
pytestmark = pytest.mark.usefixtures("one_torch_thread")
lite = untrained_lite


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> Dict[int, Path]:
    folder = tmp_path_factory.mktemp("fuzz_models")
    paths = {}
    for scale in (2, 3, 4, 5, 6):
        paths[scale] = folder / f"lite_x{scale}.pt"
        save_model(lite(scale), paths[scale])
    return paths


def rotation(angles: Tuple[float, float, float]) -> np.ndarray:
    """Rotation by three Euler angles (radians) about x, y and z."""
    matrix = np.eye(3)
    for axis, angle in enumerate(angles):
        c, s = math.cos(angle), math.sin(angle)
        i, j = [k for k in range(3) if k != axis]
        turn = np.eye(3)
        turn[i, i], turn[i, j], turn[j, i], turn[j, j] = c, -s, s, c
        matrix = turn @ matrix
    return matrix


@st.composite
def geometries(draw, thick_spacing: bool = True):
    """``(affine, thick axis)``: spacings with one clearly thickest axis (or any, without ``thick_spacing``),
    a random rotation, flipped axes, and a gantry-tilt shear of the thick column."""
    axis = draw(st.integers(0, 2))
    spacing = [draw(st.floats(0.3, 1.5)) for _ in range(3)]
    if thick_spacing:
        spacing[axis] = max(spacing) * draw(st.floats(1.5, 6.0))
    directions = rotation(tuple(draw(st.floats(-math.pi, math.pi)) for _ in range(3)))
    directions = directions * np.array([-1.0 if draw(st.booleans()) else 1.0 for _ in range(3)])
    tilt = math.radians(draw(st.floats(-30.0, 30.0)))
    towards = (axis + draw(st.integers(1, 2))) % 3
    directions[:, axis] = math.cos(tilt) * directions[:, axis] + math.sin(tilt) * directions[:, towards]
    affine = np.eye(4)
    affine[:3, :3] = directions * np.array(spacing)
    affine[:3, 3] = [draw(st.floats(-300.0, 300.0)) for _ in range(3)]
    return affine, axis


def hu_volume(shape, seed: int, dtype) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(-200.0, 600.0, shape), -1024, 3071).astype(dtype)


def directions(affine: np.ndarray) -> np.ndarray:
    matrix = np.asarray(affine, dtype=np.float64)[:3, :3]
    return matrix / np.linalg.norm(matrix, axis=0)


@FUZZ
@given(
    geometry=geometries(),
    sizes=st.tuples(st.integers(2, 24), st.integers(2, 24), st.integers(2, 24)),
    scale=st.sampled_from([2, 3, 4]),
    dtype=st.sampled_from([np.int16, np.float32]),
    seed=st.integers(0, 2**16),
)
def test_fuzz_geometry_and_pass_through(geometry, sizes, scale: int, dtype, seed: int) -> None:
    affine, axis = geometry
    data = hu_volume(sizes, seed, dtype)
    with tempfile.TemporaryDirectory() as folder:
        source, output = Path(folder) / "in.nii", Path(folder) / "out.nii"
        nib.save(nib.Nifti1Image(data, affine), str(source))
        volume = read_nifti(source)
        assert thick_axis(voxel_spacing(volume.affine)) == axis
        result = synthesize_volume(volume.data, scale, lite(scale), axis=axis).volume
        write_nifti(output, result, upsampled_affine(volume.affine, axis, scale), volume.header)
        after = nib.load(str(output))
        written = np.asanyarray(after.dataobj)
        assert sorted(os.listdir(folder)) == ["in.nii", "out.nii"]

    expected_shape = list(sizes)
    expected_shape[axis] = upsampled_length(sizes[axis], scale)
    assert written.shape == tuple(expected_shape) and written.dtype == data.dtype
    assert np.array_equal(np.take(written, np.arange(0, expected_shape[axis], scale), axis=axis), data)
    spacing_in, spacing_out = voxel_spacing(volume.affine), voxel_spacing(after.affine)
    expected_spacing = spacing_in.copy()
    expected_spacing[axis] /= scale
    np.testing.assert_allclose(spacing_out, expected_spacing, rtol=1e-6)
    np.testing.assert_array_equal(after.affine[:3, 3], volume.affine[:3, 3])
    np.testing.assert_allclose(directions(after.affine), directions(volume.affine), atol=1e-6)
    if data.dtype.kind == "f":
        assert np.all(np.isfinite(written))


def arbitrary_volume(draw) -> np.ndarray:
    """2-D to 4-D, sizes 1–12, HU, label-like, constant, unit-range or NaN-holding voxels of several types."""
    ndim = draw(st.sampled_from([2, 3, 3, 3, 3, 3, 4]))
    shape = tuple(draw(st.integers(1, 12)) for _ in range(ndim))
    if ndim == 4 and draw(st.booleans()):
        shape = shape[:3] + (1,)  # a 3-D volume stored with a singleton fourth axis
    dtype = draw(st.sampled_from([np.int16, np.uint8, np.uint16, np.float32, np.float64]))
    kind = draw(st.sampled_from(["hu", "hu", "labels", "constant", "unit", "nan"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    values = {
        "hu": lambda: rng.normal(-200.0, 600.0, shape),
        "labels": lambda: rng.integers(0, 5, shape).astype(np.float64),
        "constant": lambda: np.full(shape, 7.0),
        "unit": lambda: rng.random(shape),
        "nan": lambda: np.where(rng.random(shape) < 0.1, np.nan, rng.normal(0.0, 500.0, shape)),
    }[kind]()
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        values = np.clip(np.nan_to_num(values), info.min, info.max)
    return values.astype(dtype)


@FUZZ
@given(
    data=st.data(),
    thick_spacing=st.booleans(),
    scale=st.sampled_from([2, 3, 4, 5, 6, 2, 4, 1, 7]),  # mostly supported factors
    axis=st.sampled_from(["auto", "auto", "0", "1", "2"]),
)
def test_fuzz_any_input_exits_0_or_2(data, thick_spacing: bool, scale: int, axis: str, checkpoints) -> None:
    volume = arbitrary_volume(data.draw)
    affine, _ = data.draw(geometries(thick_spacing))
    with tempfile.TemporaryDirectory() as folder:
        source, output = Path(folder) / "in.nii.gz", Path(folder) / "out.nii.gz"
        nib.save(nib.Nifti1Image(volume, affine), str(source))
        stderr = io.StringIO()
        args = ["synthesize", "--input", str(source), "--output", str(output), "--scale", str(scale), "--device",
                "cpu", "--model", str(checkpoints.get(scale, checkpoints[2])), "--axis", axis, "--quiet",
                "--adapt-seconds", "0"]
        with contextlib.redirect_stderr(stderr):
            try:
                code = cli.main(args)
            except SystemExit as stop:
                code = stop.code
        listing = sorted(os.listdir(folder))
    messages = [line for line in stderr.getvalue().splitlines() if "error" in line]
    event(f"exit {code}: " + re.sub(r"[\d(,)]+", "", messages[0].split(": ", 2)[2])[:50] if messages else "exit 0")
    assert code in (0, 2), stderr.getvalue()  # 1 would be an undocumented (internal) error
    if code == 2:
        assert len(messages) == 1 and messages[0].startswith("ct-slice-synthesis: error: "), stderr.getvalue()
        assert listing == ["in.nii.gz"]
    else:
        assert messages == [] and listing == ["in.nii.gz", "out.nii.gz"]
