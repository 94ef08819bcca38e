"""Thick-slice simulation and the classical baselines the product is compared with."""

from __future__ import annotations

import numpy as np
import pytest

from CTSliceSynthesisLib.core.interpolation import cubic_bspline_coefficients, upsample_cubic, upsample_linear
from CTSliceSynthesisLib.core.degradation import (
    blur_along,
    blur_noise_sampling,
    direct_sampling,
    gaussian_taps,
    trim_to_multiple,
)


def test_trim_and_direct_sampling() -> None:
    volume = np.arange(4 * 3 * 10).reshape(4, 3, 10)
    trimmed = trim_to_multiple(volume, 4, axis=2)
    assert trimmed.shape == (4, 3, 9)  # (9 − 1) mod 4 == 0
    assert np.array_equal(direct_sampling(trimmed, 4, axis=2), volume[..., [0, 4, 8]])
    assert trim_to_multiple(volume, 3, axis=0).shape == (4, 3, 10)


def test_gaussian_taps_match_opencv_sigma_1p3() -> None:
    # OpenCV's 3×3 GaussianBlur with σ = 1.3 uses the separable taps ≈ [0.299, 0.402, 0.299].
    np.testing.assert_allclose(gaussian_taps(1.3), [0.2990, 0.4020, 0.2990], atol=5e-4)


def test_blur_uses_reflect_101_borders() -> None:
    signal = np.array([1.0, 2.0, 4.0, 8.0], dtype=np.float32)[:, None]
    taps = gaussian_taps()
    blurred = blur_along(signal, axis=0)[:, 0]
    assert blurred[0] == pytest.approx(taps[0] * 2 + taps[1] * 1 + taps[2] * 2)  # reflect-101: x[-1] = x[1]
    assert blurred[1] == pytest.approx(taps[0] * 1 + taps[1] * 2 + taps[2] * 4)
    assert blurred[3] == pytest.approx(taps[0] * 4 + taps[1] * 8 + taps[2] * 4)


def test_blur_noise_sampling_statistics() -> None:
    flat = np.full((40, 40, 9), 100.0, dtype=np.float32)
    low = blur_noise_sampling(flat, 2, axis=2, in_plane_axis=0, rng=np.random.default_rng(1))
    assert low.shape == (40, 40, 5) and low.dtype == np.float32
    assert abs(low.mean() - 100.0) < 2.0 and abs(low.std() - 25.0) < 1.5


def test_linear_baseline() -> None:
    volume = np.array([0.0, 4.0, 8.0])[None, None, :] * np.ones((2, 2, 1))
    assert np.allclose(upsample_linear(volume, 4, axis=2)[0, 0], np.arange(9.0))


def test_cubic_coefficients_solve_the_mirror_system() -> None:
    samples = np.random.default_rng(0).random(7)
    n = len(samples)
    system = np.zeros((n, n))
    for k in range(n):
        for offset, weight in ((-1, 1), (0, 4), (1, 1)):
            j = abs(k + offset)
            j = 2 * (n - 1) - j if j > n - 1 else j
            system[k, j] += weight / 6
    coefficients = cubic_bspline_coefficients(samples[:, None, None])[:, 0, 0]
    np.testing.assert_allclose(system @ coefficients, samples, atol=1e-12)


@pytest.mark.parametrize("scale", [2, 3, 4, 5, 6])
def test_cubic_baseline_interpolates_and_reproduces_cubics_inside(scale: int) -> None:
    z = np.arange(25, dtype=np.float64)
    samples = (0.01 * z**3 - 0.2 * z**2 + z)[None, :, None] * np.ones((3, 1, 2))
    result = upsample_cubic(samples, scale, axis=1)
    assert result.shape == (3, 24 * scale + 1, 2)
    np.testing.assert_allclose(result[:, ::scale], samples, rtol=1e-5, atol=1e-4)
    fine = np.arange(24 * scale + 1) / scale
    truth = 0.01 * fine**3 - 0.2 * fine**2 + fine
    interior = (fine > 9) & (fine < 15)  # away from the mirror boundaries (their effect decays as 0.27^k)
    np.testing.assert_allclose(result[0, interior, 0], truth[interior], atol=1e-3)
