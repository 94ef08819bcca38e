"""``ct-slice-synthesis synthesize``: thin slices of one volume, checked before any work and written atomically."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..core.config import FUSIONS, PRECISION_HELP, PRECISIONS
from ..core.errors import OutputError
from .arguments import PROGRAM, parse_axis

if TYPE_CHECKING:
    import nibabel

NIFTI_OUTPUT_SUFFIXES = (".nii", ".nii.gz")


def add_synthesize_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``synthesize``."""
    parser.add_argument("--input", required=True, type=Path, help="thick-slice CT volume (.nii or .nii.gz, HU)")
    parser.add_argument("--output", required=True, type=Path, help="where to write the result (.nii or .nii.gz)")
    parser.add_argument("--scale", required=True, type=int, help="slices per input gap: 2, 3 or 4")
    parser.add_argument("--model", type=Path, help="checkpoint to use (default: the bundled model for --scale)")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or mps")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto", help=PRECISION_HELP)
    parser.add_argument(
        "--axis", default="auto", help="thick voxel axis 0, 1 or 2 (default: the axis with the largest spacing)"
    )
    parser.add_argument("--disagreement", type=Path, help="also write the cross-view disagreement map (HU) here")
    parser.add_argument(
        "--fusion",
        choices=FUSIONS,
        default="equal",
        help="equal (default): the paper's mean of the three views (eq. 7); calibrated: weigh the views and "
        "linear/cubic interpolation by this volume's own held-out slices (experimental, see the README)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run_synthesize(args: argparse.Namespace) -> int:
    """Check everything the header tells, read, check the voxels, synthesize, write atomically."""
    from ..core.config import check_scale
    from ..core.geometry import choose_axis, upsampled_affine
    from ..inference.model_store import load_model
    from ..io.checks import check_output_path, check_volume, intensity_warning, refuse_label_map
    from ..io.nifti import load_nifti, open_nifti, write_nifti

    check_scale(args.scale)
    axis_choice = parse_axis(args.axis)
    outputs = [args.output] + ([args.disagreement] if args.disagreement else [])
    for output in outputs:
        check_output_path(output, [args.input], args.overwrite, NIFTI_OUTPUT_SUFFIXES)
    if args.disagreement and args.disagreement.resolve() == args.output.resolve():
        raise OutputError("--disagreement must differ from --output")

    image = open_nifti(args.input)
    spacing, axis = choose_axis(image.affine, args.input.name, axis_choice)
    check_memory_for(image, axis, args)
    volume = load_nifti(image, args.input)
    check_volume(volume.data, args.scale, axis)
    refuse_label_map(volume.data, args.input.name)
    warning = intensity_warning(volume.data)
    if warning:
        print(f"{PROGRAM}: warning: {warning}", file=sys.stderr)
    model = load_model(args.model, args.scale, args.device, precision=args.precision)
    say = (lambda text: None) if args.quiet else (lambda text: print(text, file=sys.stderr))
    say(
        f"{args.input.name}: {volume.data.shape} {volume.data.dtype}, spacing "
        f"{' × '.join(f'{s:.3g}' for s in spacing)} mm, thick axis {axis}; model {model.model_id} "
        f"({model.preset}, ×{model.scale}) on {model.device}, {model.precision_name}"
    )
    started = time.perf_counter()
    result, summary = _synthesize_with_bar(volume.data, args, model, axis)
    elapsed = time.perf_counter() - started
    if summary:
        say(summary)
    affine = upsampled_affine(volume.affine, axis, args.scale)
    write_nifti(args.output, result.volume, affine, volume.header)
    if args.disagreement is not None and result.disagreement is not None:
        write_nifti(args.disagreement, result.disagreement.astype(np.float32), affine, volume.header)
    say(
        f"wrote {args.output} {result.volume.shape}, spacing {spacing[axis] / args.scale:.4g} mm along axis "
        f"{axis}, in {elapsed:.1f} s"
    )
    return 0


def check_memory_for(image: "nibabel.Nifti1Image", axis: int, args: argparse.Namespace) -> None:
    """Refuse, before reading the voxels, a synthesis that needs more memory than is available."""
    from ..io.checks import check_memory, synthesis_memory_bytes
    from ..io.nifti import voxel_itemsizes

    shape = tuple(image.shape[:3])
    itemsize, load_itemsize = voxel_itemsizes(image)
    needed = synthesis_memory_bytes(shape, axis, args.scale, itemsize, load_itemsize, args.disagreement is not None)
    check_memory(needed, f"synthesizing {args.input.name} {shape} ×{args.scale}")


def _synthesize_with_bar(data: np.ndarray, args: argparse.Namespace, model, axis: int):
    from tqdm import tqdm

    from ..inference.calibration import calibrated_weights
    from ..inference.synthesis import synthesize_volume

    with tqdm(total=100, disable=args.quiet, unit="%", bar_format="{l_bar}{bar}| {elapsed}<{remaining}") as bar:

        def progress(fraction: float, message: str) -> None:
            bar.set_description(message)
            bar.update(round(100 * fraction) - bar.n)

        weights, summary = None, ""
        if args.fusion == "calibrated":
            progress(0.0, "calibrating the fusion on this volume")
            weights, summary = calibrated_weights(data, model, axis=axis)
        result = synthesize_volume(
            data,
            args.scale,
            model,
            axis=axis,
            progress=progress,
            with_disagreement=args.disagreement is not None,
            fusion=weights,
        )
        return result, summary
