"""``ct-slice-synthesis synthesize``: the flags, then one run of the file-to-file pipeline
(:func:`~CTSliceSynthesisLib.inference.pipeline.run_pipeline`, which the Slicer module's background process runs
too) with its progress (a bar on a terminal, time-stamped lines elsewhere: ``cli/progress.py``), and what was
done, on stderr."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, List

from ..core.config import DEFAULT_FUSION, FUSIONS, PRECISION_HELP, PRECISIONS, SUPPORTED_SCALES
from .arguments import PROGRAM, add_adaptation_arguments, parse_axis
from .progress import ProgressReporter

if TYPE_CHECKING:
    from ..inference.pipeline import PipelineResult, RunInfo

BAR_FORMAT = "{l_bar}{bar}| {elapsed}<{remaining}"


def add_synthesize_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``synthesize``."""
    parser.add_argument(
        "--input", required=True, type=Path, help="thick-slice CT volume (.nii or .nii.gz, HU; or .npy with --axis)"
    )
    parser.add_argument(
        "--output", required=True, type=Path, help="where to write the result (.nii or .nii.gz; .npy for .npy input)"
    )
    factors = parser.add_mutually_exclusive_group(required=True)
    factors.add_argument(
        "--scale", type=int, help=f"slices per input gap r: {SUPPORTED_SCALES[0]} to {SUPPORTED_SCALES[-1]}"
    )
    factors.add_argument(
        "--target-spacing",
        type=float,
        metavar="MM",
        help="choose r instead: the one that brings the slice spacing closest to MM mm without going above it "
        "(the smaller r on a tie; 5 mm to 1 mm is ×5, 2.5 mm to 1 mm is ×3: 0.83 mm)",
    )
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
        default=DEFAULT_FUSION,
        help="pint (default): the mean of PInt's coronal and sagittal views, trained at the input's geometry; "
        "equal: the paper's eq. 7, the mean of all three views (SInt-A too); calibrated: weigh the views and "
        "linear/cubic interpolation by this volume's own held-out slices (see the README)",
    )
    add_adaptation_arguments(parser)
    parser.add_argument(
        "--slice-thickness",
        type=float,
        metavar="MM",
        help="the input's slice thickness in mm (DICOM Slice Thickness); default: estimated from the volume",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.add_argument("--quiet", action="store_true", help="no progress bar (or progress lines, when not a terminal)")


def run_synthesize(args: argparse.Namespace) -> int:
    """Run the pipeline on the flags' files; warnings always go to stderr, the rest unless ``--quiet``."""
    from ..inference.pipeline import PipelineOptions, run_pipeline

    options = PipelineOptions(
        input_path=args.input,
        output_path=args.output,
        scale=args.scale,
        target_spacing=args.target_spacing,
        axis=parse_axis(args.axis),
        disagreement_path=args.disagreement,
        checkpoint=args.model,
        device=args.device,
        precision=args.precision,
        fusion=args.fusion,
        adapt_steps=args.adapt_steps,
        adapt_seconds=args.adapt_seconds,
        seed=args.seed,
        slice_thickness=args.slice_thickness,
        overwrite=args.overwrite,
    )
    say = (lambda text: None) if args.quiet else (lambda text: print(text, file=sys.stderr))
    shown: List[ProgressReporter] = []  # progress starts with the work, so that a refusal stays one line

    def ready(info: "RunInfo") -> None:
        say(describe_run(info))
        shown.append(ProgressReporter("synthesize", enabled=not args.quiet, bar_format=BAR_FORMAT))

    def progress(fraction: float, stage: str) -> None:
        for reporter in shown:
            reporter.update(fraction, stage)

    try:
        result = run_pipeline(
            options, progress=progress, log=lambda line: print(f"{PROGRAM}: {line}", file=sys.stderr), on_ready=ready
        )
    finally:
        for reporter in shown:
            reporter.close()
    if result.calibration_summary:
        say(result.calibration_summary)
    say(describe_output(result, args.output))
    return 0


def describe_run(info: "RunInfo") -> str:
    """The line about the input and the model, printed when both are loaded."""
    spacing = "" if info.spacing is None else f", spacing {' × '.join(f'{s:.3g}' for s in info.spacing)} mm"
    slices = "" if info.geometry is None else f"; {info.geometry.describe()}"
    chosen = "" if info.target_spacing is None else f"; ×{info.scale} chosen for {info.target_spacing:g} mm"
    return (
        f"{info.input_name}: {info.shape} {info.dtype}{spacing}, thick axis {info.axis}{slices}{chosen}; model "
        f"{info.model_id} ({info.preset}, ×{info.scale}) on {info.device}, {info.precision}"
    )


def describe_output(result: "PipelineResult", output: Path) -> str:
    """The last line: what was written, its spacing along the thick axis, and the time it took."""
    info = result.info
    spacing = "" if info.spacing is None else f", spacing {info.spacing[info.axis] / info.scale:.4g} mm"
    if info.target_spacing is not None:
        spacing += f" (×{info.scale}, chosen for {info.target_spacing:g} mm)"
    adapted = f" ({result.adaptation.describe()})" if result.adaptation is not None else ""
    return (
        f"wrote {output} {result.output_shape}{spacing} along axis {info.axis}, in {result.seconds:.1f} s{adapted}"
    )
