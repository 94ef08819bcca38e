"""Issue 6, inputs 1–20: every hostile input is refused cleanly, warned about, or works as documented.

``test_caseNN_*`` maps to input NN of the issue. A refusal through the command line must give exit code 2 and one
line ``ct-slice-synthesis: error: …`` naming the problem (no traceback), leave the input's bytes and modification
time as they were and leave no output and no temporary file (``cli_harness.assert_refused_cleanly``). Cases
marked ``in_process`` call ``cli.main`` here; the others run the command as a subprocess, a few at a time, from
one module fixture. ``*_slicer`` tests check the same input on the Slicer side (pure helpers and the background
script's ``synthesize``).
"""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import re
import resource
import signal
import subprocess
from pathlib import Path
from typing import Dict, List

import nibabel as nib
import numpy as np
import pytest
import torch

from cli_harness import (
    ENGINE_ROOT,
    SHAPE,
    SPACING,
    Assets,
    Case,
    CaseRegistry,
    FileState,
    Outcome,
    RunsShellCommand,
    assert_one_error_line,
    assert_refused_cleanly,
    checkpoint_case,
    cli_command,
    cli_env,
    copy_of_volume,
    ct_volume,
    folder_listing,
    image_case,
    input_case,
    make_assets,
    record_outcome,
    run_cases,
    run_in_process,
    save_volume,
    synth_args,
    unlock_folders,
    volume_case,
)
from CTSliceSynthesisLib.core.errors import CheckpointError, InputError
from CTSliceSynthesisLib.inference import model_store
from CTSliceSynthesisLib.io import checks as input_checks
from CTSliceSynthesisLib.slicer_support import ijk_geometry
from CTSliceSynthesisLib.slicer_support.process_protocol import SynthesisRequest

CASES = CaseRegistry()
SCRIPT = ENGINE_ROOT / "Scripts" / "synthesize_process.py"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> Assets:
    return make_assets(tmp_path_factory.mktemp("reliability_assets"))


@pytest.fixture(scope="module")
def refusals(tmp_path_factory: pytest.TempPathFactory, assets: Assets) -> Dict[str, Outcome]:
    outcomes = run_cases(CASES, tmp_path_factory, assets)
    yield outcomes
    unlock_folders(outcomes)


def synthesize(args: List[str], cwd: Path, capsys, monkeypatch) -> subprocess.CompletedProcess:
    """``synthesize`` in this process with ``--device cpu`` and the given arguments."""
    return run_in_process(args, cwd, capsys, monkeypatch)


def refuse_in_process(built: Case, capsys, monkeypatch) -> None:
    """Run a case built on the spot through ``cli.main`` and check the whole refusal contract."""
    built.in_process = True
    assert_refused_cleanly(record_outcome(built), capsys, monkeypatch)


def slicer_script():
    """``Scripts/synthesize_process.py`` as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("synthesize_process", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def slicer_refusal(tmp_path: Path, voxels: np.ndarray, checkpoint: Path) -> str:
    """The one-line error of the Slicer background script on a K, J, I array (``.npy``), with no output left."""
    np.save(tmp_path / "input.npy", voxels)
    request = SynthesisRequest(
        str(tmp_path / "input.npy"), str(tmp_path / "output.npy"), 2, axis=0, checkpoint=str(checkpoint), device="cpu",
        adapt_seconds=0,
    )
    with pytest.raises(InputError) as raised:
        slicer_script().synthesize(request, lambda: False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["input.npy"]
    message = str(raised.value)
    assert "\n" not in message
    return message


def ijk_to_ras(spacing, directions=np.eye(3)) -> np.ndarray:
    matrix = np.eye(4)
    matrix[:3, :3] = np.asarray(directions) @ np.diag(spacing)
    matrix[:3, 3] = (12.5, -40.0, 7.25)
    return matrix


def read(path: Path):
    image = nib.load(str(path))
    return image, np.asanyarray(image.dataobj)


# --------------------------------------------------------------------------------------------------------------
# 1. A 2-D image


@CASES.case("2d_image")
def _(work: Path, assets: Assets) -> Case:
    source = work / "in.nii.gz"
    nib.save(nib.Nifti1Image(ct_volume((24, 20)), np.diag([0.8, 0.8, 1.0, 1.0])), str(source))
    return Case(synth_args(source, work / "result.nii.gz", 2, assets.lite2), source, work / "result.nii.gz", "2-D")


def test_case01_2d_image(refusals, capsys, monkeypatch) -> None:
    assert_refused_cleanly(refusals["2d_image"], capsys, monkeypatch)


def test_case01_2d_image_slicer() -> None:
    """Slicer holds a 2-D image as one slice along K: nothing to synthesize between."""
    with pytest.raises(InputError, match="at least 2"):
        ijk_geometry.plan_output_grid([24, 20, 1], ijk_to_ras([0.8, 0.8, 1.0]), 2)


# --------------------------------------------------------------------------------------------------------------
# 2. A 4-D series


@CASES.case("4d_series", in_process=True)
def _(work: Path, assets: Assets) -> Case:
    return volume_case(work, assets, ct_volume((24, 20, 5, 3)), "4-D series of 3 volumes")


def test_case02_4d_series(refusals, capsys, monkeypatch) -> None:
    assert_refused_cleanly(refusals["4d_series"], capsys, monkeypatch)


def test_case02_4d_series_slicer(tmp_path: Path, assets: Assets) -> None:
    assert "4-D" in slicer_refusal(tmp_path, ct_volume((3, 5, 16, 24)), assets.lite2)


# --------------------------------------------------------------------------------------------------------------
# 3. One or two slices along the thick axis: one is refused, two (the minimum to interpolate) work.


@CASES.case("one_slice_along_thick_axis")
def _(work: Path, assets: Assets) -> Case:
    return volume_case(work, assets, ct_volume((24, 20, 1)), "at least 2 slices")


def test_case03_one_slice_is_refused(refusals, capsys, monkeypatch) -> None:
    assert_refused_cleanly(refusals["one_slice_along_thick_axis"], capsys, monkeypatch)


def test_case03_two_slices_work(tmp_path: Path, assets: Assets, capsys, monkeypatch) -> None:
    """Two slices give (2 − 1)·r + 1 = r + 1: both acquired slices and r − 1 synthesized between them."""
    data = ct_volume((24, 20, 2))
    source = save_volume(tmp_path / "in.nii.gz", data)
    output = tmp_path / "out.nii.gz"
    result = synthesize(synth_args(source, output, 3, assets.lite3, "--quiet"), tmp_path, capsys, monkeypatch)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    _, thin = read(output)
    assert thin.shape == (24, 20, 4)
    assert np.array_equal(thin[..., ::3], data)


def test_case03_slice_count_slicer() -> None:
    with pytest.raises(InputError, match="at least 2"):
        ijk_geometry.plan_output_grid([8, 8, 1], ijk_to_ras([1, 1, 5]), 2)
    assert ijk_geometry.plan_output_grid([8, 8, 2], ijk_to_ras([1, 1, 5]), 4).dimensions == (8, 8, 5)


# --------------------------------------------------------------------------------------------------------------
# 4. An RGB or vector volume


@CASES.case("rgb_volume", in_process=True)
def _(work: Path, assets: Assets) -> Case:
    rgb = np.zeros((24, 20, 5), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    source = work / "in.nii.gz"
    nib.save(nib.Nifti1Image(rgb, np.diag([*SPACING, 1.0])), str(source))
    return image_case(work, assets, source, "RGB or vector")


def intent_case(work: Path, assets: Assets, data: np.ndarray, intent: str, expected: str) -> Case:
    """A NIfTI of ``data`` whose header declares ``intent``, expected to be refused with ``expected``."""
    image = nib.Nifti1Image(data, np.diag([*SPACING, 1.0]))
    image.header.set_intent(intent)
    source = work / "in.nii.gz"
    nib.save(image, str(source))
    return image_case(work, assets, source, expected)


@CASES.case("vector_volume", in_process=True)
def _(work: Path, assets: Assets) -> Case:
    return intent_case(work, assets, np.zeros((24, 20, 5, 1, 3), np.float32), "vector", "RGB or vector")


@pytest.mark.parametrize("name", ["rgb_volume", "vector_volume"])
def test_case04_rgb_or_vector_volume(name: str, refusals, capsys, monkeypatch) -> None:
    assert_refused_cleanly(refusals[name], capsys, monkeypatch)


def test_case04_vector_volume_slicer(tmp_path: Path, assets: Assets) -> None:
    """A vector volume reaches the background script as a K, J, I, component array."""
    assert "4-D" in slicer_refusal(tmp_path, ct_volume((5, 16, 24, 3)), assets.lite2)


# --------------------------------------------------------------------------------------------------------------
# 5. A label map: refused, with a message that says it looks like a segmentation.


def label_map(shape=SHAPE, labels: int = 4) -> np.ndarray:
    """Blocks of labels 0 … labels − 1."""
    index = np.indices(shape).sum(axis=0) // 6
    return (index % labels).astype(np.uint8)


@CASES.case("label_map_values", in_process=True)
def _(work: Path, assets: Assets) -> Case:
    return volume_case(work, assets, label_map(), "looks like a segmentation (label map: 4 distinct values")


@CASES.case("label_map_intent", in_process=True)
def _(work: Path, assets: Assets) -> Case:
    return intent_case(work, assets, ct_volume(SHAPE), "label", "looks like a segmentation")


@pytest.mark.parametrize("name", ["label_map_values", "label_map_intent"])
def test_case05_label_map(name: str, refusals, capsys, monkeypatch) -> None:
    assert_refused_cleanly(refusals[name], capsys, monkeypatch)


def test_case05_label_map_slicer(tmp_path: Path, assets: Assets) -> None:
    assert "segmentation" in slicer_refusal(tmp_path, label_map((5, 16, 24), labels=7).astype(np.int16), assets.lite2)


@pytest.mark.parametrize(
    "volume",
    [
        np.zeros((4, 4, 3), np.int16),  # constant: not a segmentation (and warned about as not CT)
        ct_volume((8, 8, 3)),  # HU
        np.arange(4 * 4 * 300).reshape(4, 4, 300).astype(np.int16) % 1024,  # 1024 distinct values
        np.full((4, 4, 3), 2000, np.int16) + np.arange(3, dtype=np.int16),  # above the label range
        label_map().astype(np.float32),  # floats are never taken for labels
    ],
    ids=["constant", "hu", "many_values", "large_values", "float"],
)
def test_case05_what_is_not_a_label_map(volume: np.ndarray) -> None:
    input_checks.refuse_label_map(volume)


# --------------------------------------------------------------------------------------------------------------
# 6. NaN or inf voxels


@CASES.case("nan_voxels")
def _(work: Path, assets: Assets) -> Case:
    data = ct_volume(SHAPE, dtype=np.float32)
    data[3, 4, 2] = np.nan
    return volume_case(work, assets, data, "1 NaN or infinite")


@CASES.case("inf_voxels")
def _(work: Path, assets: Assets) -> Case:
    data = ct_volume(SHAPE, dtype=np.float32)
    data[0, 0, 0], data[5, 6, 4] = np.inf, -np.inf
    return volume_case(work, assets, data, "2 NaN or infinite")


@pytest.mark.parametrize("name", ["nan_voxels", "inf_voxels"])
def test_case06_nan_or_inf_voxels(name: str, refusals, capsys, monkeypatch) -> None:
    assert_refused_cleanly(refusals[name], capsys, monkeypatch)


def test_case06_nan_voxels_slicer(tmp_path: Path, assets: Assets) -> None:
    voxels = ct_volume((5, 16, 24), dtype=np.float32)
    voxels[2, 3, 4] = np.nan
    assert "1 NaN or infinite" in slicer_refusal(tmp_path, voxels, assets.lite2)


# --------------------------------------------------------------------------------------------------------------
# 7. A non-CT intensity range: one warning line, then the documented behaviour (synthesized voxels clipped to
# [−1024, 3072] HU, acquired slices copied unchanged).


@pytest.mark.parametrize(
    "data",
    [
        np.random.default_rng(3).random(SHAPE).astype(np.float32),  # 0–1 floats
        np.random.default_rng(4).integers(0, 4000, SHAPE).astype(np.uint16),  # MR-like
    ],
    ids=["unit_floats", "mr_like"],
)
def test_case07_non_ct_intensities_warn_and_proceed(
    data: np.ndarray, tmp_path: Path, assets: Assets, capsys, monkeypatch
) -> None:
    source = save_volume(tmp_path / "in.nii.gz", data)
    output = tmp_path / "out.nii.gz"
    result = synthesize(synth_args(source, output, 2, assets.lite2, "--quiet"), tmp_path, capsys, monkeypatch)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert re.match(r"ct-slice-synthesis: warning: intensities .* do not look like CT in HU", lines[0]), lines
    assert "clipped to [-1024, 3072]" in lines[0]
    _, thin = read(output)
    assert thin.dtype == data.dtype and np.array_equal(thin[..., ::2], data)
    synthesized = thin[..., 1::2].astype(np.float64)
    assert synthesized.min() >= -1024 and synthesized.max() <= 3072


def test_case07_ct_in_hu_gives_no_warning() -> None:
    assert input_checks.intensity_warning(ct_volume(SHAPE)) is None
    assert "do not look like CT" in input_checks.intensity_warning(np.full(SHAPE, 40, np.int16))


# --------------------------------------------------------------------------------------------------------------
# 8. Slices that are not equally spaced. A NIfTI affine cannot express that; in Slicer it comes as a non-linear
# (acquisition) parent transform, through which the module measures the slice positions.


@pytest.mark.parametrize(
    "positions",
    [
        [0.0, 2.5, 5.0, 10.0, 12.5],  # a missing slice
        [0.0, 2.5, 5.0, 5.0, 7.5],  # a repeated slice
        [[0, 0, 0], [0, 0, 3], [0, 0, 6], [0, 0, 7.5]],  # variable thickness, as points
    ],
    ids=["missing_slice", "repeated_slice", "variable_thickness"],
)
def test_case08_unequal_slice_spacing_is_refused(positions) -> None:
    with pytest.raises(InputError, match="not equally spaced") as raised:
        ijk_geometry.check_equal_slice_spacing(positions, "CT chest")
    assert "'CT chest'" in str(raised.value) and "\n" not in str(raised.value)


def test_case08_equal_spacing_passes_whatever_the_direction() -> None:
    tilted = np.outer(np.arange(6), [0.0, 0.9, 2.36]) + [3.0, -2.0, 1.0]  # a gantry tilt: sheared, still regular
    assert ijk_geometry.check_equal_slice_spacing(tilted, "v") == pytest.approx(np.hypot(0.9, 2.36))
    assert ijk_geometry.check_equal_slice_spacing([10.0, 7.5, 5.0, 2.5], "v") == pytest.approx(2.5)
    assert ijk_geometry.check_equal_slice_spacing([0.0, 2.5, 5.01], "v") == pytest.approx(2.505)  # within 1 %


def test_case08_slice_centres_follow_the_ijk_to_ras_matrix() -> None:
    """The points the module sends through the non-linear transform: one per slice, at the slice centre."""
    matrix = ijk_to_ras([0.8, 0.7, 3.0], ijk_geometry_rotation())
    centres = ijk_geometry.slice_centres([11, 9, 4], matrix, axis=2)
    assert centres.shape == (4, 3)
    for k, centre in enumerate(centres):
        np.testing.assert_allclose(centre, (matrix @ [5.0, 4.0, k, 1.0])[:3])
    assert ijk_geometry.check_equal_slice_spacing(centres, "v") == pytest.approx(3.0)


def test_case08_nonlinear_transform_warning() -> None:
    text = ijk_geometry.nonlinear_transform_warning("CT chest", "Acquisition transform")
    assert "'CT chest'" in text and "'Acquisition transform'" in text and "harden" in text


def ijk_geometry_rotation() -> np.ndarray:
    angle = np.radians(17)
    return np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])


# --------------------------------------------------------------------------------------------------------------
# 9. An oblique, gantry-tilted affine: geometry preserved exactly.


def tilted_affine() -> np.ndarray:
    """Rotated 17° about the A axis, one axis flipped, and a 20° gantry tilt: the slice column is sheared."""
    columns = ijk_geometry_rotation() @ np.diag([-0.78, 0.78, 1.0])
    tilt = np.radians(20)
    columns[:, 2] = 2.5 * (columns[:, 2] * np.cos(tilt) + columns[:, 1] * np.sin(tilt))
    affine = np.eye(4)
    affine[:3, :3] = columns
    affine[:3, 3] = (101.5, -17.25, -330.0)
    return affine


def assert_exact_grid(source: Path, output: Path, axis: int, scale: int) -> None:
    """Output affine = input affine with column ``axis`` divided by ``scale`` (to the file's float32 precision),
    acquired slices copied bit for bit and at the same world positions."""
    before, original = read(source)
    after, result = read(output)
    expected = before.affine.copy()
    expected[:3, axis] /= scale
    np.testing.assert_array_equal(after.affine, expected.astype(np.float32).astype(np.float64))
    others = [a for a in range(4) if a != axis]
    np.testing.assert_array_equal(after.affine[:, others], before.affine[:, others])
    shape = list(original.shape)
    shape[axis] = (shape[axis] - 1) * scale + 1
    assert result.shape == tuple(shape) and result.dtype == original.dtype
    assert np.array_equal(np.take(result, np.arange(0, shape[axis], scale), axis=axis), original)
    index = np.array([3.0, 2.0, 1.0, 1.0])
    index[axis] = original.shape[axis] - 1
    scaled = index.copy()
    scaled[axis] *= scale
    np.testing.assert_allclose(after.affine @ scaled, before.affine @ index, atol=1e-4)


def test_case09_oblique_gantry_tilted_affine(tmp_path: Path, assets: Assets, capsys, monkeypatch) -> None:
    affine = tilted_affine()
    off_diagonal = affine[:3, :3] - np.diag(np.diag(affine[:3, :3]))
    assert np.abs(off_diagonal).max() > 0.2 and abs(np.dot(affine[:3, 1], affine[:3, 2])) > 0.1  # sheared
    source = tmp_path / "tilted.nii.gz"
    nib.save(nib.Nifti1Image(ct_volume((24, 20, 5)), affine), str(source))
    output = tmp_path / "out.nii.gz"
    result = synthesize(synth_args(source, output, 3, assets.lite3, "--quiet"), tmp_path, capsys, monkeypatch)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert_exact_grid(source, output, axis=2, scale=3)


# --------------------------------------------------------------------------------------------------------------
# 10. A thick axis that is not the last: auto-detected.


@pytest.mark.parametrize("axis", [0, 1])
def test_case10_thick_axis_not_last(axis: int, tmp_path: Path, assets: Assets, capsys, monkeypatch) -> None:
    spacing = [0.7, 0.75, 0.8]
    spacing[axis] = 4.0
    shape = [18, 20, 16]
    shape[axis] = 5
    affine = np.diag([*spacing, 1.0])
    affine[:3, :3] = np.diag([-1.0, -1.0, 1.0]) @ affine[:3, :3]  # LPS-like flips
    affine[:3, 3] = (4.0, 9.5, -2.25)
    source = tmp_path / "in.nii.gz"
    nib.save(nib.Nifti1Image(ct_volume(shape, seed=axis), affine), str(source))
    output = tmp_path / "out.nii.gz"
    result = synthesize(synth_args(source, output, 2, assets.lite2), tmp_path, capsys, monkeypatch)
    assert result.returncode == 0, result.stderr
    assert f"thick axis {axis};" in result.stderr
    assert_exact_grid(source, output, axis=axis, scale=2)


# --------------------------------------------------------------------------------------------------------------
# 11. Isotropic voxels: nothing to do, unless an axis is given.


@CASES.case("isotropic_voxels", in_process=True)
def _(work: Path, assets: Assets) -> Case:
    phrase = "isotropic voxels (1 mm): there are no thick slices to fill; pass --axis"
    return volume_case(work, assets, ct_volume((12, 12, 6)), phrase, spacing=(1.0, 1.0, 1.0))


def test_case11_isotropic_voxels_are_refused(refusals, capsys, monkeypatch) -> None:
    assert_refused_cleanly(refusals["isotropic_voxels"], capsys, monkeypatch)


def test_case11_isotropic_voxels_with_explicit_axis(tmp_path: Path, assets: Assets, capsys, monkeypatch) -> None:
    source = save_volume(tmp_path / "in.nii.gz", ct_volume((12, 12, 6)), spacing=(1.0, 1.0, 1.0))
    output = tmp_path / "out.nii.gz"
    args = synth_args(source, output, 2, assets.lite2, "--axis", "1", "--quiet")
    result = synthesize(args, tmp_path, capsys, monkeypatch)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert_exact_grid(source, output, axis=1, scale=2)


def test_case11_isotropic_voxels_slicer() -> None:
    matrix = ijk_to_ras([0.9, 0.9, 0.9])
    with pytest.raises(InputError, match="isotropic"):
        ijk_geometry.plan_output_grid([8, 8, 8], matrix, 2)
    assert ijk_geometry.plan_output_grid([8, 8, 8], matrix, 2, axis_choice="K").dimensions == (8, 8, 15)


# --------------------------------------------------------------------------------------------------------------
# 12. Too large for the free memory: refused from the header, before the voxels are read.


def test_case12_too_large_for_memory(tmp_path: Path, assets: Assets, capsys, monkeypatch) -> None:
    monkeypatch.setattr(input_checks, "available_memory_bytes", lambda: 10**6)
    built = volume_case(tmp_path, assets, ct_volume(SHAPE), "of memory but only 0.0 GB is available")
    refuse_in_process(built, capsys, monkeypatch)


def test_case12_memory_is_estimated_before_reading(tmp_path: Path, assets: Assets, capsys, monkeypatch) -> None:
    """The header claims 512×512×2000 but the file holds almost no voxels: the refusal names the memory (with the
    numbers), not the truncated data, so the data were never read."""
    header = nib.Nifti1Header()
    header.set_data_shape((512, 512, 2000))
    header.set_data_dtype(np.int16)
    header.set_zooms((0.7, 0.7, 2.5))
    header.set_sform(np.diag([0.7, 0.7, 2.5, 1.0]), code=1)
    header["vox_offset"] = 352
    source = tmp_path / "huge.nii"
    source.write_bytes(header.binaryblock + b"\0" * 4 + b"\1" * 4096)
    needed = input_checks.synthesis_memory_bytes((512, 512, 2000), 2, 2, 2)
    assert 5e9 < needed < 6e9
    monkeypatch.setattr(input_checks, "available_memory_bytes", lambda: 4 * 10**9)
    phrase = f"needs about {needed / 1e9:.1f} GB of memory but only 4.0 GB is available"
    refuse_in_process(image_case(tmp_path, assets, source, phrase), capsys, monkeypatch)


@pytest.mark.parametrize(
    ("slices", "scale", "measured_gb"), [(100, 2, 0.53), (100, 4, 0.85), (400, 4, 2.62)]
)
def test_case12_estimate_covers_the_measured_peaks(slices: int, scale: int, measured_gb: float) -> None:
    """The README's measured peak RSS of 512×512 int16 volumes: the estimate is above it, by less than 30 %."""
    estimate = input_checks.synthesis_memory_bytes((512, 512, slices), 2, scale, 2) / 1e9
    assert measured_gb <= estimate <= 1.3 * measured_gb


def test_case12_available_memory_sources(tmp_path: Path, monkeypatch) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       32000000 kB\nMemFree:  1000 kB\nMemAvailable:    2000000 kB\n")
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    assert input_checks.available_memory_bytes(meminfo, cgroup) == 2000000 * 1024
    (cgroup / "memory.max").write_text("1500000000\n")
    (cgroup / "memory.current").write_text("1000000000\n")
    (cgroup / "memory.stat").write_text("anon 700000000\ninactive_file 200000000\nactive_file 100000000\n")
    assert input_checks.available_memory_bytes(meminfo, cgroup) == 700_000_000  # the container's limit
    (cgroup / "memory.max").write_text("max\n")
    assert input_checks.available_memory_bytes(meminfo, cgroup) == 2000000 * 1024
    monkeypatch.setattr(os, "sysconf", lambda name: {"SC_AVPHYS_PAGES": 1000, "SC_PAGE_SIZE": 4096}[name])
    assert input_checks.available_memory_bytes(tmp_path / "absent", cgroup) == 4096000  # no /proc: sysconf
    input_checks.check_memory(10**9, "x", available=lambda: None)  # unknown: no refusal


# --------------------------------------------------------------------------------------------------------------
# 13. A truncated or corrupt NIfTI


@CASES.case("truncated_nii_gz")
def _(work: Path, assets: Assets) -> Case:
    source = work / "in.nii.gz"
    content = assets.volume.read_bytes()
    source.write_bytes(content[: len(content) // 2])
    return input_case(source, assets, "truncated or corrupt")


@CASES.case("truncated_nii", in_process=True)
def _(work: Path, assets: Assets) -> Case:
    full = save_volume(work / "full.nii", ct_volume(SHAPE))
    source = work / "in.nii"
    source.write_bytes(full.read_bytes()[: 352 + full.stat().st_size // 3])
    full.unlink()
    return input_case(source, assets, "truncated or corrupt")


@CASES.case("not_nifti_content", in_process=True)
def _(work: Path, assets: Assets) -> Case:
    source = work / "in.nii.gz"
    source.write_text("this is not a NIfTI volume\n" * 20)
    return input_case(source, assets, "truncated or corrupt")


@pytest.mark.parametrize("name", ["truncated_nii_gz", "truncated_nii", "not_nifti_content"])
def test_case13_truncated_or_corrupt_nifti(name: str, refusals, capsys, monkeypatch) -> None:
    assert_refused_cleanly(refusals[name], capsys, monkeypatch)


# --------------------------------------------------------------------------------------------------------------
# 14. A checkpoint for another r or preset


@CASES.case("checkpoint_for_another_scale")
def _(work: Path, assets: Assets) -> Case:
    return checkpoint_case(work, assets, assets.lite3, "trained for ×3, not ×2")


def test_case14_checkpoint_for_another_scale(refusals, capsys, monkeypatch) -> None:
    assert_refused_cleanly(refusals["checkpoint_for_another_scale"], capsys, monkeypatch)


def test_case14_checkpoint_for_another_preset(assets: Assets) -> None:
    with pytest.raises(CheckpointError, match="holds the 'lite' preset, not 'paper'"):
        model_store.load_model(assets.lite2, 2, "cpu", preset="paper")


def test_case14_fine_tuning_from_another_preset(tmp_path: Path, assets: Assets, capsys, monkeypatch) -> None:
    """``train --init`` with weights of another preset than ``--preset`` is refused before training."""
    args = ["--data", str(assets.volume), "--output-dir", str(tmp_path / "run"), "--init", str(assets.lite2),
            "--preset", "paper", "--steps", "1", "--patch", "32", "--window", "5", "--device", "cpu", "--quiet"]
    result = run_in_process(args, tmp_path, capsys, monkeypatch, command="train")
    assert_one_error_line(result, "the initial weights are the 'lite' preset, not 'paper'")
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------------------------------------------
# 15. A corrupt checkpoint


@CASES.case("checkpoint_random_bytes")
def _(work: Path, assets: Assets) -> Case:
    checkpoint = work / "random.pt"
    checkpoint.write_bytes(np.random.default_rng(7).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    return checkpoint_case(work, assets, checkpoint, "corrupt")


@CASES.case("checkpoint_truncated")
def _(work: Path, assets: Assets) -> Case:
    checkpoint = work / "truncated.pt"
    content = assets.lite2.read_bytes()
    checkpoint.write_bytes(content[: len(content) // 2])
    return checkpoint_case(work, assets, checkpoint, "corrupt")


@CASES.case("checkpoint_empty_file", in_process=True)
def _(work: Path, assets: Assets) -> Case:
    checkpoint = work / "empty.pt"
    checkpoint.write_bytes(b"")
    return checkpoint_case(work, assets, checkpoint, "corrupt")


@pytest.mark.parametrize("name", ["checkpoint_random_bytes", "checkpoint_truncated", "checkpoint_empty_file"])
def test_case15_corrupt_checkpoint(name: str, refusals, capsys, monkeypatch) -> None:
    assert_refused_cleanly(refusals[name], capsys, monkeypatch)


# --------------------------------------------------------------------------------------------------------------
# 16. A checkpoint that carries pickled code: refused by weights_only loading, and the code never runs.


def code_checkpoint_case(work: Path, assets: Assets, zip_format: bool) -> Case:
    marker = work / "PWNED"
    checkpoint = work / "with_code.pt"
    payload = {"format": "ct-slice-synthesis-checkpoint/1", "hook": RunsShellCommand(f"touch '{marker}'")}
    torch.save(payload, checkpoint, _use_new_zipfile_serialization=zip_format)
    built = checkpoint_case(work, assets, checkpoint, "refusing to load")
    built.marker = marker
    return built


@CASES.case("checkpoint_with_pickled_code")
def _(work: Path, assets: Assets) -> Case:
    return code_checkpoint_case(work, assets, zip_format=True)


@CASES.case("checkpoint_with_pickled_code_legacy_format", in_process=True)
def _(work: Path, assets: Assets) -> Case:
    return code_checkpoint_case(work, assets, zip_format=False)


@pytest.mark.parametrize("name", ["checkpoint_with_pickled_code", "checkpoint_with_pickled_code_legacy_format"])
def test_case16_checkpoint_with_pickled_code(name: str, refusals, capsys, monkeypatch) -> None:
    outcome = refusals[name]
    assert outcome.case.marker is not None and not outcome.case.marker.exists()
    assert_refused_cleanly(outcome, capsys, monkeypatch)  # checks again that the marker was never created


def test_case16_the_attack_is_real(tmp_path: Path) -> None:
    """Guard on the fixture: loading the same file without weights_only would run the command."""
    marker = tmp_path / "PWNED"
    checkpoint = tmp_path / "with_code.pt"
    torch.save({"hook": RunsShellCommand(f"touch '{marker}'")}, checkpoint)
    torch.load(checkpoint, weights_only=False)
    assert marker.exists()


# --------------------------------------------------------------------------------------------------------------
# 17. A manifest whose sha256 does not match the weights file


def models_folder(folder: Path, weights: Path, sha256: str) -> Path:
    """A ``Resources/Models``-like folder: ``weights`` as the default ×2 model, listed with ``sha256``."""
    folder.mkdir()
    (folder / "x2.pt").write_bytes(weights.read_bytes())
    entry = {"id": "test-x2", "file": "x2.pt", "scale": 2, "preset": "lite", "default": True, "sha256": sha256}
    (folder / "manifest.json").write_text(json.dumps({"models": [entry]}))
    return folder


def test_case17_manifest_sha256_mismatch(tmp_path: Path, assets: Assets, capsys, monkeypatch) -> None:
    folder = models_folder(tmp_path / "Models", assets.lite2, "0" * 64)
    monkeypatch.setenv(model_store.MODELS_DIR_ENV, str(folder))
    built = input_case(copy_of_volume(tmp_path, assets), assets, "does not match its manifest")
    built.args = built.args[: built.args.index("--model")]  # the bundled model
    built.watched = [folder / "x2.pt", folder / "manifest.json"]
    refuse_in_process(built, capsys, monkeypatch)


def test_case17_matching_manifest_is_used(tmp_path: Path, assets: Assets, capsys, monkeypatch) -> None:
    """Control: the same folder with the right hash is the bundled model."""
    from CTSliceSynthesisLib.io.checkpoint import sha256_of_file

    folder = models_folder(tmp_path / "Models", assets.lite2, sha256_of_file(assets.lite2))
    monkeypatch.setenv(model_store.MODELS_DIR_ENV, str(folder))
    source = copy_of_volume(tmp_path, assets)
    result = synthesize(synth_args(source, tmp_path / "out.nii.gz", 2), tmp_path, capsys, monkeypatch)
    assert result.returncode == 0, result.stderr
    assert "model test-x2 (lite, ×2)" in result.stderr


# --------------------------------------------------------------------------------------------------------------
# 18. Output equal to the input (same path, symlink, hard link, another relative path), or an existing file
# without --overwrite


@CASES.case("output_is_input")
def _(work: Path, assets: Assets) -> Case:
    source = copy_of_volume(work, assets)
    return Case(synth_args(source, source, 2, assets.lite2), source, source, "is the input file", existing_output=True)


@CASES.case("output_is_input_with_overwrite", in_process=True)
def _(work: Path, assets: Assets) -> Case:
    source = copy_of_volume(work, assets)
    args = synth_args(source, source, 2, assets.lite2, "--overwrite")
    return Case(args, source, source, "is the input file", existing_output=True)


@CASES.case("output_is_symlink_to_input")
def _(work: Path, assets: Assets) -> Case:
    source = copy_of_volume(work, assets)
    link = work / "link.nii.gz"
    link.symlink_to(source)
    args = synth_args(source, link, 2, assets.lite2, "--overwrite")
    return Case(args, source, link, "is the input file", existing_output=True)


@CASES.case("output_is_hard_link_to_input", in_process=True)
def _(work: Path, assets: Assets) -> Case:
    source = copy_of_volume(work, assets)
    link = work / "hard.nii.gz"
    os.link(source, link)
    args = synth_args(source, link, 2, assets.lite2, "--overwrite")
    return Case(args, source, link, "is the input file", existing_output=True)


@CASES.case("output_is_input_by_relative_path")
def _(work: Path, assets: Assets) -> Case:
    (work / "sub").mkdir()
    source = copy_of_volume(work, assets)
    args = synth_args(source, Path("sub") / ".." / source.name, 2, assets.lite2, "--overwrite")
    return Case(args, source, source, "is the input file", cwd=work, existing_output=True)


@CASES.case("input_by_relative_path_output_absolute", in_process=True)
def _(work: Path, assets: Assets) -> Case:
    source = copy_of_volume(work, assets)
    args = synth_args(Path(source.name), source, 2, assets.lite2, "--overwrite")
    return Case(args, source, source, "is the input file", cwd=work, existing_output=True)


@CASES.case("existing_output_without_overwrite")
def _(work: Path, assets: Assets) -> Case:
    source = copy_of_volume(work, assets)
    output = work / "result.nii.gz"
    output.write_bytes(b"an earlier result that must survive")
    return Case(synth_args(source, output, 2, assets.lite2), source, output, "pass --overwrite", existing_output=True)


@pytest.mark.parametrize(
    "name",
    [
        "output_is_input",
        "output_is_input_with_overwrite",
        "output_is_symlink_to_input",
        "output_is_hard_link_to_input",
        "output_is_input_by_relative_path",
        "input_by_relative_path_output_absolute",
    ],
)
def test_case18_output_is_the_input(name: str, refusals, capsys, monkeypatch) -> None:
    assert_refused_cleanly(refusals[name], capsys, monkeypatch)


def test_case18_existing_output_without_overwrite(refusals, capsys, monkeypatch) -> None:
    assert_refused_cleanly(refusals["existing_output_without_overwrite"], capsys, monkeypatch)


# --------------------------------------------------------------------------------------------------------------
# 19. An unwritable output folder


@CASES.case("output_folder_not_writable")
def _(work: Path, assets: Assets) -> Case:
    source = copy_of_volume(work, assets)
    locked = work / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    skip = "root ignores folder permissions (see the parent-is-a-file case)" if os.geteuid() == 0 else None
    output = locked / "r.nii.gz"
    return Case(synth_args(source, output, 2, assets.lite2), source, output, "not writable", skip=skip)


@CASES.case("output_folder_is_a_regular_file")
def _(work: Path, assets: Assets) -> Case:
    source = copy_of_volume(work, assets)
    blocker = work / "not_a_folder"
    blocker.write_bytes(b"a regular file")
    output = blocker / "r.nii.gz"
    return Case(synth_args(source, output, 2, assets.lite2), source, output, "is not a folder", watched=[blocker])


@CASES.case("output_folder_missing")
def _(work: Path, assets: Assets) -> Case:
    source = copy_of_volume(work, assets)
    output = work / "no" / "such" / "folder" / "r.nii.gz"
    return Case(synth_args(source, output, 2, assets.lite2), source, output, "does not exist")


@pytest.mark.parametrize("name", ["output_folder_not_writable", "output_folder_is_a_regular_file", "output_folder_missing"])
def test_case19_unwritable_output_folder(name: str, refusals, capsys, monkeypatch) -> None:
    assert_refused_cleanly(refusals[name], capsys, monkeypatch)


# --------------------------------------------------------------------------------------------------------------
# 20. A full disk while writing


FILE_SIZE_LIMIT = 16 * 1024


def limit_file_size() -> None:
    """``preexec_fn``: files may not grow past 16 KiB, and exceeding that is an error (EFBIG), not a signal."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))


def test_case20_file_size_limit_while_writing(tmp_path: Path, assets: Assets) -> None:
    source = save_volume(tmp_path / "in.nii", ct_volume((48, 48, 6)))  # output: 48·48·11·2 B ≫ 16 KiB
    before = FileState.of(source)
    output = tmp_path / "out" / "thin.nii"
    output.parent.mkdir()
    result = subprocess.run(
        cli_command(synth_args(source, output, 2, assets.lite2, "--quiet")),
        cwd=str(ENGINE_ROOT), env=cli_env(), capture_output=True, text=True, timeout=180, preexec_fn=limit_file_size,
    )
    assert_one_error_line(result, f"cannot write {output}: the file is larger than")
    assert "nothing was written" in result.stderr
    assert FileState.of(source) == before
    assert folder_listing(output.parent) == []  # neither the output nor its temporary


def test_case20_disk_full_while_writing(tmp_path: Path, assets: Assets, capsys, monkeypatch) -> None:
    """ENOSPC after part of the file is written: the partial temporary is removed."""
    import CTSliceSynthesisLib.io.nifti as nifti_io

    real_save = nifti_io.nib.save

    def save_then_fill_the_disk(image, filename) -> None:
        real_save(image, filename)
        assert Path(filename).name.startswith(".out.nii.gz.partial-")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(nifti_io.nib, "save", save_then_fill_the_disk)
    source = copy_of_volume(tmp_path, assets)
    built = Case(synth_args(source, tmp_path / "out.nii.gz", 2, assets.lite2, "--quiet"), source,
                 tmp_path / "out.nii.gz", "no space left on the disk; nothing was written")
    refuse_in_process(built, capsys, monkeypatch)


# --------------------------------------------------------------------------------------------------------------


def test_every_numbered_input_has_a_test() -> None:
    names = [name for name in globals() if name.startswith("test_case")]
    for number in range(1, 21):
        assert any(name.startswith(f"test_case{number:02d}_") for name in names), f"input {number} has no test"
    assert all(name in CASES for name in ("2d_image", "4d_series", "nan_voxels", "checkpoint_with_pickled_code"))
