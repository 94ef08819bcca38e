"""Classical z-only interpolation baselines (what Slicer's resampling offers): nearest neighbour, linear, cubic
B-spline and Lanczos-3. Each maps ``n`` slices along ``axis`` to ``(n − 1)·scale + 1`` (float32), reproducing the
original slices exactly at every ``scale``-th output slice."""

from __future__ import annotations

import math

import numpy as np

from .geometry import upsampled_length

CUBIC_POLE = math.sqrt(3.0) - 2.0
LANCZOS_LOBES = 3


def upsample_nearest(volume: np.ndarray, scale: int, axis: int) -> np.ndarray:
    """Nearest-slice interpolation along ``axis`` (float32); a position halfway between two slices (even
    ``scale``) takes the earlier slice."""
    data = np.moveaxis(np.asarray(volume, dtype=np.float32), axis, 0)
    index = np.arange(upsampled_length(data.shape[0], scale))
    nearest = index // scale + (2 * (index % scale) > scale)
    return np.moveaxis(data[nearest], 0, axis)


def upsample_linear(volume: np.ndarray, scale: int, axis: int) -> np.ndarray:
    """Linear interpolation along ``axis`` to ``(n − 1)·scale + 1`` slices (float32)."""
    data = np.moveaxis(np.asarray(volume, dtype=np.float32), axis, 0)
    positions = np.arange(upsampled_length(data.shape[0], scale)) / scale
    lower = np.minimum(np.floor(positions).astype(int), data.shape[0] - 2)
    weight = (positions - lower).astype(np.float32)[:, None, None]
    result = data[lower] * (1 - weight) + data[lower + 1] * weight
    return np.moveaxis(result, 0, axis)


def cubic_bspline_coefficients(samples: np.ndarray) -> np.ndarray:
    """Interpolating cubic B-spline coefficients along axis 0 with mirror boundaries (Unser's recursive filter)."""
    coefficients = samples.astype(np.float64) * 6.0  # gain (1 − z)(1 − 1/z)
    n = coefficients.shape[0]
    if n == 1:
        return coefficients / 6.0
    z = CUBIC_POLE
    # Initial causal coefficient, exact for the mirror-symmetric extension of the samples.
    index = np.arange(n)
    weights = z**index + np.where((index > 0) & (index < n - 1), z ** (2 * (n - 1) - index), 0.0)
    start = np.tensordot(weights, coefficients, axes=(0, 0)) / (1 - z ** (2 * (n - 1)))
    coefficients[0] = start
    for i in range(1, n):
        coefficients[i] += z * coefficients[i - 1]
    coefficients[-1] = (z / (z * z - 1)) * (z * coefficients[-2] + coefficients[-1])
    for i in range(n - 2, -1, -1):
        coefficients[i] = z * (coefficients[i + 1] - coefficients[i])
    return coefficients


def upsample_cubic(volume: np.ndarray, scale: int, axis: int) -> np.ndarray:
    """Cubic B-spline interpolation along ``axis`` to ``(n − 1)·scale + 1`` slices (float32, mirror boundaries)."""
    data = np.moveaxis(np.asarray(volume), axis, 0)
    n = data.shape[0]
    coefficients = cubic_bspline_coefficients(data)
    positions = np.arange(upsampled_length(n, scale)) / scale
    base = np.floor(positions).astype(int)
    t = positions - base
    weights = np.stack([(1 - t) ** 3 / 6, 2 / 3 - t**2 + t**3 / 2, 2 / 3 - (1 - t) ** 2 + (1 - t) ** 3 / 2, t**3 / 6])
    result = np.zeros((len(positions),) + data.shape[1:], dtype=np.float64)
    for offset, weight in zip(range(-1, 3), weights):
        index = np.abs(base + offset)  # mirror at 0
        index = np.where(index > n - 1, 2 * (n - 1) - index, index)  # mirror at n − 1
        result += weight[:, None, None] * coefficients[np.clip(index, 0, n - 1)]
    return np.moveaxis(result.astype(np.float32), 0, axis)


def mirror_index(index: np.ndarray, length: int) -> np.ndarray:
    """Whole-sample mirror extension (``…, 2, 1, 0, 1, 2, …, n − 2, n − 1, n − 2, …``) of any integer index."""
    if length == 1:
        return np.zeros_like(index)
    period = 2 * (length - 1)
    folded = np.mod(index, period)
    return np.where(folded > length - 1, period - folded, folded)


def lanczos3_weights(t: float) -> np.ndarray:
    """The six Lanczos-3 weights of samples ``−2 … 3`` for a position ``t ∈ [0, 1)`` past sample 0, normalised
    to sum 1."""
    x = np.arange(1 - LANCZOS_LOBES, LANCZOS_LOBES + 1) - t
    weights = np.where(np.abs(x) < LANCZOS_LOBES, np.sinc(x) * np.sinc(x / LANCZOS_LOBES), 0.0)
    return weights / weights.sum()


def upsample_lanczos3(volume: np.ndarray, scale: int, axis: int) -> np.ndarray:
    """Lanczos-3 (windowed sinc) interpolation along ``axis`` to ``(n − 1)·scale + 1`` slices (float32, mirror
    boundaries as the cubic B-spline). The original slices are copied, not filtered."""
    data = np.moveaxis(np.asarray(volume, dtype=np.float32), axis, 0)
    n = data.shape[0]
    result = np.empty((upsampled_length(n, scale),) + data.shape[1:], dtype=np.float32)
    result[::scale] = data
    lower = np.arange(n - 1)
    for phase in range(1, scale):
        weights = lanczos3_weights(phase / scale)
        between = np.zeros((n - 1,) + data.shape[1:], dtype=np.float64)
        for offset, weight in zip(range(1 - LANCZOS_LOBES, LANCZOS_LOBES + 1), weights):
            between += weight * data[mirror_index(lower + offset, n)]
        result[phase::scale] = between
    return np.moveaxis(result, 0, axis)
