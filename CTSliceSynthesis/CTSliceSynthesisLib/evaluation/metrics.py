"""Image-quality metrics (spec §9.5).

The code protocol maps HU to [0, 1] on the [−1024, 3072] HU range (prediction and truth both clipped) and scores
the whole output volume: :func:`psnr` and the pytorch-ssim SSIM of :func:`ssim_views`. The SAINT protocol
(:func:`saint_psnr`) uses its own scale and scores only synthesized slices in a central in-plane region.
"""

from __future__ import annotations

from typing import Dict, Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..core.intensity import hu_to_unit

# pytorch-ssim's settings: an 11×11 Gaussian window with σ = 1.5 and the constants for a data range of 1.
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1 = 0.01**2
SSIM_C2 = 0.03**2
# Pixels per batch of 2-D images (at least one image): the float64 working set, about 20 × 8 bytes per pixel,
# then stays near the CPU caches, which on 2 cores made SSIM 3–4× faster than batches of 2²¹ pixels.
SSIM_PIXELS_PER_CHUNK = 1 << 18

# SAINT: clip(HU + 1024, 0, 4000)/4000, synthesized slices only, in-plane rows and columns 128:384.
SAINT_HU_OFFSET = 1024.0
SAINT_HU_RANGE = 4000.0
SAINT_CROP = (128, 384)


def psnr(prediction_hu: np.ndarray, truth_hu: np.ndarray, mask: Optional[np.ndarray] = None) -> float:
    """``10·log10(1/MSE)`` of HU volumes mapped to [0, 1] (both clipped); over ``mask`` slices if given."""
    prediction = hu_to_unit(np.asarray(prediction_hu, dtype=np.float64))
    truth = hu_to_unit(np.asarray(truth_hu, dtype=np.float64))
    if prediction.shape != truth.shape:
        raise ValueError(f"shapes differ: {prediction.shape} vs {truth.shape}")
    error = (prediction - truth) ** 2
    return _psnr_of_mse(float(error[mask].mean() if mask is not None else error.mean()))


def _psnr_of_mse(mse: float) -> float:
    """PSNR for a data range of 1."""
    return float("inf") if mse == 0 else 10.0 * float(np.log10(1.0 / mse))


def synthesized_indices(length: int, scale: int) -> np.ndarray:
    """Indices ``i`` of an up-sampled stack of ``length`` slices with ``i mod scale ≠ 0``."""
    index = np.arange(length)
    return index[index % scale != 0]


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """pytorch-ssim's 1-D window: ``exp(−(x − size//2)²/(2σ²))`` normalised to sum 1 (float64)."""
    x = np.arange(size, dtype=np.float64) - size // 2
    taps = np.exp(-(x**2) / (2.0 * sigma**2))
    return taps / taps.sum()


def _gaussian_filter(images: torch.Tensor) -> torch.Tensor:
    """The 2-D window (outer product of :func:`gaussian_window`) over ``(N, H, W)`` with zero padding, output
    the same size: two 1-D passes of shifted, weighted sums (exact with zero padding, and on CPUs several times
    faster in float64 than a convolution)."""
    taps = gaussian_window().tolist()
    half = SSIM_WINDOW // 2
    for dim in (1, 2):
        length = images.shape[dim]
        padding = (0, 0, half, half) if dim == 1 else (half, half)
        padded = F.pad(images, padding)
        images = torch.zeros_like(images)
        for offset, weight in enumerate(taps):
            images.add_(padded.narrow(dim, offset, length), alpha=weight)
    return images


def _ssim_per_image(prediction: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Mean of the SSIM map of each image pair of two ``(N, H, W)`` float64 stacks in [0, 1] → ``(N,)``."""
    count = prediction.shape[0]
    moments = _gaussian_filter(
        torch.cat((prediction, truth, prediction * prediction, truth * truth, prediction * truth))
    )
    mu_p, mu_t, pp, tt, pt = moments.split(count)
    var_p, var_t, cov = pp - mu_p * mu_p, tt - mu_t * mu_t, pt - mu_p * mu_t
    numerator = (2 * mu_p * mu_t + SSIM_C1) * (2 * cov + SSIM_C2)
    denominator = (mu_p * mu_p + mu_t * mu_t + SSIM_C1) * (var_p + var_t + SSIM_C2)
    return (numerator / denominator).mean(dim=(1, 2))


def ssim_2d(prediction: np.ndarray, truth: np.ndarray) -> float:
    """pytorch-ssim SSIM of two 2-D images already on a data range of 1 (no clipping), in float64."""
    if prediction.shape != truth.shape or prediction.ndim != 2:
        raise ValueError(f"expected two 2-D images of the same shape, got {prediction.shape} and {truth.shape}")
    pair = [torch.from_numpy(np.asarray(image, dtype=np.float64))[None] for image in (prediction, truth)]
    return float(_ssim_per_image(*pair)[0])


def mean_ssim(
    prediction_hu: np.ndarray, truth_hu: np.ndarray, image_axis: int, device: Optional[torch.device] = None
) -> float:
    """Mean over the index of ``image_axis`` of the SSIM of the 2-D images that fix it, HU mapped to [0, 1]
    (both clipped). Images are processed in batches of about :data:`SSIM_PIXELS_PER_CHUNK` pixels."""
    if prediction_hu.shape != truth_hu.shape or prediction_hu.ndim != 3:
        raise ValueError(f"expected two 3-D volumes of the same shape, got {prediction_hu.shape} and {truth_hu.shape}")
    prediction, truth = np.moveaxis(prediction_hu, image_axis, 0), np.moveaxis(truth_hu, image_axis, 0)
    per_chunk = max(1, SSIM_PIXELS_PER_CHUNK // (prediction.shape[1] * prediction.shape[2]))
    total = 0.0
    for start in range(0, prediction.shape[0], per_chunk):
        chunk = slice(start, start + per_chunk)
        total += float(_ssim_per_image(_unit(prediction[chunk], device), _unit(truth[chunk], device)).sum())
    return total / prediction.shape[0]


def _unit(hu: np.ndarray, device: Optional[torch.device]) -> torch.Tensor:
    """A contiguous float64 tensor on ``device`` of HU mapped to [0, 1]."""
    return hu_to_unit(torch.from_numpy(np.ascontiguousarray(hu, dtype=np.float64)).to(device))


def ssim_views(
    prediction_hu: np.ndarray, truth_hu: np.ndarray, axis: int, device: Optional[torch.device] = None
) -> Dict[str, float]:
    """SSIM_a, SSIM_c, SSIM_s and their mean (spec §9.5) for volumes whose thick axis is ``axis``.

    SSIM_a averages the axial images (one per index along ``axis``); SSIM_c the images that fix the first other
    voxel axis and SSIM_s those that fix the second, as the spec's arrays and the engine's PInt views name them
    (which of them is anatomically coronal depends on the file's orientation).
    """
    first, second = [a for a in range(3) if a != axis % 3]
    scores = {
        "ssim_a": mean_ssim(prediction_hu, truth_hu, axis, device),
        "ssim_c": mean_ssim(prediction_hu, truth_hu, first, device),
        "ssim_s": mean_ssim(prediction_hu, truth_hu, second, device),
    }
    scores["ssim_mean"] = float(np.mean(list(scores.values())))
    return scores


def saint_unit(hu: np.ndarray) -> np.ndarray:
    """SAINT's intensity scale: ``clip(HU + 1024, 0, 4000)/4000`` (float64)."""
    return np.clip(np.asarray(hu, dtype=np.float64) + SAINT_HU_OFFSET, 0.0, SAINT_HU_RANGE) / SAINT_HU_RANGE


def saint_psnr(prediction_hu: np.ndarray, truth_hu: np.ndarray, scale: int, axis: int) -> float:
    """PSNR by SAINT's protocol: synthesized slices only (index along ``axis`` not a multiple of ``scale``), in
    SAINT's scale, in-plane restricted to ``128:384`` along each in-plane axis of at least 384 voxels (the whole
    axis otherwise), data range 1 (what skimage uses for non-negative float images)."""
    if prediction_hu.shape != truth_hu.shape or prediction_hu.ndim != 3:
        raise ValueError(f"expected two 3-D volumes of the same shape, got {prediction_hu.shape} and {truth_hu.shape}")
    new = synthesized_indices(prediction_hu.shape[axis], scale)
    region = tuple(
        new if a == axis % 3 else slice(*SAINT_CROP) if size >= SAINT_CROP[1] else slice(None)
        for a, size in enumerate(prediction_hu.shape)
    )
    error = (saint_unit(prediction_hu[region]) - saint_unit(truth_hu[region])) ** 2
    return _psnr_of_mse(float(error.mean()))
