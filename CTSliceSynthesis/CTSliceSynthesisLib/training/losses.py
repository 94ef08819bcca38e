"""Loss terms (spec §5–7): pixel, wavelet detail, truncated cross-view consistency.

The memory-bank losses live with the memory (:meth:`nets.memory.MemoryBank.losses`).
"""

from __future__ import annotations

import math
import warnings
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


def pixel_loss(prediction: torch.Tensor, target: torch.Tensor, kind: str = "mse") -> torch.Tensor:
    """Mean squared (``"mse"``, the paper's) or absolute (``"l1"``, the authors' code) error."""
    if kind == "mse":
        return F.mse_loss(prediction, target)
    if kind == "l1":
        return F.l1_loss(prediction, target)
    raise ValueError(f"unknown pixel loss {kind!r}")


class WaveletDetailLoss(nn.Module):
    """``Σ_t mean((WT_t(pred) − WT_t(target))²)`` over the detail bands of a 3-level db3 DWT (zero padding).

    Inputs are stacks of axial planes ``(B, S, H, W)``; slices act as channels, so the 2-D transform runs over
    the axial planes (spec A4/A5). The low-pass band is not used. Always computed in float32: the DWT's backward
    fails under CPU bf16 autocast.
    """

    def __init__(self, levels: int = 3, wavelet: str = "db3") -> None:
        super().__init__()
        with warnings.catch_warnings():  # pytorch_wavelets 1.3 imports the deprecated pkg_resources
            warnings.simplefilter("ignore")
            from pytorch_wavelets import DWTForward

        self.transform = DWTForward(J=levels, wave=wavelet, mode="zero")

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        device_type = prediction.device.type
        with torch.autocast(device_type=device_type, enabled=False):
            both = torch.cat((prediction.float(), target.float()), dim=0)
            _, details = self.transform(both)
            total = prediction.new_zeros((), dtype=torch.float32)
            half = prediction.shape[0]
            for band in details:
                total = total + F.mse_loss(band[:half], band[half:])
        return total


def truncated_consistency(
    first: torch.Tensor, second: torch.Tensor, fraction: Optional[float] = None, count: Optional[int] = None
) -> torch.Tensor:
    """Eq. 11–12: the mean of the smallest squared differences, selected jointly over the whole batch.

    Keep ``⌈fraction·n⌉`` of the ``n`` entries (the paper's γ) or a fixed ``count`` (the authors' code); give
    exactly one of the two. Gradients reach only the kept entries.
    """
    if (fraction is None) == (count is None):
        raise ValueError("give exactly one of fraction and count")
    squared = (first.float() - second.float()).square().flatten()
    if fraction is not None:
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        keep = math.ceil(fraction * squared.numel() - 1e-9)  # 0.07 · 100 must keep 7, not 8
    else:
        if int(count) < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        keep = min(int(count), squared.numel())
    if keep >= squared.numel():
        return squared.mean()
    return torch.topk(squared, keep, largest=False, sorted=False).values.mean()
