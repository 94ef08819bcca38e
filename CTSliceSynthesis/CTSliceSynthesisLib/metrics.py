"""Image-quality metrics on the [−1024, 3072] HU → [0, 1] scale (spec §9.5)."""

from __future__ import annotations

from typing import Optional

import numpy as np

from .intensity import hu_to_unit


def psnr(prediction_hu: np.ndarray, truth_hu: np.ndarray, mask: Optional[np.ndarray] = None) -> float:
    """``10·log10(1/MSE)`` of HU volumes mapped to [0, 1] (both clipped); over ``mask`` slices if given."""
    prediction = hu_to_unit(np.asarray(prediction_hu, dtype=np.float64))
    truth = hu_to_unit(np.asarray(truth_hu, dtype=np.float64))
    if prediction.shape != truth.shape:
        raise ValueError(f"shapes differ: {prediction.shape} vs {truth.shape}")
    error = (prediction - truth) ** 2
    mse = float(error[mask].mean() if mask is not None else error.mean())
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)
