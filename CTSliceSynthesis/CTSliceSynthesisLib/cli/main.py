"""The ``ct-slice-synthesis`` command: ``synthesize`` and ``train``.

Every documented failure prints one line ``ct-slice-synthesis: error: …`` and exits non-zero, with the input
untouched and no partial output.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional, Sequence, Tuple

import numpy as np

from .. import __version__
from ..core.config import PRECISION_HELP, PRECISIONS, SUPPORTED_SCALES
from ..core.errors import CTSliceSynthesisError, InputError, OutputError, SynthesisCancelled

if TYPE_CHECKING:
    import nibabel

PROGRAM = "ct-slice-synthesis"
EXIT_ERROR = 2
EXIT_INTERNAL = 1
EXIT_CANCELLED = 130


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a usage mistake on one line instead of usage + message."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_ERROR, f"{PROGRAM}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The full command-line interface."""
    parser = OneLineParser(prog=PROGRAM, description="Thick-slice CT → thin-slice CT (Fang et al., CVPR 2022).")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    synth = commands.add_parser("synthesize", help="synthesize thin slices of a NIfTI volume")
    synth.add_argument("--input", required=True, type=Path, help="thick-slice CT volume (.nii or .nii.gz, HU)")
    synth.add_argument("--output", required=True, type=Path, help="where to write the result (.nii or .nii.gz)")
    synth.add_argument("--scale", required=True, type=int, help="slices per input gap: 2, 3 or 4")
    synth.add_argument("--model", type=Path, help="checkpoint to use (default: the bundled model for --scale)")
    synth.add_argument("--device", default="auto", help="auto (default), cpu, cuda or mps")
    synth.add_argument("--precision", choices=PRECISIONS, default="auto", help=PRECISION_HELP)
    synth.add_argument(
        "--axis", default="auto", help="thick voxel axis 0, 1 or 2 (default: the axis with the largest spacing)"
    )
    synth.add_argument("--disagreement", type=Path, help="also write the cross-view disagreement map (HU) here")
    synth.add_argument(
        "--fusion",
        choices=("equal", "calibrated"),
        default="equal",
        help="equal (default): the paper's mean of the three views (eq. 7); calibrated: weigh the views and "
        "linear/cubic interpolation by this volume's own held-out slices (experimental, see the README)",
    )
    synth.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    synth.add_argument("--quiet", action="store_true", help="no progress bar")

    from .demo import add_demo_arguments
    from .evaluate import add_evaluate_arguments
    from .train import add_train_arguments

    add_train_arguments(commands.add_parser("train", help="self-supervised training or fine-tuning"))
    add_demo_arguments(commands.add_parser("demo", help="simulate thick slices of a real CT and synthesize them back"))
    add_evaluate_arguments(commands.add_parser("evaluate", help="score synthesis and baselines on thin-slice CTs"))
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; returns the process exit code."""
    args = build_parser().parse_args(argv)
    warnings.filterwarnings("ignore", message=".*pkg_resources.*")
    try:
        if args.command == "synthesize":
            return run_synthesize(args)
        if args.command == "demo":
            from .demo import run_demo

            return run_demo(args)
        if args.command == "evaluate":
            from .evaluate import run_evaluate

            return run_evaluate(args)
        from .train import run_train

        return run_train(args)
    except (SynthesisCancelled, KeyboardInterrupt):
        print(f"{PROGRAM}: cancelled; nothing was written", file=sys.stderr)
        return EXIT_CANCELLED
    except CTSliceSynthesisError as error:
        print(f"{PROGRAM}: error: {one_line(error)}", file=sys.stderr)
        return EXIT_ERROR
    except MemoryError:
        print(f"{PROGRAM}: error: out of memory", file=sys.stderr)
        return EXIT_ERROR
    except Exception as error:  # noqa: BLE001 - the last line of defence of a CLI
        if args.debug:
            raise
        print(f"{PROGRAM}: internal error: {type(error).__name__}: {one_line(error)} (rerun with --debug)", file=sys.stderr)
        return EXIT_INTERNAL


def one_line(error: BaseException) -> str:
    """The first line of an exception's message."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def check_output_path(output: Path, inputs: List[Path], overwrite: bool) -> None:
    """Refuse outputs that would overwrite an input, an existing file (without ``--overwrite``) or cannot be
    written; done before any computation."""
    from ..io.nifti import is_nifti_path

    if not is_nifti_path(output):
        raise OutputError(f"output {output} must end in .nii or .nii.gz")
    for source in inputs:
        same_file = source.exists() and output.exists() and os.path.samefile(source, output)
        if same_file or output.resolve() == source.resolve():
            raise OutputError(f"output {output} is the input file: choose another name")
    if output.exists() and not overwrite:
        raise OutputError(f"output {output} exists: pass --overwrite to replace it")
    folder = output.parent if str(output.parent) else Path(".")
    if not folder.is_dir():
        problem = "is not a folder" if folder.exists() else "does not exist"
        raise OutputError(f"output folder {folder} {problem}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"output folder {folder} is not writable")


def parse_axis(text: str) -> Optional[int]:
    """``auto`` → None, else 0, 1 or 2."""
    if text == "auto":
        return None
    if text not in ("0", "1", "2"):
        raise InputError(f"--axis must be auto, 0, 1 or 2, got {text!r}")
    return int(text)


def run_synthesize(args: argparse.Namespace) -> int:
    """``synthesize``: check everything the header tells, read, check the voxels, synthesize, write atomically."""
    from ..core.geometry import upsampled_affine

    if args.scale not in SUPPORTED_SCALES:
        raise InputError(f"unsupported scale {args.scale}: choose one of {', '.join(map(str, SUPPORTED_SCALES))}")
    axis_choice = parse_axis(args.axis)
    outputs = [args.output] + ([args.disagreement] if args.disagreement else [])
    for output in outputs:
        check_output_path(output, [args.input], args.overwrite)
    if args.disagreement and args.disagreement.resolve() == args.output.resolve():
        raise OutputError("--disagreement must differ from --output")

    from ..inference.model_store import load_model
    from ..inference.synthesis import check_volume
    from ..io.checks import intensity_warning, refuse_label_map
    from ..io.nifti import load_nifti, open_nifti, write_nifti

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
    result = _synthesize_with_bar(volume.data, args, model, axis)
    elapsed = time.perf_counter() - started
    if result.calibration_summary:
        say(result.calibration_summary)
    affine = upsampled_affine(volume.affine, axis, args.scale)
    write_nifti(args.output, result.volume, affine, volume.header)
    if args.disagreement is not None and result.disagreement is not None:
        write_nifti(args.disagreement, result.disagreement.astype(np.float32), affine, volume.header)
    say(
        f"wrote {args.output} {result.volume.shape}, spacing {spacing[axis] / args.scale:.4g} mm along axis "
        f"{axis}, in {elapsed:.1f} s"
    )
    return 0


def choose_axis(affine: np.ndarray, name: str, choice: Optional[int]) -> Tuple[np.ndarray, int]:
    """``(voxel spacing, thick axis)``: the axis given, else the one with the largest spacing.

    A degenerate affine is refused, and so are isotropic voxels without an explicit axis: there are no thick
    slices to fill.
    """
    from ..core.geometry import is_isotropic, thick_axis, voxel_spacing

    spacing = voxel_spacing(affine)
    if not np.all(np.isfinite(affine)) or not np.all(spacing > 0):
        raise InputError(f"{name} has a degenerate affine (voxel spacing {', '.join(f'{s:.3g}' for s in spacing)} mm)")
    if choice is not None:
        return spacing, choice
    if is_isotropic(spacing):
        raise InputError(
            f"{name} has isotropic voxels ({spacing[0]:.3g} mm): there are no thick slices to fill; "
            "pass --axis 0, 1 or 2 to up-sample one axis anyway"
        )
    return spacing, thick_axis(spacing)


def check_memory_for(image: "nibabel.Nifti1Image", axis: int, args: argparse.Namespace) -> None:
    """Refuse, before reading the voxels, a synthesis that needs more memory than is available."""
    from ..io.checks import check_memory, synthesis_memory_bytes

    stored = image.get_data_dtype()
    slope, intercept = image.header.get_slope_inter()
    scaled = stored.kind in "iu" and ((slope is not None and slope != 1) or (intercept is not None and intercept != 0))
    shape = tuple(image.shape[:3])
    # A slope or intercept makes nibabel read float64 and the engine keep int16 or float32.
    itemsize, load_itemsize = (4, 8) if scaled else (stored.itemsize, None)
    needed = synthesis_memory_bytes(shape, axis, args.scale, itemsize, load_itemsize, args.disagreement is not None)
    check_memory(needed, f"synthesizing {args.input.name} {shape} ×{args.scale}")


def _synthesize_with_bar(data: np.ndarray, args: argparse.Namespace, model, axis: int):
    from tqdm import tqdm

    from ..inference.synthesis import synthesize_volume

    with tqdm(total=100, disable=args.quiet, unit="%", bar_format="{l_bar}{bar}| {elapsed}<{remaining}") as bar:

        def progress(fraction: float, message: str) -> None:
            bar.set_description(message)
            bar.update(round(100 * fraction) - bar.n)

        return synthesize_volume(
            data,
            args.scale,
            model,
            axis=axis,
            progress=progress,
            with_disagreement=args.disagreement is not None,
            fusion="calibrated" if args.fusion == "calibrated" else None,
        )
