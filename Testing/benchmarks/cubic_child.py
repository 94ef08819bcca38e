"""Child process of the benchmark: z-only cubic B-spline interpolation of a NIfTI file, with the same reading
and writing as ``ct-slice-synthesis synthesize``, so the two wall times compare like with like.

Usage: ``python cubic_child.py INPUT OUTPUT SCALE``
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "CTSliceSynthesis"))

from CTSliceSynthesisLib.core.geometry import upsampled_affine  # noqa: E402
from CTSliceSynthesisLib.core.interpolation import upsample_cubic  # noqa: E402
from CTSliceSynthesisLib.io.nifti import read_nifti, write_nifti  # noqa: E402


def main(input_path: str, output_path: str, scale: str) -> None:
    """Read, interpolate along the last (thick) axis in float32, round back to the input type, write."""
    volume = read_nifti(input_path)
    factor = int(scale)
    upsampled = upsample_cubic(volume.data.astype(np.float32), factor, axis=2)
    if np.issubdtype(volume.data.dtype, np.integer):
        info = np.iinfo(volume.data.dtype)
        upsampled = np.clip(np.rint(upsampled), info.min, info.max).astype(volume.data.dtype)
    write_nifti(Path(output_path), upsampled, upsampled_affine(volume.affine, 2, factor), volume.header)


if __name__ == "__main__":
    main(*sys.argv[1:4])
