"""Slice profiles in mm (``training.profiles``): box averages of piecewise-linear lines, the training range of
slice geometries, the blind thickness range and the thickness estimate's refusals and range."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from CTSliceSynthesisLib.training.profiles import (
    ESTIMATE_RATIOS,
    ESTIMATE_STRETCHES,
    UNKNOWN_THICKNESS_RATIO,
    ProfileRange,
    ThicknessEstimate,
    blind_thickness_ratio,
    box_average,
    estimate_thickness,
    line_integrals,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# A tent: 0 outside [1, 3], peak 4 at pixel 2. Linear pieces of slope ±4 on [1, 2] and [2, 3].
TENT = torch.tensor([0.0, 0.0, 4.0, 0.0, 0.0])


# --- line_integrals / box_average ----------------------------------------------------------------------------


def test_line_integrals_are_running_trapezoid_sums() -> None:
    lines = torch.tensor([[0.0, 2.0, 2.0, 6.0], [1.0, 1.0, 1.0, 1.0]])
    # trapezoids (0+2)/2, (2+2)/2, (2+6)/2 = 1, 2, 4 → 0, 1, 3, 7; a constant 1 integrates to its position
    expected = torch.tensor([[0.0, 1.0, 3.0, 7.0], [0.0, 1.0, 2.0, 3.0]])
    torch.testing.assert_close(line_integrals(lines), expected)


@pytest.mark.parametrize("width", [0.3, 1.0, 2.7, 6.0])
def test_box_average_of_a_ramp_is_the_ramp_at_the_centre(width: float) -> None:
    """A line is symmetric about any point, so its mean over a centred box is its value there, for any width."""
    positions = torch.arange(20, dtype=torch.float32)
    lines = torch.stack((3.0 * positions - 7.0, -0.5 * positions + 2.0))  # (2, 20)
    centres = torch.tensor([4.0, 7.25, 9.5, 12.8, 15.0])
    expected = torch.stack((3.0 * centres - 7.0, -0.5 * centres + 2.0))
    # float32 differences of running integrals (up to ~300) over a narrow box: ~1e-4 of rounding
    torch.testing.assert_close(box_average(lines, centres, width), expected, atol=1e-3, rtol=0)


def test_one_pixel_box_on_a_tent_matches_hand_integrals() -> None:
    """∫ of the tent over [1.5, 2.5] = 2·∫₁.₅² 4(x−1) dx = 2·1.5 = 3; over [1, 2] = 2; over [0.75, 1.75] =
    ∫₁^1.75 4(x−1) dx = 2·0.75² = 1.125. A box of width 1 has these as means."""
    centres = torch.tensor([2.0, 1.5, 1.25, 2.75])
    expected = torch.tensor([3.0, 2.0, 1.125, 1.125])  # 2.75 mirrors 1.25 about the peak
    torch.testing.assert_close(box_average(TENT, centres, 1.0), expected, atol=1e-6, rtol=0)


def test_narrow_boxes_approach_point_sampling() -> None:
    """At the tent's peak the mean over width w ≤ 2 is (8h − 4h²)/(2h) = 4 − w with h = w/2: it tends to the
    point value 4 as w → 0; below 1e-3 pixel the result is linear interpolation exactly."""
    peak = torch.tensor([2.0])
    for width in (1.5, 0.5, 0.1, 0.01, 0.002):
        assert float(box_average(TENT, peak, width)) == pytest.approx(4.0 - width, abs=1e-4)
    assert float(box_average(TENT, peak, 1e-4)) == 4.0
    # point samples: linear interpolation between pixel centres
    torch.testing.assert_close(box_average(TENT, torch.tensor([1.25, 2.5, 3.0]), 0.0), torch.tensor([1.0, 2.0, 0.0]))
    # inside one linear piece every narrow box already equals the point value
    for width in (0.5, 0.1, 0.01):
        assert float(box_average(TENT, torch.tensor([1.4]), width)) == pytest.approx(1.6, abs=1e-5)


def test_constant_lines_stay_constant_and_shapes_follow_the_batch() -> None:
    lines = torch.full((3, 2, 12), 1.0) * torch.tensor([-1000.0, 40.0, 900.0])[:, None, None]
    centres = torch.tensor([2.0, 3.3, 5.5, 8.0])
    for width in (0.0, 0.4, 1.0, 3.0):
        result = box_average(lines, centres, width)
        assert result.shape == (3, 2, 4)
        torch.testing.assert_close(result, lines[..., :4], atol=1e-3, rtol=0)


def test_precomputed_integrals_give_the_same_means() -> None:
    lines = torch.randn(4, 16, generator=torch.Generator().manual_seed(3))
    centres = torch.tensor([3.0, 6.6, 10.1])
    reused = box_average(lines, centres, 2.2, line_integrals(lines))
    torch.testing.assert_close(reused, box_average(lines, centres, 2.2))


# --- ProfileRange / blind_thickness_ratio --------------------------------------------------------------------


def test_draws_stay_in_range_and_are_log_uniform() -> None:
    profiles = ProfileRange(spacing_mm=(1.0, 6.0), thickness_ratio=(0.5, 2.0))
    generator = torch.Generator().manual_seed(0)
    draws = np.array([profiles.draw(generator) for _ in range(2000)])
    spacing, ratio = draws[:, 0], draws[:, 1] / draws[:, 0]
    assert spacing.min() >= 1.0 and spacing.max() <= 6.0
    assert ratio.min() >= 0.5 - 1e-9 and ratio.max() <= 2.0 + 1e-9
    # log-uniform: half below the geometric mean (a uniform draw on [1, 6] would put 29 % below √6)
    assert np.mean(spacing < math.sqrt(6.0)) == pytest.approx(0.5, abs=0.04)
    assert np.mean(ratio < 1.0) == pytest.approx(0.5, abs=0.04)
    assert spacing.max() > 5.8 and spacing.min() < 1.05  # both ends are reached


def test_equal_ends_fix_the_draw_and_given_values_are_kept() -> None:
    fixed = ProfileRange(spacing_mm=(2.5, 2.5), thickness_ratio=(1.2, 1.2))
    assert fixed.draw(torch.Generator().manual_seed(1)) == pytest.approx((2.5, 3.0))
    profiles = ProfileRange(spacing_mm=(1.0, 6.0), thickness_ratio=(0.8, 0.8))
    spacing, thickness = profiles.draw(torch.Generator().manual_seed(1), spacing=4.0)
    assert (spacing, thickness) == pytest.approx((4.0, 3.2))  # T = given Δz · drawn ratio
    spacing, thickness = profiles.draw(torch.Generator().manual_seed(1), thickness=0.7)
    assert 1.0 <= spacing <= 6.0 and thickness == 0.7
    assert profiles.draw(torch.Generator().manual_seed(1), 5.0, 1.5) == (5.0, 1.5)


def test_the_generator_advances_alike_with_or_without_given_values() -> None:
    profiles = ProfileRange(spacing_mm=(1.0, 6.0), thickness_ratio=(0.5, 2.0))
    plain, given = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    profiles.draw(plain)
    profiles.draw(given, spacing=3.0, thickness=2.0)
    assert torch.equal(plain.get_state(), given.get_state())


@pytest.mark.parametrize("spacing, ratio", [((0.0, 1.0), (1.0, 1.0)), ((2.0, 1.0), (1.0, 1.0)),
                                            ((1.0, 2.0), (1.0, math.inf)), ((1.0, 2.0), (-1.0, 1.0))])
def test_invalid_ranges_are_refused(spacing, ratio) -> None:
    with pytest.raises(ValueError, match="positive range"):
        ProfileRange(spacing_mm=spacing, thickness_ratio=ratio)


@pytest.mark.parametrize("scale", [2, 3, 4, 5, 6])
def test_blind_thickness_ratio_spans_gaps_to_overlap(scale: int) -> None:
    low, high = blind_thickness_ratio(scale)
    assert low == pytest.approx(UNKNOWN_THICKNESS_RATIO[0] / scale) and high == UNKNOWN_THICKNESS_RATIO[1]
    assert (low, high) == pytest.approx((0.8 / scale, 1.4))
    ProfileRange((1.0, 6.0), (low, high))  # a valid range for training


# --- estimate_thickness ---------------------------------------------------------------------------------------


def smooth_field(shape, sigmas, seed: int = 0) -> np.ndarray:
    """Gaussian-filtered white noise (in the Fourier domain), standard deviation 300 HU."""
    rng = np.random.default_rng(seed)
    frequencies = np.meshgrid(*[np.fft.fftfreq(n) for n in shape], indexing="ij")
    gain = np.exp(-2 * np.pi**2 * sum((s * k) ** 2 for s, k in zip(sigmas, frequencies)))
    field = np.real(np.fft.ifftn(np.fft.fftn(rng.normal(0.0, 1.0, shape)) * gain))
    return (field / field.std() * 300.0).astype(np.float32)


def test_too_few_slices_give_no_estimate() -> None:
    volume = np.random.default_rng(0).normal(0, 200, (5, 64, 64)).astype(np.float32)
    assert estimate_thickness(volume, 3.0, (0.8, 0.8)) is None


@pytest.mark.parametrize("size", [16, 24, 32])
def test_images_too_small_give_no_estimate_instead_of_failing(size: int) -> None:
    """13 slices of 24 × 24 used to stop with a torch.arange error: lines too short for the widest box."""
    volume = np.random.default_rng(size).normal(0, 200, (13, size, size)).astype(np.float32)
    assert estimate_thickness(volume, 3.0, (0.8, 0.8)) is None


def test_an_anisotropic_volume_gets_an_estimate_on_the_grid() -> None:
    """Smoother along z than in-plane, every 4th slice of 0.8 mm voxels: Δz = 3.2 mm. The estimate is documented
    as unreliable, so only its form is checked: positive, one of the grid's ratios and stretches, T = ratio·Δz."""
    thick = smooth_field((96, 64, 64), (4.0, 1.5, 1.5))[::4]
    estimate = estimate_thickness(thick, 3.2, (0.8, 0.8))
    assert isinstance(estimate, ThicknessEstimate)
    assert estimate.thickness_mm > 0 and estimate.ratio in ESTIMATE_RATIOS
    assert estimate.thickness_mm == pytest.approx(estimate.ratio * 3.2)
    assert min(abs(estimate.stretch - s) for s in ESTIMATE_STRETCHES) < 1e-12
    assert math.isfinite(estimate.residual) and estimate.residual >= 0
    assert ESTIMATE_RATIOS[0] * 3.2 <= estimate.thickness_mm <= ESTIMATE_RATIOS[-1] * 3.2


def test_an_all_air_volume_does_not_fail() -> None:
    """No voxel above the body threshold: the structure functions are all zero, any grid point fits."""
    air = np.full((8, 64, 64), -1000.0, dtype=np.float32)
    estimate = estimate_thickness(air, 3.0, (0.8, 0.8))
    assert estimate is None or (estimate.thickness_mm > 0 and estimate.ratio in ESTIMATE_RATIOS)
