"""Self-supervised training samples: random z-windows and in-plane patches of thick-slice volumes (spec §9.3)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..core.degradation import TRAINING_DEGRADATIONS, blur_along
from ..core.errors import InputError
from ..core.geometry import thick_axis, voxel_spacing
from ..core.intensity import hu_to_unit
from ..io.nifti import is_nifti_path, read_nifti


@dataclass
class TrainingVolume:
    """A volume in HU, z-first ``(S, H, W)`` with z the thick axis, its slice spacing and the pixel size of its
    two in-plane axes (``H``, ``W``) in mm, and its slice thickness in mm when known."""

    name: str
    data: np.ndarray
    slice_spacing: float
    in_plane: Tuple[float, float] = (1.0, 1.0)
    thickness: Optional[float] = None


def default_window(scale: int) -> int:
    """Window lengths ``l_V ≡ 1 (mod r)``: the paper's 15 slices for ×2 and 13 for ×3 and ×4 (spec A13).

    Beyond the paper's factors, the shortest window of at least 13 slices: 16 for ×5, 13 for ×6.
    """
    if scale == 2:
        return 15
    return next(length for length in range(13, 13 + scale) if (length - 1) % scale == 0)


def find_volumes(sources: Sequence[Path]) -> List[Path]:
    """NIfTI files named directly or found (sorted) in the named folders."""
    found: List[Path] = []
    for source in map(Path, sources):
        if source.is_dir():
            found.extend(sorted(p for p in source.iterdir() if p.is_file() and is_nifti_path(p)))
        elif source.is_file():
            found.append(source)
        else:
            raise InputError(f"training data not found: {source}")
    if not found:
        raise InputError("no NIfTI volumes (.nii, .nii.gz) found in the training data")
    return found


def load_volume(path: Path, pre_downsample: int = 1, thin_below_mm: float = 0.0) -> TrainingVolume:
    """Read a NIfTI volume, put its thick axis first, optionally keep only every ``pre_downsample``-th slice.

    A volume whose slice spacing is below ``thin_below_mm`` is a thin-slice scan: it is used as the thick input
    the product would get (every ``pre_downsample``-th slice), never at its own spacing.
    """
    volume = read_nifti(path)
    spacing = voxel_spacing(volume.affine)
    axis = thick_axis(spacing)
    keep = pre_downsample if spacing[axis] < thin_below_mm or thin_below_mm <= 0 else 1
    data = np.ascontiguousarray(np.moveaxis(volume.data, axis, 0)[::keep])
    in_plane = tuple(float(spacing[a]) for a in range(3) if a != axis)
    return TrainingVolume(Path(path).name, data, float(spacing[axis]) * keep, in_plane)  # type: ignore[arg-type]


def thicken_slices(stack: np.ndarray, width: int) -> np.ndarray:
    """Running mean of ``width`` consecutive slices along axis 0: ``(S, …) → (S − width + 1, …)`` (float32)."""
    cumulative = np.cumsum(stack, axis=0, dtype=np.float64)
    cumulative = np.concatenate((np.zeros_like(cumulative[:1]), cumulative), axis=0)
    return ((cumulative[width:] - cumulative[:-width]) / width).astype(np.float32)


class WindowSampler:
    """Draws batches ``(B, l_V, P, P)`` in [0, 1]: random z-windows of ``window`` slices and random ``patch``²
    crops from the central ``region``² of the slices, with random flips of both in-plane axes.

    Slice-profile augmentation (``max_profile_width`` w > 1): each window is, with a width drawn uniformly from
    1…w, the running mean of that many consecutive slices, i.e. the same anatomy reconstructed with slices that
    many times thicker at the same spacing (overlapping when the width is above 1). Thin volumes whose slices
    overlap (thickness above spacing, smooth along z) then appear in training with their ground truth, so the
    nets learn when there is nothing to add to a smooth interpolation.

    All randomness comes from ``generator``, whose state a checkpoint stores, so resuming is exact.
    """

    def __init__(
        self,
        volumes: Sequence[TrainingVolume],
        window: int,
        patch: int,
        region: int,
        generator: torch.Generator,
        flips: bool = True,
        degradation: str = "none",
        max_profile_width: int = 1,
    ) -> None:
        if degradation not in TRAINING_DEGRADATIONS:
            raise InputError(f"unknown degradation {degradation!r}: choose one of {TRAINING_DEGRADATIONS}")
        usable = [v for v in volumes if v.data.shape[0] >= window and min(v.data.shape[1:]) >= patch]
        if not usable:
            raise InputError(
                f"no training volume has {window} slices and {patch}×{patch} pixels: use a smaller --window/--patch"
            )
        self.volumes = usable
        self.window, self.patch, self.region = window, patch, max(region, patch)
        self.generator = generator
        self.flips = flips
        self.degradation = degradation
        self.max_profile_width = max(1, max_profile_width)

    def _integer(self, high: int) -> int:
        return int(torch.randint(0, high, (1,), generator=self.generator))

    def sample_one(self) -> np.ndarray:
        """One window ``(l_V, P, P)`` in HU (float32)."""
        volume = self.volumes[self._integer(len(self.volumes))].data
        slices, height, width = volume.shape
        profile = min(1 + self._integer(self.max_profile_width), slices - self.window + 1)
        extent = self.window + profile - 1
        z = self._integer(slices - extent + 1)
        corners = []
        for size in (height, width):
            region = min(self.region, size)
            low = (size - region) // 2
            corners.append(low + self._integer(region - self.patch + 1))
        y, x = corners
        crop = volume[z : z + extent, y : y + self.patch, x : x + self.patch].astype(np.float32)
        if profile > 1:
            crop = thicken_slices(crop, profile)
        if self.flips:
            if self._integer(2):
                crop = crop[:, ::-1]
            if self._integer(2):
                crop = crop[:, :, ::-1]
        if self.degradation == "blur-noise":
            crop = blur_along(blur_along(crop, 0), 1)
            noise = torch.randn(crop.shape, generator=self.generator).numpy() * 25.0
            crop = crop + noise
        return np.ascontiguousarray(crop)

    def sample(self, batch: int) -> torch.Tensor:
        """A batch ``(B, l_V, P, P)`` mapped to [0, 1]."""
        return hu_to_unit(torch.from_numpy(np.stack([self.sample_one() for _ in range(batch)])))
