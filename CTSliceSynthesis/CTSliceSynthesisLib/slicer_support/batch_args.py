"""The headless batch command: its arguments, which files it reads, where it writes, and its exit codes.

    Slicer --no-splash --no-main-window --python-script CTSliceSynthesis/Scripts/batch.py -- \\
        --input thick.nrrd --output thin.nrrd --scale 2
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from ..core.config import DEFAULT_ADAPT_STEPS, DEFAULT_SEED, SUPPORTED_SCALES
from .ijk_geometry import AXIS_CHOICES
from .naming import output_file_name
from .process_protocol import DEVICES
from .thickness_field import MAX_THICKNESS_MM

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NO_INPUT = 3
EXIT_DEPENDENCIES = 4

VOLUME_SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd")
OUTPUT_FORMATS = {"nrrd": ".nrrd", "nifti": ".nii.gz"}


class BatchError(Exception):
    """A problem with the command that stops the batch before any volume is processed; ``exit_code`` says which."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class BatchOptions:
    """Parsed batch arguments."""

    input: Path
    output: Path
    scale: int
    axis: str = "auto"
    checkpoint: Optional[Path] = None
    device: str = "auto"
    adapt_steps: int = DEFAULT_ADAPT_STEPS
    adapt_seconds: Optional[float] = None
    seed: int = DEFAULT_SEED
    slice_thickness: Optional[float] = None
    disagreement: bool = False
    output_format: str = "nrrd"
    overwrite: bool = False
    install_dependencies: bool = False


class _Parser(argparse.ArgumentParser):
    """An argument parser that raises :class:`BatchError` instead of printing usage and exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise BatchError(f"{message} (see --help)", EXIT_USAGE)


def argument_parser() -> argparse.ArgumentParser:
    """The batch command line."""
    parser = _Parser(
        prog="batch.py",
        description="Synthesize thin slices for a CT volume, or every volume in a folder, without the GUI.",
    )
    parser.add_argument("--input", required=True, type=Path, help="a volume file, or a folder of volume files")
    parser.add_argument(
        "--output",
        required=True,
        type=Path,
        help="output file (.nrrd, .nhdr, .nii, .nii.gz, .mha) for a file input; a folder for a folder input",
    )
    parser.add_argument("--scale", required=True, type=int, choices=SUPPORTED_SCALES, help="up-sampling factor r")
    parser.add_argument("--axis", default="auto", choices=AXIS_CHOICES, help="thick IJK axis (default: largest spacing)")
    parser.add_argument("--checkpoint", type=Path, help="model checkpoint (default: the bundled weights)")
    parser.add_argument("--device", default="auto", choices=DEVICES, help="compute device (default: auto)")
    parser.add_argument(
        "--adapt-steps", type=int, default=DEFAULT_ADAPT_STEPS, metavar="N",
        help=f"adapt the model to each scan for N steps first, 0 = off (default {DEFAULT_ADAPT_STEPS}; reproducible)",
    )
    parser.add_argument(
        "--adapt-seconds", type=float, metavar="S",
        help="optional wall-time cap on adaptation, 0 = off (no default; a run it cuts short is not reproducible)",
    )
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help=f"seed of adaptation's random pairs (default {DEFAULT_SEED})"
    )
    parser.add_argument(
        "--slice-thickness", type=float, metavar="MM",
        help="thickness (mm) of the input slices, for every input volume (default: the engine estimates it)",
    )
    parser.add_argument("--disagreement", action="store_true", help="also write <output>_disagreement maps")
    parser.add_argument(
        "--format", dest="output_format", default="nrrd", choices=sorted(OUTPUT_FORMATS), help="format for folders"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument(
        "--install-dependencies", action="store_true", help="install missing Python packages (torch etc.) first"
    )
    return parser


def parse_batch_args(argv: Sequence[str]) -> BatchOptions:
    """Parse the batch arguments; :class:`BatchError` with ``EXIT_USAGE`` when they are wrong."""
    args = argument_parser().parse_args(list(argv))
    if args.adapt_steps < 0:
        raise BatchError("--adapt-steps must not be negative (0: no adaptation)", EXIT_USAGE)
    if args.adapt_seconds is not None and not args.adapt_seconds >= 0:
        raise BatchError("--adapt-seconds must not be negative", EXIT_USAGE)
    if args.slice_thickness is not None and not 0 < args.slice_thickness <= MAX_THICKNESS_MM:
        raise BatchError(f"--slice-thickness must be above 0 and at most {MAX_THICKNESS_MM:g} mm", EXIT_USAGE)
    if args.checkpoint is not None and not args.checkpoint.is_file():
        raise BatchError(f"checkpoint not found: {args.checkpoint}", EXIT_USAGE)
    return BatchOptions(**vars(args))


def has_volume_suffix(path: Path) -> bool:
    """True for file names the batch reads and writes (NRRD, NIfTI, MetaImage)."""
    return path.name.lower().endswith(VOLUME_SUFFIXES)


def find_inputs(path: Path) -> List[Path]:
    """The volume files to process: ``path`` itself, or the volume files directly inside a folder (sorted)."""
    if path.is_file():
        return [path]
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.is_file() and has_volume_suffix(p))
        if not found:
            raise BatchError(f"no volume files ({', '.join(VOLUME_SUFFIXES)}) in {path}", EXIT_NO_INPUT)
        return found
    raise BatchError(f"input not found: {path}", EXIT_NO_INPUT)


def plan_outputs(options: BatchOptions, inputs: Sequence[Path]) -> List[Tuple[Path, Path]]:
    """Pair each input with its output path; :class:`BatchError` for a clash, an existing file or a bad name."""
    if options.input.is_file():
        if not has_volume_suffix(options.output):
            raise BatchError(f"output must end with one of {', '.join(VOLUME_SUFFIXES)}: {options.output}", EXIT_USAGE)
        pairs = [(inputs[0], options.output)]
    else:
        if options.output.exists() and not options.output.is_dir():
            raise BatchError(f"for a folder input, --output must be a folder: {options.output}", EXIT_USAGE)
        extension = OUTPUT_FORMATS[options.output_format]
        pairs = [(source, options.output / output_file_name(source, options.scale, extension)) for source in inputs]
    sources_by_target = {}
    for source, target in pairs:
        earlier = sources_by_target.setdefault(target.resolve(), source)
        if earlier != source:  # e.g. scan.nii.gz and scan.mha in one folder
            raise BatchError(f"{earlier.name} and {source.name} would both be written to {target}: rename one",
                             EXIT_USAGE)
        if target.resolve() == source.resolve():
            raise BatchError(f"output would overwrite the input: {target}", EXIT_USAGE)
        if target.exists() and not options.overwrite:
            raise BatchError(f"output exists (use --overwrite to replace it): {target}", EXIT_USAGE)
    return pairs


def disagreement_path(output: Path) -> Path:
    """Where the disagreement map of ``output`` goes: same folder and format, ``_disagreement`` added to the stem."""
    name = output.name
    for suffix in sorted(VOLUME_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return output.with_name(name[: -len(suffix)] + "_disagreement" + name[-len(suffix) :])
    return output.with_name(name + "_disagreement")
