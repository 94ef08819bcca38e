"""Cubic B-spline interpolation along one axis as a matrix product: the base the residual nets correct.

The interpolating cubic B-spline (mirror boundaries, the classical baseline of ``core.interpolation.upsample_cubic``) is
linear in the samples, so the values at the ``r − 1`` new positions after each sample are ``R x`` for a fixed
matrix ``R`` per length and factor. The matrix is built once per ``(length, r)`` from the baseline itself.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Optional

import numpy as np
import torch

from ..core.interpolation import upsample_cubic


@lru_cache(maxsize=64)
def _new_sample_matrix(length: int, scale: int) -> torch.Tensor:
    """``((length − 1)·(r − 1), length)`` float32: rows give the new samples in order (gap-major)."""
    identity = np.eye(length, dtype=np.float64)[:, :, None]
    upsampled = upsample_cubic(identity, scale, axis=0)[:, :, 0]  # (L_out, L): out = U x
    keep = np.arange(upsampled.shape[0]) % scale != 0
    return torch.from_numpy(np.ascontiguousarray(upsampled[keep], dtype=np.float32))


def cubic_between(
    samples: torch.Tensor, scale: int, dim: int, first_gap: int = 0, gaps: Optional[int] = None
) -> torch.Tensor:
    """Cubic B-spline values at the ``r − 1`` fractions ``u/r`` between neighbouring samples along ``dim``.

    ``samples (..., L, ...)`` with ``L ≥ 2`` along ``dim`` → ``(..., G·(r − 1), ...)``, new samples in order of
    position for the ``G = gaps`` gaps from ``first_gap`` on (default: all ``L − 1``), float32 (also under
    autocast). Matches :func:`core.interpolation.upsample_cubic` (mirror boundaries at both ends of ``dim``); the spline
    always spans all ``L`` samples.
    """
    length = samples.shape[dim]
    if length < 2:
        raise ValueError(f"cubic interpolation needs at least 2 samples, got {length}")
    gaps = length - 1 - first_gap if gaps is None else gaps
    rows = slice(first_gap * (scale - 1), (first_gap + gaps) * (scale - 1))
    matrix = _new_sample_matrix(length, scale)[rows].to(samples.device)
    with torch.autocast(device_type=samples.device.type, enabled=False):  # the base stays float32 under autocast
        moved = samples.movedim(dim, -1).float()
        return (moved @ matrix.T).movedim(-1, dim)
