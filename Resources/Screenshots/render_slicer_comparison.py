"""Render the module's side-by-side comparison with Slicer's own slice views, offscreen, for the README.

A thick CT is synthesized with ``ct-slice-synthesis synthesize`` (the bundled weights, the default options, plus
the disagreement map), then loaded with Slicer's readers into a real MRML scene (``slicer-core``, through
``Testing/slicer_core_harness.py``). The module's own comparison code (``CTSliceSynthesisWidget.onShowComparison``
and ``slicer_support/layout.py``) puts the input in the Red view and the result in the Yellow view, coronal,
rotated to the input's planes, fitted and linked; the disagreement map is shown with the module's Iron heat map.
Each view is what Slicer's ``vtkMRMLSliceLogic`` draws for it (its blended slice image, no OpenGL needed), with the
view's colour bar on top. The bottom row zooms the Red view as a user would; the linked Yellow view follows.

Two pictures: ``slicer_comparison_x4.png`` (input | result) and ``slicer_comparison_x4_disagreement.png`` (the
same with the disagreement overlay on the result)::

    PYTHONPATH=CTSliceSynthesis python Resources/Screenshots/render_slicer_comparison.py
    PYTHONPATH=CTSliceSynthesis python Resources/Screenshots/render_slicer_comparison.py --reuse  # no synthesis

The synthesis outputs are cached under ``~/.cache/ct-slice-synthesis/screenshots/``, named after the input, the
factor, the options and the bundled weights' manifest; ``--reuse`` renders from them when they exist.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
ENGINE_ROOT = REPO_ROOT / "CTSliceSynthesis"
DEFAULT_INPUT = REPO_ROOT.parent / "shared" / "data" / "ct" / "chest_lungdx_5p0mm.nii.gz"
DEFAULT_CACHE = Path.home() / ".cache" / "ct-slice-synthesis" / "screenshots"
MANIFEST = REPO_ROOT / "Resources" / "Models" / "manifest.json"
VIEW_COLORS = {"Red": (243, 74, 51), "Yellow": (237, 213, 76)}  # Slicer's slice-view controller bar colours
CT_LUNG_WINDOW = (1400.0, -500.0)  # Slicer's CT-Lung window/level preset (width, level) in HU
BAR_HEIGHT = 8
GAP = 4
ZOOM_FRACTION = 0.4  # the bottom row shows this fraction of the fitted field of view
ZOOM_CENTRE = (0.45, 0.0)  # where it looks: fractions of the fitted half-width (right lung) and half-height


def cached_outputs(input_path: Path, scale: int, synthesis_args: Sequence[str], cache_dir: Path) -> Tuple[Path, Path]:
    """``(result, disagreement)`` paths for this input, factor, options and bundled weights."""
    key = hashlib.sha256("\n".join([str(input_path.resolve()), str(input_path.stat().st_size), str(scale),
                                    *synthesis_args, MANIFEST.read_text()]).encode()).hexdigest()[:12]
    stem = input_path.name.split(".")[0]
    return cache_dir / f"{stem}_x{scale}_{key}.nii.gz", cache_dir / f"{stem}_x{scale}_{key}_disagreement.nii.gz"


def synthesize(input_path: Path, scale: int, synthesis_args: Sequence[str], result: Path, disagreement: Path) -> None:
    """Run ``ct-slice-synthesis synthesize`` (this checkout's engine) with the disagreement map."""
    result.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "CTSliceSynthesisLib.cli", "synthesize", "--input", str(input_path),
               "--output", str(result), "--scale", str(scale), "--disagreement", str(disagreement), "--overwrite",
               *synthesis_args]
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ENGINE_ROOT), os.environ.get("PYTHONPATH", "")]))
    print(" ".join(command), flush=True)
    subprocess.run(command, check=True, env=environment)


def view_pixels(slicer, view_name: str) -> np.ndarray:
    """The RGB image the slice view ``view_name`` shows, top row first, with its colour bar above it."""
    from vtk.util.numpy_support import vtk_to_numpy

    logic = slicer.app.layoutManager().sliceWidget(view_name).sliceLogic()
    producer = logic.GetImageDataConnection().GetProducer()
    producer.Update()
    image = producer.GetOutputDataObject(0)
    width, height, _depth = image.GetDimensions()
    components = image.GetNumberOfScalarComponents()
    rgba = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(height, width, components)[::-1]
    # The view draws the slice over its black background: what lies outside the volumes is transparent.
    alpha = rgba[:, :, 3:].astype(np.float32) / 255.0 if components == 4 else 1.0
    rgb = np.round(rgba[:, :, :3] * alpha).astype(np.uint8)
    bar = np.broadcast_to(np.array(VIEW_COLORS[view_name], np.uint8), (BAR_HEIGHT, width, 3))
    return np.concatenate([bar, rgb])


def side_by_side(slicer) -> np.ndarray:
    """Red and Yellow next to each other, as the side-by-side layout shows them."""
    red, yellow = view_pixels(slicer, "Red"), view_pixels(slicer, "Yellow")
    return np.concatenate([red, np.zeros((red.shape[0], GAP, 3), np.uint8), yellow], axis=1)


def zoom_red(slicer, fraction: float, centre: Tuple[float, float]) -> None:
    """Zoom and pan the Red view as a user would (an interaction on Red); the linked Yellow view follows."""
    logic = slicer.app.layoutManager().sliceWidget("Red").sliceLogic()
    node = logic.GetSliceNode()
    field = node.GetFieldOfView()
    origin = node.GetXYZOrigin()
    flags = node.FieldOfViewFlag | node.XYZOriginFlag
    logic.StartSliceNodeInteraction(flags)
    node.SetFieldOfView(field[0] * fraction, field[1] * fraction, field[2])
    node.SetXYZOrigin(origin[0] - centre[0] * field[0] / 2, origin[1] + centre[1] * field[1] / 2, origin[2])
    logic.EndSliceNodeInteraction()


def write_png(pixels: np.ndarray, path: Path) -> None:
    """Write an RGB image (top row first) with VTK's PNG writer."""
    import vtk
    from vtk.util.numpy_support import numpy_to_vtk

    height, width, _ = pixels.shape
    image = vtk.vtkImageData()
    image.SetDimensions(width, height, 1)
    image.GetPointData().SetScalars(numpy_to_vtk(np.ascontiguousarray(pixels[::-1]).reshape(-1, 3), deep=True))
    writer = vtk.vtkPNGWriter()
    writer.SetCompressionLevel(9)
    writer.SetInputData(image)
    writer.SetFileName(str(path))
    writer.Write()


def render(input_path: Path, result_path: Path, disagreement_path: Path, output_dir: Path, scale: int,
           view_size: Tuple[int, int] = (480, 360), window: Tuple[float, float] = CT_LUNG_WINDOW) -> List[Path]:
    """Load the three volumes with Slicer's readers, lay them out with the module's code and write the pictures."""
    sys.path.insert(0, str(REPO_ROOT / "Testing"))
    from slicer_core_harness import ComparisonLayoutManager, installed

    with installed() as slicer:
        slicer.app.layout_manager = ComparisonLayoutManager(slicer.mrmlScene, slicer.app.applicationLogic(), view_size)
        import CTSliceSynthesis as module

        inputVolume = slicer.util.loadVolume(str(input_path), {"name": "thick", "show": False})
        outputVolume = slicer.util.loadVolume(str(result_path), {"name": f"thick synthesized ×{scale}", "show": False})
        disagreementVolume = slicer.util.loadVolume(str(disagreement_path), {"name": "disagreement", "show": False})
        inputVolume.GetDisplayNode().SetAutoWindowLevel(False)
        inputVolume.GetDisplayNode().SetWindowLevel(*window)
        outputVolume.GetDisplayNode().SetAutoWindowLevel(False)  # the module gives the result the input's window
        outputVolume.GetDisplayNode().SetWindowLevel(*window)
        module.CTSliceSynthesisLogic._showAsHeatMap(disagreementVolume,
                                                    slicer.util.arrayFromVolume(disagreementVolume))
        params = module.CTSliceSynthesisLogic().getParameterNode()
        params.inputVolume = inputVolume
        params.outputVolume = outputVolume
        params.disagreementVolume = disagreementVolume
        widget = types.SimpleNamespace(_parameterNode=params)  # onShowComparison reads only the parameter node
        pictures = []
        for overlay, name in ((False, f"slicer_comparison_x{scale}.png"),
                              (True, f"slicer_comparison_x{scale}_disagreement.png")):
            params.showDisagreementOverlay = overlay
            module.CTSliceSynthesisWidget.onShowComparison(widget)
            fitted = side_by_side(slicer)
            zoom_red(slicer, ZOOM_FRACTION, ZOOM_CENTRE)
            zoomed = side_by_side(slicer)
            picture = np.concatenate([fitted, np.zeros((GAP, fitted.shape[1], 3), np.uint8), zoomed])
            write_png(picture, output_dir / name)
            pictures.append(output_dir / name)
    return pictures


def argument_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", type=Path, default=DEFAULT_INPUT, help="thick-slice CT (default: %(default)s)")
    parser.add_argument("--scale", type=int, default=4, help="factor r (default: 4)")
    parser.add_argument("--output-dir", type=Path, default=Path(__file__).resolve().parent, help="where the PNGs go")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="synthesis outputs (%(default)s)")
    parser.add_argument("--reuse", action="store_true", help="skip the synthesis when its cached outputs exist")
    parser.add_argument("--view-size", type=int, nargs=2, default=(480, 360), metavar=("WIDTH", "HEIGHT"))
    parser.add_argument("synthesis_args", nargs=argparse.REMAINDER,
                        help="after --: more options for ct-slice-synthesis synthesize (default: none)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Synthesize (unless reused), then render."""
    args = argument_parser().parse_args(argv)
    synthesis_args = [a for a in args.synthesis_args if a != "--"]
    result, disagreement = cached_outputs(args.input, args.scale, synthesis_args, args.cache_dir)
    started = time.monotonic()
    if not (args.reuse and result.is_file() and disagreement.is_file()):
        synthesize(args.input, args.scale, synthesis_args, result, disagreement)
    synthesized = time.monotonic()
    for picture in render(args.input, result, disagreement, args.output_dir, args.scale, tuple(args.view_size)):
        print(f"wrote {picture}")
    print(f"synthesis {synthesized - started:.0f} s, rendering {time.monotonic() - synthesized:.0f} s")


if __name__ == "__main__":
    main()
