"""Factors 2 to 6 and the choice of r from a target slice spacing in mm (issue 17)."""

from __future__ import annotations

import pytest

from CTSliceSynthesisLib.core.config import SUPPORTED_SCALES, check_scale
from CTSliceSynthesisLib.core.errors import InputError
from CTSliceSynthesisLib.core.geometry import scale_for_target_spacing


def test_factors_two_to_six_are_supported() -> None:
    assert SUPPORTED_SCALES == (2, 3, 4, 5, 6)
    for scale in SUPPORTED_SCALES:
        check_scale(scale)


@pytest.mark.parametrize("scale", [7, 8, 12])
def test_factors_above_six_are_refused_with_a_reason(scale: int) -> None:
    with pytest.raises(InputError) as error:
        check_scale(scale)
    message = str(error.value)
    assert "\n" not in message and f"unsupported scale {scale}" in message and "2 to 6" in message


@pytest.mark.parametrize("scale", [0, 1, -2])
def test_factors_below_two_are_refused(scale: int) -> None:
    with pytest.raises(InputError, match=f"unsupported scale {scale}"):
        check_scale(scale)


@pytest.mark.parametrize(
    ("spacing", "target", "expected"),
    [
        (5.0, 1.0, 5),  # the clinical case: 5 mm to 1 mm
        (2.5, 1.0, 3),  # ×2 would give 1.25 mm, above the target: ×3 (0.83 mm)
        (3.0, 1.0, 3),
        (6.0, 1.0, 6),
        (5.0, 2.5, 2),
        (5.0, 1.7, 3),  # 1.67 mm
        (5.0, 1.2, 5),  # ×4 gives 1.25 mm, above: ×5 (1.0 mm)
        (2.0, 1.5, 2),  # 1.0 mm is the closest below 1.5 mm
        (4.9999999, 1.0, 5),  # rounding in an affine does not push ×5 above 1 mm
    ],
)
def test_target_spacing_picks_the_closest_spacing_not_above_the_target(
    spacing: float, target: float, expected: int
) -> None:
    chosen = scale_for_target_spacing(spacing, target)
    assert chosen == expected
    assert spacing / chosen <= target * (1 + 1e-6)


def test_target_spacing_never_goes_above_the_target_for_any_reachable_pair() -> None:
    for spacing in (1.2, 2.0, 2.5, 3.0, 3.75, 5.0, 6.0):
        for target in (0.9, 1.0, 1.1, 1.25, 1.5, 2.0):
            if spacing <= target or spacing / SUPPORTED_SCALES[-1] > target:
                continue
            chosen = scale_for_target_spacing(spacing, target)
            above = [r for r in SUPPORTED_SCALES if spacing / r <= target]
            assert chosen == min(above) and spacing / chosen <= target


def test_target_spacing_beyond_the_largest_factor_is_refused_with_the_spacing_it_would_give() -> None:
    with pytest.raises(InputError) as error:
        scale_for_target_spacing(10.0, 1.0)
    assert "×6" in str(error.value) and "1.67 mm" in str(error.value)


@pytest.mark.parametrize(("spacing", "target"), [(1.0, 1.0), (1.0, 2.0)])
def test_target_spacing_not_below_the_slice_spacing_is_refused(spacing: float, target: float) -> None:
    with pytest.raises(InputError, match="already"):
        scale_for_target_spacing(spacing, target)


@pytest.mark.parametrize(("spacing", "target"), [(0.0, 1.0), (5.0, 0.0), (float("nan"), 1.0), (5.0, -1.0)])
def test_target_spacing_needs_positive_spacings(spacing: float, target: float) -> None:
    with pytest.raises(InputError, match="positive"):
        scale_for_target_spacing(spacing, target)


# ---------------------------------------------------------------------------------------------------------------
# synthesize --target-spacing: the CLI end to end, with an untrained lite model for the chosen factor.


def _thick_nifti(folder, spacing_mm: float, slices: int = 4):
    import nibabel as nib
    import numpy as np

    rng = np.random.default_rng(5)
    voxels = rng.integers(-1000, 1500, size=(12, 10, slices)).astype(np.int16)
    affine = np.diag([0.8, 0.8, spacing_mm, 1.0])
    affine[:3, 3] = (-4.0, 7.5, 30.0)
    path = folder / "thick.nii.gz"
    nib.save(nib.Nifti1Image(voxels, affine), str(path))
    return path, voxels


@pytest.mark.parametrize(("spacing", "target", "expected"), [(5.0, 1.0, 5), (2.5, 1.0, 3), (6.0, 1.0, 6)])
def test_cli_target_spacing_chooses_r_keeps_acquired_slices_and_says_so(
    tmp_path, capsys, spacing: float, target: float, expected: int
) -> None:
    import nibabel as nib
    import numpy as np

    from CTSliceSynthesisLib import cli
    from CTSliceSynthesisLib.inference.model_store import save_model
    from conftest import untrained_lite

    source, voxels = _thick_nifti(tmp_path, spacing)
    model = tmp_path / f"lite_x{expected}.pt"
    save_model(untrained_lite(expected), model)
    output = tmp_path / "thin.nii.gz"
    code = cli.main(["synthesize", "--input", str(source), "--output", str(output), "--target-spacing", str(target),
                     "--model", str(model), "--device", "cpu", "--adapt-seconds", "0", "--slice-thickness",
                     str(spacing)])
    assert code == 0
    written = nib.load(str(output))
    result = np.asarray(written.dataobj)
    assert result.shape[2] == (voxels.shape[2] - 1) * expected + 1
    assert np.array_equal(result[..., ::expected], voxels)
    assert written.header.get_zooms()[2] == pytest.approx(spacing / expected)
    assert np.allclose(written.affine[:3, 3], (-4.0, 7.5, 30.0))
    log = capsys.readouterr().err
    assert f"×{expected} chosen for {target:g} mm" in log
    assert f"spacing {spacing / expected:.4g} mm (×{expected}, chosen for {target:g} mm)" in log


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--scale", "2", "--target-spacing", "1"], "not allowed with argument"),
        ([], "one of the arguments --scale --target-spacing is required"),
        (["--target-spacing", "0"], "--target-spacing must be a positive number"),
        (["--target-spacing", "5"], "already"),
        (["--target-spacing", "0.5"], "×6"),
    ],
)
def test_cli_target_spacing_refusals_are_one_line(tmp_path, capsys, flags, words: str) -> None:
    from CTSliceSynthesisLib import cli

    source, _ = _thick_nifti(tmp_path, 5.0)
    output = tmp_path / "thin.nii.gz"
    try:
        code = cli.main(["synthesize", "--input", str(source), "--output", str(output), *flags, "--quiet"])
    except SystemExit as stop:
        code = stop.code
    assert code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line]
    assert len(errors) == 1 and words in errors[0], errors
    assert not output.exists()
