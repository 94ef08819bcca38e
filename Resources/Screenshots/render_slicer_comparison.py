"""Render the README figure of the module's side-by-side comparison from a thick CT and its synthesized result.

The module shows the input in the Red view and the result in the Yellow view, both coronal, rotated to the input's
planes, fitted and scrolled together (``CTSliceSynthesisLib/slicer_support/layout.py``). This script draws the same
two views with matplotlib: the coronal reformat through the volume centre, patient right on the left and superior at
the top (Slicer's default), the thick input drawn with linear interpolation between its slices as Slicer's slice views
do by default, both with the same window. It is a rendering, not a screenshot of Slicer.

    PYTHONPATH=CTSliceSynthesis python -m CTSliceSynthesisLib.cli synthesize \\
        --input ../shared/data/ct/chest_lungdx_5p0mm.nii.gz --output /tmp/thin_x4.nii.gz --scale 4
    python Resources/Screenshots/render_slicer_comparison.py --input ../shared/data/ct/chest_lungdx_5p0mm.nii.gz \\
        --result /tmp/thin_x4.nii.gz --scale 4 --output Resources/Screenshots/slicer_comparison_x4.png
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np

RED_VIEW_COLOR = "#f34a33"  # the colours of Slicer's Red and Yellow slice-view controller bars
YELLOW_VIEW_COLOR = "#edd54c"
CT_LUNG_WINDOW = (1400.0, -500.0)  # Slicer's CT-Lung window/level preset (width, level) in HU
DEFAULT_ZOOM = (0.3, 0.7, 0.12, 0.47)  # (top, bottom, left, right): the patient's right lung in the chest CT

Box = Tuple[float, float, float, float]


def radiological_coronal(data: np.ndarray, affine: np.ndarray) -> Tuple[np.ndarray, float, float]:
    """The central coronal reformat of a volume as Slicer draws it, with its ``(row, column)`` pixel size in mm.

    Rows run from superior to inferior and columns from patient right to left. The volume is first put in the
    closest RAS+ voxel order (axis permutations and flips only, no resampling).
    """
    import nibabel as nib

    image = nib.as_closest_canonical(nib.Nifti1Image(np.asarray(data), np.asarray(affine, dtype=np.float64)))
    ras = np.asanyarray(image.dataobj)
    right, _anterior, superior = (float(z) for z in image.header.get_zooms()[:3])
    coronal = ras[:, ras.shape[1] // 2, :]  # (R, S), index increasing towards right and superior
    return coronal.T[::-1, ::-1], superior, right


def linear_rows(image: np.ndarray, scale: int) -> np.ndarray:
    """``image`` with ``scale - 1`` rows linearly interpolated between each pair: ``(n - 1)·scale + 1`` rows."""
    rows = image.shape[0]
    position = np.arange((rows - 1) * scale + 1) / scale
    low = np.minimum(np.floor(position).astype(int), rows - 1)
    high = np.minimum(low + 1, rows - 1)
    weight = (position - low)[:, None]
    return image[low].astype(np.float64) * (1.0 - weight) + image[high].astype(np.float64) * weight


def crop(image: np.ndarray, box: Box) -> np.ndarray:
    """The part of ``image`` inside ``box`` = ``(top, bottom, left, right)`` as fractions of its height and width."""
    top, bottom, left, right = box
    rows, columns = image.shape
    return image[round(top * rows) : round(bottom * rows), round(left * columns) : round(right * columns)]


def render(
    thick: np.ndarray,
    thick_affine: np.ndarray,
    result: np.ndarray,
    result_affine: np.ndarray,
    scale: int,
    output: Path,
    window: Tuple[float, float] = CT_LUNG_WINDOW,
    zoom: Box = DEFAULT_ZOOM,
) -> None:
    """Write the comparison PNG: both views fitted (top row) and zoomed on ``zoom`` together (bottom row).

    ``window`` is ``(width, level)`` in HU, applied to both views. The PNG is written with a palette of grey levels
    and the two view colours (small enough for the README).
    """
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    thick_view, thick_row_mm, column_mm = radiological_coronal(thick, thick_affine)
    result_view, result_row_mm, _ = radiological_coronal(result, result_affine)
    if result_view.shape != ((thick_view.shape[0] - 1) * scale + 1, thick_view.shape[1]):
        raise ValueError(f"the result {result_view.shape} is not the ×{scale} grid of the input {thick_view.shape}")
    views = [
        (f"input (Red, coronal): {thick_row_mm:g} mm slices, drawn with linear interpolation",
         linear_rows(thick_view, scale), RED_VIEW_COLOR),
        (f"result ×{scale} (Yellow, coronal): {result_row_mm:g} mm slices", result_view, YELLOW_VIEW_COLOR),
    ]
    aspect = result_row_mm / column_mm
    rows = [[image for _, image, _ in views], [crop(image, zoom) for _, image, _ in views]]
    heights = [row[0].shape[0] * aspect / row[0].shape[1] for row in rows]  # per unit of panel width
    panel_inches = 4.5
    figure, axes = plt.subplots(2, 2, figsize=(2 * panel_inches, panel_inches * sum(heights) + 0.7),
                                gridspec_kw={"height_ratios": heights}, facecolor="black")
    width, level = window
    for column, (title, _, color) in enumerate(views):
        for row, images in enumerate(rows):
            ax = axes[row][column]
            ax.imshow(images[column], cmap="gray", vmin=level - width / 2.0, vmax=level + width / 2.0,
                      aspect=aspect, interpolation="bilinear")
            ax.set_axis_off()
        axes[0][column].set_title(title, fontsize=8.5, color="black", backgroundcolor=color, loc="left")
        axes[1][column].set_title("zoomed: linked views zoom and scroll together", fontsize=8, color="white",
                                  loc="left")
    figure.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.96, wspace=0.02, hspace=0.08)
    buffer = io.BytesIO()
    figure.savefig(buffer, dpi=100, facecolor="black", format="png")
    plt.close(figure)
    buffer.seek(0)
    palette = Image.new("P", (1, 1))
    palette.putpalette(view_palette())
    Image.open(buffer).convert("RGB").quantize(palette=palette, dither=Image.Dither.NONE).save(output, optimize=True)


def view_palette() -> List[int]:
    """A 256-entry RGB palette: 254 grey levels for the images and the two view colours for the title bars."""
    greys = np.linspace(0, 255, 254).round().astype(int)
    colours = [tuple(int(c[i : i + 2], 16) for i in (1, 3, 5)) for c in (RED_VIEW_COLOR, YELLOW_VIEW_COLOR)]
    return [int(v) for grey in greys for v in (grey, grey, grey)] + [v for colour in colours for v in colour]


def argument_parser() -> argparse.ArgumentParser:
    """The command line of this script."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", required=True, type=Path, help="the thick-slice NIfTI the module was given")
    parser.add_argument("--result", required=True, type=Path, help="its synthesized NIfTI")
    parser.add_argument("--scale", required=True, type=int, help="the factor r of the result")
    parser.add_argument("--output", required=True, type=Path, help="PNG to write")
    parser.add_argument("--window", nargs=2, type=float, default=CT_LUNG_WINDOW, metavar=("WIDTH", "LEVEL"),
                        help="display window in HU (default: Slicer's CT-Lung preset, 1400 -500)")
    parser.add_argument("--zoom", nargs=4, type=float, default=DEFAULT_ZOOM, metavar=("TOP", "BOTTOM", "LEFT", "RIGHT"),
                        help="zoomed region as fractions of the view's height and width")
    return parser


def main(argv: Sequence[str] = None) -> None:
    """Read both volumes and write the figure."""
    import nibabel as nib

    args = argument_parser().parse_args(argv)
    thick, result = nib.load(str(args.input)), nib.load(str(args.result))
    render(np.asanyarray(thick.dataobj), thick.affine, np.asanyarray(result.dataobj), result.affine, args.scale,
           args.output, tuple(args.window), tuple(args.zoom))


if __name__ == "__main__":
    main()
