"""Moving between volumes and the 2-D images each interpolator sees.

Volumes are batched and z-first: ``(B, S, H, W)`` with ``S`` slices along the thick axis and ``H, W`` the
array's in-plane axes 0 and 1 (spec notation). An axial image is ``V[:, z]``; a coronal image fixes an ``H``
index (``W × S``); a sagittal image fixes a ``W`` index (``H × S``).
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from .cubic_base import cubic_between
from .pint import PixelInterpolator
from .sint import SliceInterpolator


def new_positions(length: int, scale: int, device: Optional[torch.device] = None) -> torch.Tensor:
    """Indices ``i`` of an up-sampled stack of ``length`` slices with ``i mod scale ≠ 0`` (synthesized slices)."""
    index = torch.arange(length, device=device)
    return index[index % scale != 0]


def insert_slices(volume: torch.Tensor, new: torch.Tensor, scale: int) -> torch.Tensor:
    """Interleave ``scale − 1`` new slices after every slice but the last.

    ``(B, S, H, W), (B, (S − 1)(scale − 1), H, W) → (B, (S − 1)·scale + 1, H, W)``; differentiable.
    """
    b, s, h, w = volume.shape
    groups = torch.cat((volume[:, :-1, None], new.reshape(b, s - 1, scale - 1, h, w)), dim=2)
    return torch.cat((groups.reshape(b, (s - 1) * scale, h, w), volume[:, -1:]), dim=1)


def _pad_to_multiple(images: torch.Tensor, multiple: int) -> Tuple[torch.Tensor, int, int]:
    """Pad the last two axes at their far ends up to a multiple (reflection where possible), and to at least two
    multiples: after space-to-depth SInt's reflection-padded 3×3 convolutions need two pixels per axis."""
    h, w = images.shape[-2:]
    pad_h, pad_w = max(-h % multiple, 2 * multiple - h), max(-w % multiple, 2 * multiple - w)
    if pad_h == 0 and pad_w == 0:
        return images, h, w
    mode = "reflect" if pad_h < h and pad_w < w else "replicate"
    return F.pad(images, (0, pad_w, 0, pad_h), mode=mode), h, w


def interpolate_axial(
    sint: SliceInterpolator, volume: torch.Tensor, first_pair: int = 0, pair_count: Optional[int] = None
) -> Tuple[torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor]]:
    """Run SInt on consecutive slice pairs of ``volume (B, S, H, W)``: all of them, or ``pair_count`` pairs
    from ``first_pair`` on (the other slices then only serve as context for a cubic base).

    Returns the new slices ``(B, pairs·(r − 1), H, W)`` in z order and the call's memory losses (``None`` in
    eval mode). In-plane sizes that are not a multiple of SInt's block are padded and cropped back.
    """
    b, s, h, w = volume.shape
    pairs = s - 1 - first_pair if pair_count is None else pair_count
    padded, _, _ = _pad_to_multiple(volume, sint.block)
    size = padded.shape[-2:]
    first = padded[:, first_pair : first_pair + pairs].reshape(b * pairs, 1, *size)
    second = padded[:, first_pair + 1 : first_pair + pairs + 1].reshape(b * pairs, 1, *size)
    base = None
    if sint.residual and sint.base_kind == "cubic":
        per_pair = sint.fractions.numel()
        between = cubic_between(padded, per_pair + 1, dim=1, first_gap=first_pair, gaps=pairs)
        base = between.reshape(b * pairs, per_pair, *size)
    out = sint(first, second, base)
    slices = out.slices[..., :h, :w]
    return slices.reshape(b, pairs * slices.shape[1], h, w), out.compactness, out.separateness


def coronal_images(volume: torch.Tensor) -> torch.Tensor:
    """``(B, S, H, W) → (B·H, 1, W, S)``: one image per index of axis 0."""
    b, s, h, w = volume.shape
    return volume.permute(0, 2, 3, 1).reshape(b * h, 1, w, s)


def from_coronal(images: torch.Tensor, batch: int) -> torch.Tensor:
    """Inverse of :func:`coronal_images` for any z length: ``(B·H, 1, W, S') → (B, S', H, W)``."""
    n, _, w, s = images.shape
    return images.reshape(batch, n // batch, w, s).permute(0, 3, 1, 2)


def sagittal_images(volume: torch.Tensor) -> torch.Tensor:
    """``(B, S, H, W) → (B·W, 1, H, S)``: one image per index of axis 1."""
    b, s, h, w = volume.shape
    return volume.permute(0, 3, 2, 1).reshape(b * w, 1, h, s)


def from_sagittal(images: torch.Tensor, batch: int) -> torch.Tensor:
    """Inverse of :func:`sagittal_images` for any z length: ``(B·W, 1, H, S') → (B, S', H, W)``."""
    n, _, h, s = images.shape
    return images.reshape(batch, n // batch, h, s).permute(0, 3, 2, 1)


def interpolate_coronal(pint: PixelInterpolator, volume: torch.Tensor) -> torch.Tensor:
    """PInt on every coronal image: ``(B, S, H, W) → (B, (S − 1)r + 1, H, W)``."""
    return from_coronal(pint(coronal_images(volume)), volume.shape[0])


def interpolate_sagittal(pint: PixelInterpolator, volume: torch.Tensor) -> torch.Tensor:
    """PInt on every sagittal image: ``(B, S, H, W) → (B, (S − 1)r + 1, H, W)``."""
    return from_sagittal(pint(sagittal_images(volume)), volume.shape[0])
