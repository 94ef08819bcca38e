"""``ct-slice-synthesis synthesize`` as a real subprocess: the bad inputs of issue 2 are refused cleanly.

Each refusal must give exit code 2, exactly one line on stderr naming the problem (no traceback), leave the
input file as it was and the output folder as it was (see ``cli_harness.py``). Successful runs check geometry,
pass-through and dtype.

The inputs of issue 6 (2-D and 4-D images, one slice, NaN/inf, truncated files, checkpoints for another r,
corrupt or code-carrying checkpoints, outputs equal to the input, existing outputs, unwritable folders …) are in
``test_reliability_inputs.py`` as ``test_caseNN_*``; Ctrl-C is in ``test_reliability_faults.py``. This file
keeps the other refusals: scales, missing files, file names, degenerate affines, options.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict

import nibabel as nib
import numpy as np
import pytest
import torch

from cli_harness import (
    SHAPE,
    SPACING,
    Assets,
    Case,
    CaseRegistry,
    FileState,
    Outcome,
    affine_for,
    assert_refused_cleanly,
    checkpoint_case,
    copy_of_volume,
    ct_volume,
    input_case,
    make_assets,
    partial_files,
    run_cases,
    run_cli,
    synth_args,
)
from CTSliceSynthesisLib.io.checkpoint import save_checkpoint

CASES = CaseRegistry()


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> Assets:
    return make_assets(tmp_path_factory.mktemp("cli_assets"))


# --------------------------------------------------------------------------------------------------------------
# Refusals: each builder makes its files in its own folder and says how to call the command and what to expect.


@CASES.case("scale_7")
def _(work: Path, assets: Assets) -> Case:
    source = copy_of_volume(work, assets)
    return input_case(source, assets, "unsupported scale 7", scale=7)


@CASES.case("scale_1")
def _(work: Path, assets: Assets) -> Case:
    source = copy_of_volume(work, assets)
    return input_case(source, assets, "unsupported scale 1", scale=1)


@CASES.case("degenerate_affine_zero_spacing", in_process=True)
def _(work: Path, assets: Assets) -> Case:
    # nibabel refuses to build such an image, so the sform row of a valid .nii is overwritten with zeros.
    source = work / "in.nii"
    image = nib.Nifti1Image(ct_volume(SHAPE), affine_for(SPACING))
    image.header["qform_code"], image.header["sform_code"] = 0, 1
    nib.save(image, str(source))
    raw = bytearray(source.read_bytes())
    raw[312:328] = np.zeros(4, dtype="<f4").tobytes()  # srow_z
    source.write_bytes(bytes(raw))
    assert nib.load(str(source)).affine[2, 2] == 0
    return input_case(source, assets, "degenerate affine")


@CASES.case("checkpoint_missing", in_process=True)
def _(work: Path, assets: Assets) -> Case:
    built = checkpoint_case(work, assets, work / "absent.pt", "checkpoint not found")
    built.watched = []
    return built


@CASES.case("checkpoint_not_ours", in_process=True)
def _(work: Path, assets: Assets) -> Case:
    checkpoint = work / "state_dict.pt"
    torch.save({"weight": torch.zeros(3, 3)}, checkpoint)
    return checkpoint_case(work, assets, checkpoint, "not a CTSliceSynthesis checkpoint")


@CASES.case("checkpoint_with_wrong_weights", in_process=True)
def _(work: Path, assets: Assets) -> Case:
    checkpoint = work / "incomplete.pt"
    payload = torch.load(assets.lite2, map_location="cpu", weights_only=True)
    payload["networks"].pop(sorted(payload["networks"])[0])
    save_checkpoint(checkpoint, {k: v for k, v in payload.items() if k not in ("format", "engine_version")})
    return checkpoint_case(work, assets, checkpoint, "does not hold CTSliceSynthesis networks")


@CASES.case("missing_input")
def _(work: Path, assets: Assets) -> Case:
    source = work / "absent.nii.gz"
    return input_case(source, assets, "input file not found")


@CASES.case("not_nifti_extension")
def _(work: Path, assets: Assets) -> Case:
    source = copy_of_volume(work, assets, name="in.mha")
    return input_case(source, assets, "not a NIfTI file")


@CASES.case("output_not_nifti_extension", in_process=True)
def _(work: Path, assets: Assets) -> Case:
    source = copy_of_volume(work, assets)
    output = work / "result.mha"
    return Case(synth_args(source, output, 2, assets.lite2), source, output, "must end in .nii or .nii.gz")


@CASES.case("disagreement_is_input", in_process=True)
def _(work: Path, assets: Assets) -> Case:
    source = copy_of_volume(work, assets)
    output = work / "result.nii.gz"
    args = synth_args(source, output, 2, assets.lite2, "--disagreement", str(source), "--overwrite")
    return Case(args, source, output, "is the input file")


@CASES.case("disagreement_is_output", in_process=True)
def _(work: Path, assets: Assets) -> Case:
    source = copy_of_volume(work, assets)
    output = work / "result.nii.gz"
    args = synth_args(source, output, 2, assets.lite2, "--disagreement", str(output))
    return Case(args, source, output, "must differ from --output")


@CASES.case("bad_axis", in_process=True)
def _(work: Path, assets: Assets) -> Case:
    source = copy_of_volume(work, assets)
    args = synth_args(source, work / "r.nii.gz", 2, assets.lite2, "--axis", "3")
    return Case(args, source, work / "r.nii.gz", "--axis must be auto, 0, 1 or 2")


@CASES.case("unknown_device", in_process=True)
def _(work: Path, assets: Assets) -> Case:
    source = copy_of_volume(work, assets)
    args = synth_args(source, work / "r.nii.gz", 2, assets.lite2)
    args[args.index("--device") + 1] = "tpu7"
    return Case(args, source, work / "r.nii.gz", "unknown device")


@pytest.fixture(scope="module")
def refusals(tmp_path_factory: pytest.TempPathFactory, assets: Assets) -> Dict[str, Outcome]:
    return run_cases(CASES, tmp_path_factory, assets)


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_refused_cleanly(name: str, refusals: Dict[str, Outcome], capsys, monkeypatch) -> None:
    assert_refused_cleanly(refusals[name], capsys, monkeypatch)


def test_every_bad_input_of_issue_2_has_a_case() -> None:
    """The issue 2 list; its other entries are issue 6 cases (``test_reliability_inputs.py``)."""
    expected = {"scale_7", "scale_1", "missing_input", "not_nifti_extension"}
    assert expected <= set(CASES)


# --------------------------------------------------------------------------------------------------------------
# Successful runs


def check_synthesized(source: Path, output: Path, scale: int = 2) -> nib.Nifti1Image:
    """Output of a ×``scale`` run on the (24, 20, 5) int16 asset: shape, grid, pass-through, dtype."""
    before = nib.load(str(source))
    after = nib.load(str(output))
    original = np.asanyarray(before.dataobj)
    result = np.asanyarray(after.dataobj)
    assert result.shape == (24, 20, (5 - 1) * scale + 1)
    assert result.dtype == np.int16 == original.dtype
    assert after.get_data_dtype() == np.int16
    assert np.array_equal(result[..., ::scale], original)
    expected = before.affine.copy()
    expected[:3, 2] /= scale
    np.testing.assert_allclose(after.affine, expected, atol=1e-5)
    np.testing.assert_allclose(after.header.get_qform(), expected, atol=1e-5)
    np.testing.assert_allclose(after.affine[:3, 3], before.affine[:3, 3], atol=1e-6)
    np.testing.assert_allclose(after.header.get_zooms(), (0.8, 0.8, 3.0 / scale), atol=1e-6)
    assert -1024 <= result.min() and result.max() <= 3072
    return after


def test_valid_volume_is_synthesized(tmp_path: Path, assets: Assets) -> None:
    source = copy_of_volume(tmp_path, assets)
    state = FileState.of(source)
    output, disagreement = tmp_path / "out" / "thin.nii.gz", tmp_path / "out" / "spread.nii.gz"
    output.parent.mkdir()
    result = run_cli(synth_args(source, output, 2, assets.lite2, "--disagreement", str(disagreement)))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "thick axis 2" in result.stderr and "wrote" in result.stderr
    check_synthesized(source, output)
    spread = nib.load(str(disagreement))
    assert spread.shape == (24, 20, 9) and spread.get_data_dtype() == np.float32
    spread_data = np.asanyarray(spread.dataobj)
    assert np.all(spread_data[..., ::2] == 0) and np.all(np.isfinite(spread_data)) and spread_data.min() >= 0
    np.testing.assert_allclose(spread.affine, nib.load(str(output)).affine)
    assert FileState.of(source) == state
    assert sorted(os.listdir(output.parent)) == ["spread.nii.gz", "thin.nii.gz"]


def test_overwrite_replaces_an_existing_output(tmp_path: Path, assets: Assets) -> None:
    source = copy_of_volume(tmp_path, assets)
    output = tmp_path / "thin.nii.gz"
    output.write_bytes(b"stale")
    result = run_cli(synth_args(source, output, 2, assets.lite2, "--overwrite", "--quiet"))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    check_synthesized(source, output)
    assert partial_files(tmp_path, output) == []
    assert sorted(os.listdir(tmp_path)) == ["in.nii.gz", "thin.nii.gz"]
