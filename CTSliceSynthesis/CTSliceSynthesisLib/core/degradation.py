"""Thick-slice simulation (spec §9.4): direct sampling, or blur + down-sampling + Gaussian noise."""

from __future__ import annotations

from typing import Optional

import numpy as np

BLUR_SIGMA = 1.3
NOISE_HU = 25.0
# Test-set simulations of the evaluation: every r-th slice, or blur + noise first (blur_noise_sampling).
DEGRADATIONS = ("direct", "blur-noise")
# What training windows may be degraded with (training.data.WindowSampler): nothing, or the same blur + noise.
TRAINING_DEGRADATIONS = ("none", "blur-noise")


def trim_to_multiple(volume: np.ndarray, scale: int, axis: int) -> np.ndarray:
    """Drop trailing slices along ``axis`` until ``(L − 1) mod scale == 0``."""
    length = volume.shape[axis]
    keep = ((length - 1) // scale) * scale + 1
    return np.take(volume, np.arange(keep), axis=axis)


def direct_sampling(volume: np.ndarray, scale: int, axis: int) -> np.ndarray:
    """Every ``scale``-th slice along ``axis``, starting with the first."""
    index = [slice(None)] * volume.ndim
    index[axis] = slice(None, None, scale)
    return volume[tuple(index)]


def gaussian_taps(sigma: float = BLUR_SIGMA) -> np.ndarray:
    """The normalised 3-tap Gaussian (OpenCV's 3×3 kernel with this σ is its outer product)."""
    taps = np.exp(-0.5 * (np.arange(-1, 2) / sigma) ** 2)
    return taps / taps.sum()


def blur_along(volume: np.ndarray, axis: int, sigma: float = BLUR_SIGMA) -> np.ndarray:
    """3-tap Gaussian blur along one axis with reflect-101 borders (float32)."""
    taps = gaussian_taps(sigma)
    data = np.moveaxis(volume.astype(np.float32), axis, 0)
    padded = np.concatenate((data[1:2], data, data[-2:-1]), axis=0) if data.shape[0] > 1 else data[[0, 0, 0]]
    blurred = taps[0] * padded[:-2] + taps[1] * padded[1:-1] + taps[2] * padded[2:]
    return np.moveaxis(blurred.astype(np.float32), 0, axis)


def blur_noise_sampling(
    volume: np.ndarray,
    scale: int,
    axis: int,
    in_plane_axis: Optional[int] = None,
    noise_hu: float = NOISE_HU,
    rng: Optional[np.random.Generator] = None,
) -> np.ndarray:
    """Blur (3-tap σ = 1.3 along the thick axis and, as in the authors' code, one in-plane axis), add
    N(0, ``noise_hu``²) noise, then sample every ``scale``-th slice. Returns float32 HU.

    ``in_plane_axis=None`` blurs along the thick axis only (the z-only variant).
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    blurred = blur_along(volume, axis)
    if in_plane_axis is not None:
        blurred = blur_along(blurred, in_plane_axis)
    sampled = direct_sampling(blurred, scale, axis)
    return (sampled + rng.normal(0.0, noise_hu, size=sampled.shape)).astype(np.float32)
