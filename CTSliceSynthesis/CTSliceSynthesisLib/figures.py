"""Comparison figures people look at: reformats across the thick axis, side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np

WINDOW = (-160.0, 240.0)  # soft-tissue/brain-friendly display window in HU


def _reformat(volume: np.ndarray, axis: int) -> np.ndarray:
    """The central reformat that contains the thick axis, thick axis vertical (top = first slice)."""
    data = np.moveaxis(volume, axis, 0)
    return data[:, data.shape[1] // 2, :]


def comparison_figure(
    path: Path,
    thick: np.ndarray,
    outputs: Dict[str, np.ndarray],
    truth: np.ndarray,
    disagreement: Optional[np.ndarray],
    scale: int,
    axis: int,
    spacing: Sequence[float],
) -> None:
    """Thick input, cubic, ours, truth and the disagreement map as one PNG, each at its physical aspect."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    in_plane = [s for i, s in enumerate(spacing) if i != axis][1]
    panels = [("thick input", _reformat(thick, axis), spacing[axis] * scale / in_plane)]
    panels += [(name, _reformat(outputs[name], axis), spacing[axis] / in_plane) for name in ("cubic", "ours")]
    panels.append(("truth", _reformat(truth, axis), spacing[axis] / in_plane))
    figure, axes = plt.subplots(1, len(panels) + (disagreement is not None), figsize=(4 * (len(panels) + 1), 4.6))
    for ax, (title, image, aspect) in zip(axes, panels):
        ax.imshow(image, cmap="gray", vmin=WINDOW[0], vmax=WINDOW[1], aspect=aspect, interpolation="nearest")
        ax.set_title(title)
        ax.axis("off")
    if disagreement is not None:
        ax = axes[-1]
        shown = ax.imshow(_reformat(disagreement, axis), cmap="magma", vmin=0, aspect=spacing[axis] / in_plane)
        ax.set_title("cross-view disagreement (HU)")
        ax.axis("off")
        figure.colorbar(shown, ax=ax, fraction=0.046)
    figure.suptitle(f"×{scale} through-plane synthesis, central reformat (window {WINDOW[0]:.0f}…{WINDOW[1]:.0f} HU)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
