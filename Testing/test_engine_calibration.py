"""Per-volume fusion weights: the simplex projection, the least-squares fit and the self-supervised calibration."""

from __future__ import annotations

import numpy as np
import pytest

from CTSliceSynthesisLib.inference.calibration import calibrate_fusion, describe, fit_weights
from CTSliceSynthesisLib.inference.fusion import CANDIDATES, FusionWeights
from CTSliceSynthesisLib.inference.model_store import create_model


def test_fit_by_hand() -> None:
    """Two candidates with errors +1 and −1 at one voxel mix half and half (error 0); with errors +1 and +3
    the first alone is best (any share of the second adds error)."""
    truth = np.zeros(1)
    np.testing.assert_allclose(fit_weights(np.array([[1.0], [-1.0]]), truth), [0.5, 0.5], atol=1e-12)
    np.testing.assert_allclose(fit_weights(np.array([[1.0], [3.0]]), truth), [1.0, 0.0], atol=1e-12)


def test_fit_recovers_a_known_mixture() -> None:
    """A truth that is 0.2·c₀ + 0.8·c₃ is fitted back to those weights."""
    candidates = np.random.default_rng(0).normal(size=(5, 400))
    truth = 0.2 * candidates[0] + 0.8 * candidates[3]
    np.testing.assert_allclose(fit_weights(candidates, truth), [0.2, 0, 0, 0.8, 0], atol=1e-6)


def test_calibration_is_at_least_as_good_as_any_single_candidate() -> None:
    """On a small noisy volume the fitted mix reproduces the held-out slices at least as well as each candidate
    alone (every candidate alone is a feasible mix), and the weights are a valid :class:`FusionWeights`."""
    rng = np.random.default_rng(3)
    z = np.arange(41, dtype=np.float32)[:, None, None]
    volume = 300.0 * np.sin(z / 3.0) + rng.normal(0, 40, size=(41, 24, 24)).astype(np.float32)
    calibration = calibrate_fusion(volume, create_model("lite", 2))
    assert calibration.held_out_slices == 20 * 24 * 24 // (24 * 24)
    assert set(calibration.psnr) == set(CANDIDATES) | {"calibrated"}
    assert calibration.psnr["calibrated"] >= max(calibration.psnr[name] for name in CANDIDATES) - 1e-9
    assert abs(sum(calibration.weights.as_dict().values()) - 1.0) < 1e-9
    assert "fusion weights" in describe(calibration)


def test_too_few_slices_keep_equation_7() -> None:
    """With fewer than 2r + 1 slices nothing can be held out: the weights are eq. 7's."""
    calibration = calibrate_fusion(np.zeros((6, 16, 16), np.float32), create_model("lite", 3))
    assert calibration.weights == FusionWeights()
    assert "too few slices" in describe(calibration)


def test_synthesize_command_with_calibrated_fusion(tmp_path, capsys) -> None:
    """``synthesize --fusion calibrated`` runs end to end with a checkpoint; acquired slices pass through."""
    import nibabel as nib

    from CTSliceSynthesisLib import cli
    from CTSliceSynthesisLib.inference.model_store import save_model

    rng = np.random.default_rng(5)
    data = (rng.normal(0, 200, size=(24, 24, 13)) - 300).astype(np.int16)
    source = tmp_path / "thick.nii.gz"
    nib.save(nib.Nifti1Image(data, np.diag([0.8, 0.8, 3.0, 1.0])), source)
    checkpoint = tmp_path / "lite_x2.pt"
    save_model(create_model("lite", 2), checkpoint)
    output = tmp_path / "out.nii.gz"
    argv = ["synthesize", "--input", str(source), "--output", str(output), "--scale", "2", "--model", str(checkpoint)]
    assert cli.main(argv + ["--fusion", "calibrated", "--quiet", "--device", "cpu", "--adapt-seconds", "0"]) == 0
    result = np.asarray(nib.load(output).dataobj)
    assert result.shape == (24, 24, 25) and np.array_equal(result[..., ::2], data)
