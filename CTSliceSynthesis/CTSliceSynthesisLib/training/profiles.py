"""Slice profiles in millimetres: box averages along image lines, the range of slice geometries the networks are
trained for, and an estimate of a volume's slice thickness from its own voxels.

A CT slice of thickness T is (to first order) the mean of the anatomy over T along z: a box profile. Along an
in-plane axis, whose pixels are finer than the slice spacing, the same profile can be applied to an image line,
which is how scale-matched training pairs are made (``training.pairs``) and how the thickness is estimated here.
Lines are modelled as piecewise linear between pixel centres, so box averages of any width (also narrower than a
pixel) are exact and smooth in the box's position and width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np
import torch

# HU bounds of the structure-function statistics: pairs where both voxels are air carry no information about
# the profile, and differences are clipped so that a few metal or bone edges do not dominate.
BODY_HU = -950.0
DIFFERENCE_CLIP_HU = 1000.0
# Grid of the thickness estimate: the profile width relative to the spacing, and the anisotropy of the anatomy
# (how much smoother it is along z than in-plane, as a stretch of the distance).
ESTIMATE_RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.65, 0.8, 1.0, 1.2, 1.5, 2.0)
ESTIMATE_STRETCHES = tuple(float(v) for v in np.exp(np.linspace(math.log(0.5), math.log(4.0), 13)))
ESTIMATE_LAGS = (1, 2, 3, 4)
ESTIMATE_IMAGES = 4
ESTIMATE_CROP = 192
ESTIMATE_STEP = 3.0  # pixels between the centres of sampled boxes


def line_integrals(lines: torch.Tensor) -> torch.Tensor:
    """Running integrals of piecewise-linear lines: ``(..., W) → (..., W)``, ``I[k] = ∫₀ᵏ f`` in pixel units
    (pixel ``i`` sits at position ``i``)."""
    trapezoids = (lines[..., 1:] + lines[..., :-1]) * 0.5
    return torch.cat((torch.zeros_like(lines[..., :1]), trapezoids.cumsum(-1)), dim=-1)


def _integral_at(lines: torch.Tensor, integrals: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """``∫₀ᵘ f`` at fractional ``positions (K,)`` in ``[0, W − 1]`` for every line: ``(..., W) → (..., K)``."""
    length = lines.shape[-1]
    lower = positions.floor().clamp(0, length - 2).long()
    t = positions - lower
    f0, f1 = lines[..., lower], lines[..., lower + 1]
    return integrals[..., lower] + f0 * t + (f1 - f0) * (t * t * 0.5)


def box_average(
    lines: torch.Tensor, centres: torch.Tensor, width: float, integrals: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Means of piecewise-linear ``lines (..., W)`` over boxes of ``width`` pixels centred at ``centres (K,)``.

    Returns ``(..., K)``. Boxes must lie inside ``[0, W − 1]``; a width below 1e-3 pixel is a point sample
    (linear interpolation). ``integrals`` (from :func:`line_integrals`) can be passed when reused.
    """
    if width < 1e-3:
        lower = centres.floor().clamp(0, lines.shape[-1] - 2).long()
        t = centres - lower
        return lines[..., lower] + (lines[..., lower + 1] - lines[..., lower]) * t
    integrals = line_integrals(lines) if integrals is None else integrals
    half = width / 2.0
    upper = _integral_at(lines, integrals, centres + half)
    return (upper - _integral_at(lines, integrals, centres - half)) / width


@dataclass(frozen=True)
class ProfileRange:
    """The slice geometries training pairs are drawn from.

    ``spacing_mm``: the input's slice spacing Δz, drawn log-uniformly from this range (equal ends: fixed).
    ``thickness_ratio``: the slice thickness T relative to Δz, drawn log-uniformly (equal ends: fixed). The
    synthesized slices are always thin: a box as wide as their spacing Δz/r.
    """

    spacing_mm: Tuple[float, float]
    thickness_ratio: Tuple[float, float]

    def __post_init__(self) -> None:
        for name, (low, high) in (("spacing_mm", self.spacing_mm), ("thickness_ratio", self.thickness_ratio)):
            if not 0 < low <= high or not math.isfinite(high):
                raise ValueError(f"{name} must be a positive range (low ≤ high), got {(low, high)}")

    def draw(
        self, generator: torch.Generator, spacing: Optional[float] = None, thickness: Optional[float] = None
    ) -> Tuple[float, float]:
        """``(Δz, T)`` in mm; a ``spacing`` or ``thickness`` given is kept (a random draw is made either way, so
        the generator advances alike)."""
        drawn = _log_uniform(self.spacing_mm, generator)
        spacing = drawn if spacing is None else spacing
        ratio = _log_uniform(self.thickness_ratio, generator)
        return spacing, spacing * ratio if thickness is None else thickness


def _log_uniform(bounds: Tuple[float, float], generator: torch.Generator) -> float:
    low, high = bounds
    if high <= low:
        return float(low)
    u = float(torch.rand((), generator=generator))
    return float(math.exp(math.log(low) + u * (math.log(high) - math.log(low))))


# Slice thickness relative to spacing that the networks are trained for when the thickness is not known: from
# thin slices with gaps between them (every r-th slice of a thin-slice scan, T ≈ Δz/r) to thick, overlapping
# ones (T = 1.4 Δz).
UNKNOWN_THICKNESS_RATIO = (0.8, 1.4)  # low end: this times 1/r
# Slice spacings of the bundled training pairs (mm): what thick-slice CT comes with, 1 to 6 mm.
TRAINING_SPACING_MM = (1.0, 6.0)


def blind_thickness_ratio(scale: int) -> Tuple[float, float]:
    """The T/Δz range used when the thickness is unknown, for factor ``scale``."""
    return (UNKNOWN_THICKNESS_RATIO[0] / scale, UNKNOWN_THICKNESS_RATIO[1])


@dataclass(frozen=True)
class ThicknessEstimate:
    """A slice thickness estimated from a volume (mm), the fitted anisotropy and the fit's residual."""

    thickness_mm: float
    ratio: float
    stretch: float
    residual: float


def estimate_thickness(
    volume_hu: np.ndarray, spacing_mm: float, in_plane_mm: Sequence[float]
) -> Optional[ThicknessEstimate]:
    """Estimate the slice thickness of a z-first volume ``(S, H, W)`` in HU from its own voxels.

    Model: the anatomy along z looks like the anatomy in-plane stretched by an unknown factor ``a`` (it is
    usually smoother along the body axis), seen through a box profile of width T and sampled every Δz. The
    structure function ``D(k) = mean (v[z + k] − v[z])²`` of the volume at lags k = 1…4 slices is compared with
    that of in-plane lines averaged over boxes of ``T/a`` at lags ``kΔz/a``; the pair ``(a, T/Δz)`` on a grid
    whose curve fits best (least squares on ``log D``, up to a constant) gives T. Returns ``None`` for volumes
    with fewer than 6 slices. About a second on a 512² volume (a central crop of a few slices is used).
    """
    slices = volume_hu.shape[0]
    if slices < max(ESTIMATE_LAGS) + 2:
        return None
    crop = _central_crop(np.asarray(volume_hu, dtype=np.float32))
    through = np.log([_structure(crop[k:], crop[:-k]) + 1e-6 for k in ESTIMATE_LAGS])
    images = torch.from_numpy(crop[np.linspace(0, slices - 1, min(slices, ESTIMATE_IMAGES)).astype(int)])
    lines = [(images, float(in_plane_mm[1])), (images.transpose(1, 2).contiguous(), float(in_plane_mm[0]))]
    lines = [(line, pixel, line_integrals(line)) for line, pixel in lines]
    ratios = np.asarray(ESTIMATE_RATIOS)
    best: Optional[ThicknessEstimate] = None
    for stretch in ESTIMATE_STRETCHES:
        curves = [_in_plane_structure(lines, ratios * spacing_mm / stretch, k * spacing_mm / stretch)
                  for k in ESTIMATE_LAGS]
        if any(curve is None for curve in curves):
            continue
        difference = through[:, None] - np.log(np.stack(curves) + 1e-6)  # (lags, ratios)
        residuals = np.mean((difference - difference.mean(axis=0)) ** 2, axis=0)
        index = int(np.argmin(residuals))
        if best is None or residuals[index] < best.residual:
            ratio = float(ratios[index])
            best = ThicknessEstimate(ratio * spacing_mm, ratio, stretch, float(residuals[index]))
    return best


def _central_crop(volume: np.ndarray) -> np.ndarray:
    _, height, width = volume.shape
    top, left = max(0, (height - ESTIMATE_CROP) // 2), max(0, (width - ESTIMATE_CROP) // 2)
    return volume[:, top : top + ESTIMATE_CROP, left : left + ESTIMATE_CROP]


def _structure(first, second) -> float:
    """Mean squared difference of voxel pairs where one of the two is not air (differences clipped)."""
    first, second = np.asarray(first), np.asarray(second)
    body = np.maximum(first, second) > BODY_HU
    if not body.any():
        return 0.0
    difference = np.clip(first[body] - second[body], -DIFFERENCE_CLIP_HU, DIFFERENCE_CLIP_HU)
    return float(np.mean(difference.astype(np.float64) ** 2))


def _in_plane_structure(lines, widths_mm: np.ndarray, lag_mm: float) -> Optional[np.ndarray]:
    """The structure function of in-plane lines averaged over boxes of each of ``widths_mm`` at lag ``lag_mm``:
    one value per width (``None`` when the lines are too short for the widest box)."""
    values = []
    for line, pixel, integrals in lines:
        widths, lag = np.maximum(widths_mm / pixel, 1e-3), lag_mm / pixel
        length = line.shape[-1]
        first, last = widths.max() / 2 + 1, length - 2 - widths.max() / 2 - lag
        if last - first < 8 * ESTIMATE_STEP:  # fewer than 8 boxes fit on the lines
            return None
        centres = torch.arange(first, last, ESTIMATE_STEP)
        half = torch.from_numpy(widths / 2).float()[:, None]  # (R, 1)
        boxes = []
        for shift in (0.0, lag):
            lower = _integral_at(line, integrals, (centres + shift - half).flatten())
            upper = _integral_at(line, integrals, (centres + shift + half).flatten())
            boxes.append(((upper - lower) / (2 * half.flatten().repeat_interleave(len(centres)))).unflatten(-1, (len(widths), len(centres))))
        values.append([_structure(boxes[0][..., r, :].numpy(), boxes[1][..., r, :].numpy()) for r in range(len(widths))])
    return np.mean(np.asarray(values), axis=0)
