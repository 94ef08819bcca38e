"""Figures people look at, as PNG files, at physical aspect; matplotlib is imported only to draw one.

- :func:`save_evaluation_figure` (``evaluate``): central reformat crops across the thick axis of truth, cubic and
  ours, their error maps and the cross-view disagreement, one PNG per volume and scale (crops kept by
  :class:`ReformatCrops`);
- :func:`comparison_figure` (``demo``): thick input, cubic, ours, truth and the disagreement side by side.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

WINDOW_LEVEL, WINDOW_WIDTH = -300.0, 1500.0  # HU: wide enough for lung, soft tissue and bone together
COMPARISON_WINDOW = (-160.0, 240.0)  # the demo's soft-tissue/brain-friendly display window in HU
CROP_PIXELS = 128
IMAGES = ("truth", "cubic", "ours")
ERRORS = ("cubic", "ours")
DISAGREEMENT = "disagreement"
ERROR_PERCENTILE = 99.5  # colour scale of error and disagreement maps: this percentile of the shown values


class ReformatCrops:
    """An output sink for :func:`scoring.evaluate_volume` that keeps, of the truth, cubic, ours and the
    disagreement map, the central crops of the two reformats that contain the thick axis.

    A crop is ``CROP_PIXELS`` wide in-plane and covers the same physical length along the thick axis (all of it
    if shorter); it is stored thick axis first, as float32.
    """

    def __init__(self, axis: int, spacing: Sequence[float], crop: int = CROP_PIXELS) -> None:
        self.axis = axis % 3
        self.spacing = [float(s) for s in spacing]
        self.crop = crop
        self.fixed_axes = tuple(a for a in range(3) if a != self.axis)
        self.crops: Dict[int, Dict[str, np.ndarray]] = {fixed: {} for fixed in self.fixed_axes}

    def __call__(self, name: str, volume: np.ndarray) -> None:
        if name not in IMAGES + (DISAGREEMENT,):
            return
        for fixed in self.fixed_axes:
            self.crops[fixed][name] = self._crop(volume, fixed)

    def aspect(self, fixed: int) -> float:
        """Height/width of one pixel of the reformat fixing ``fixed``: thick spacing over in-plane spacing."""
        return self.spacing[self.axis] / self.spacing[self._shown_axis(fixed)]

    def _shown_axis(self, fixed: int) -> int:
        return next(a for a in self.fixed_axes if a != fixed)

    def _crop(self, volume: np.ndarray, fixed: int) -> np.ndarray:
        shown = self._shown_axis(fixed)
        image = np.take(volume, volume.shape[fixed] // 2, axis=fixed)  # 2-D, remaining axes in order
        image = image if self.axis < shown else image.T  # thick axis first
        slices = int(round(self.crop / self.aspect(fixed)))
        rows, columns = (_central(image.shape[0], slices), _central(image.shape[1], self.crop))
        return np.array(image[rows, columns], dtype=np.float32)


def _central(length: int, wanted: int) -> slice:
    """The central ``wanted`` indices of ``length`` (all of them if fewer)."""
    start = max(0, (length - wanted) // 2)
    return slice(start, start + min(length, wanted))


def save_evaluation_figure(
    path: Path,
    crops: ReformatCrops,
    scores: Dict[str, Dict[str, float]],
    title: str,
    plane_names: Dict[int, str],
) -> None:
    """One row per reformat (named by ``plane_names[fixed axis]``): truth, cubic and ours in the CT window, the
    absolute errors of cubic and ours on one shared HU scale, and the disagreement map if it was kept. Titles
    carry each method's PSNR (all slices and synthesized ones)."""
    plt = _pyplot()
    rows = crops.fixed_axes
    kept = crops.crops[rows[0]]
    images = [name for name in IMAGES if name in kept]
    errors = [name for name in ERRORS if name in kept and "truth" in kept]
    columns = len(images) + len(errors) + (DISAGREEMENT in kept)
    error_top = _top([np.abs(crops.crops[r][n] - crops.crops[r]["truth"]) for r in rows for n in errors])
    figure, axes = plt.subplots(len(rows), columns, figsize=(3.1 * columns, 3.4 * len(rows)), squeeze=False)
    window = (WINDOW_LEVEL - WINDOW_WIDTH / 2, WINDOW_LEVEL + WINDOW_WIDTH / 2)
    for row, fixed in enumerate(rows):
        panels = axes[row]
        crop, aspect = crops.crops[fixed], crops.aspect(fixed)
        for ax, name in zip(panels, images):
            _show(ax, crop[name], "gray", window, aspect, _method_title(name, scores))
        for ax, name in zip(panels[len(images) :], errors):
            shown = _show(ax, np.abs(crop[name] - crop["truth"]), "inferno", (0.0, error_top), aspect, f"|{name} − truth|")
        if errors:  # one colour bar for the error maps: they share it
            _colour_bar(figure, panels[len(images) + len(errors) - 1], shown, "HU")
        if DISAGREEMENT in crop:
            top = _top([crops.crops[r][DISAGREEMENT] for r in rows])
            shown = _show(panels[-1], crop[DISAGREEMENT], "magma", (0.0, top), aspect, "cross-view disagreement")
            _colour_bar(figure, panels[-1], shown, "HU (std of 3 views)")
        panels[0].set_ylabel(f"{plane_names[fixed]} (axis {fixed} fixed)\nslice index ↑")
    figure.suptitle(f"{title} — central {crops.crop}-px crops, window W {WINDOW_WIDTH:.0f} / L {WINDOW_LEVEL:.0f} HU")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _colour_bar(figure, ax, shown, label: str) -> None:
    """A colour bar just right of ``ax`` that takes no space from it (panels keep equal sizes)."""
    figure.colorbar(shown, cax=ax.inset_axes([1.04, 0.0, 0.06, 1.0]), label=label)


def _top(maps: Sequence[np.ndarray]) -> float:
    """Upper end of a colour scale shared by ``maps``: a high percentile, at least 1 HU."""
    values = np.concatenate([m.ravel() for m in maps]) if maps else np.zeros(1)
    return max(1.0, float(np.percentile(values, ERROR_PERCENTILE)))


def _method_title(name: str, scores: Dict[str, Dict[str, float]]) -> str:
    if name not in scores:
        return name
    return f"{name}\nPSNR {scores[name]['psnr_all']:.2f} dB (synth. {scores[name]['psnr_synthesized']:.2f})"


def _show(ax, image: np.ndarray, cmap: str, limits: Tuple[float, float], aspect: float, title: str):
    """Draw ``image`` with the thick axis vertical (first slice at the bottom) at its physical aspect."""
    shown = ax.imshow(image, cmap=cmap, vmin=limits[0], vmax=limits[1], aspect=aspect, origin="lower",
                      interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    return shown


def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


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
    plt = _pyplot()
    low, high = COMPARISON_WINDOW
    in_plane = [s for i, s in enumerate(spacing) if i != axis][1]
    panels = [("thick input", _reformat(thick, axis), spacing[axis] * scale / in_plane)]
    panels += [(name, _reformat(outputs[name], axis), spacing[axis] / in_plane) for name in ("cubic", "ours")]
    panels.append(("truth", _reformat(truth, axis), spacing[axis] / in_plane))
    figure, axes = plt.subplots(1, len(panels) + (disagreement is not None), figsize=(4 * (len(panels) + 1), 4.6))
    for ax, (title, image, aspect) in zip(axes, panels):
        ax.imshow(image, cmap="gray", vmin=low, vmax=high, aspect=aspect, interpolation="nearest")
        ax.set_title(title)
        ax.axis("off")
    if disagreement is not None:
        ax = axes[-1]
        shown = ax.imshow(_reformat(disagreement, axis), cmap="magma", vmin=0, aspect=spacing[axis] / in_plane)
        ax.set_title("cross-view disagreement (HU)")
        ax.axis("off")
        figure.colorbar(shown, ax=ax, fraction=0.046)
    figure.suptitle(f"×{scale} through-plane synthesis, central reformat (window {low:.0f}…{high:.0f} HU)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
