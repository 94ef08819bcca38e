"""A synthetic thick-slice CT for timing: body, lungs, spine and ribs in HU, with noise, written as NIfTI.

Synthesis time does not depend on the content, so a phantom of the right size stands in for real scans of
512 × 512 × N (which are not redistributable).
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np


def phantom_volume(slices: int, size: int = 512, seed: int = 0) -> np.ndarray:
    """``(size, size, slices)`` int16 HU: air outside an elliptic body (40 HU), two lungs (−850 HU), a spine and
    a rib ring (700 HU) that drift along z, plus Gaussian noise (σ 15 HU)."""
    rng = np.random.default_rng(seed)
    y, x = np.meshgrid(np.linspace(-1, 1, size), np.linspace(-1, 1, size), indexing="ij")
    volume = np.empty((size, size, slices), dtype=np.int16)
    for z in range(slices):
        phase = 2 * np.pi * z / max(slices, 1)
        image = np.full((size, size), -1000.0)
        image[(x / 0.85) ** 2 + (y / 0.65) ** 2 < 1] = 40.0
        for side in (-1, 1):
            lung = ((x - side * 0.38) / (0.28 + 0.03 * np.sin(phase))) ** 2 + ((y + 0.05) / 0.45) ** 2 < 1
            image[lung] = -850.0
        image[(x**2 + (y - 0.45) ** 2) < 0.01 + 0.004 * np.cos(phase)] = 700.0
        ring = np.abs(np.sqrt((x / 0.8) ** 2 + (y / 0.6) ** 2) - 0.93) < 0.02
        image[ring & (np.sin(12 * np.arctan2(y, x) + phase) > 0.3)] = 700.0
        volume[:, :, z] = np.round(image + rng.normal(0, 15, image.shape)).astype(np.int16)
    return volume


def write_phantom(path: Path, slices: int, spacing_mm: float = 5.0, size: int = 512) -> Path:
    """Write :func:`phantom_volume` with 0.7 mm pixels and ``spacing_mm`` between slices; returns ``path``."""
    affine = np.diag([0.7, 0.7, spacing_mm, 1.0])
    image = nib.Nifti1Image(phantom_volume(slices, size), affine)
    image.header.set_xyzt_units("mm")
    nib.save(image, str(path))
    return path
