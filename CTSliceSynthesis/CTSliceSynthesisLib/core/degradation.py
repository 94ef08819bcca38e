"""Thick-slice simulation (spec §9.4): direct sampling, real thick slices (a box slice profile), or blur +
down-sampling + Gaussian noise."""

from __future__ import annotations

from typing import Optional

import numpy as np

BLUR_SIGMA = 1.3
NOISE_HU = 25.0
# Test-set simulations of the evaluation: every r-th slice (thin slices with gaps), real thick slices as wide as
# the new spacing (thick_sampling), or blur + noise first (blur_noise_sampling).
DEGRADATIONS = ("direct", "thick", "blur-noise")
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


def box_taps(scale: int) -> np.ndarray:
    """Weights of the thin slices in one thick slice as wide as ``scale`` of them: ``scale`` equal weights for odd
    ``scale``; for even ``scale`` the box ends halfway through a slice at each side, so ``scale + 1`` slices with
    half weight at both ends. They sum to 1."""
    if scale % 2:
        return np.full(scale, 1.0 / scale)
    taps = np.ones(scale + 1)
    taps[0] = taps[-1] = 0.5
    return taps / scale


def thick_sampling(volume: np.ndarray, scale: int, axis: int) -> np.ndarray:
    """Real thick slices: every ``scale``-th slice along ``axis`` of the box average of the thin slices around it
    (:func:`box_taps`, centred; the volume is mirrored at both ends). Returns float32."""
    taps = box_taps(scale)
    half = len(taps) // 2
    data = np.moveaxis(np.asarray(volume, dtype=np.float32), axis, 0)
    length = data.shape[0]
    centres = np.arange(0, length, scale)
    result = np.zeros((len(centres),) + data.shape[1:], dtype=np.float64)
    for offset, weight in zip(range(-half, half + 1), taps):
        index = np.abs(centres + offset)
        index = np.where(index > length - 1, 2 * (length - 1) - index, index)
        result += weight * data[np.clip(index, 0, length - 1)]
    return np.moveaxis(result.astype(np.float32), 0, axis)


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
