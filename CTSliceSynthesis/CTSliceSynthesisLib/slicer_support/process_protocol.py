"""What the background synthesis process is told (its command line) and what it says back (its output lines).

The process prints ordinary log lines plus machine-readable lines that start with :data:`MARKER`::

    @CTSS PROGRESS 0.4200 synthesizing slices
    @CTSS RESULT {"model_id": "...", "sha256": "...", ...}
    @CTSS ERROR the checkpoint is not a CTSliceSynthesis file

and exits with :data:`EXIT_OK`, :data:`EXIT_FAILED` or :data:`EXIT_CANCELLED`.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from ..core.config import DEFAULT_ADAPT_STEPS, DEFAULT_FUSION, DEFAULT_SEED, FUSIONS, PRECISIONS, SUPPORTED_SCALES

MARKER = "@CTSS"
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CANCELLED = 3
DEVICES = ("auto", "cpu", "cuda", "mps")


@dataclass(frozen=True)
class Progress:
    """A progress report: overall ``fraction`` in [0, 1] and the current ``stage``."""

    fraction: float
    stage: str


@dataclass(frozen=True)
class Result:
    """The final report of a successful run (model id and hash, device, timings)."""

    info: Dict[str, Any]


@dataclass(frozen=True)
class Failure:
    """A one-line error message."""

    message: str


Message = Union[Progress, Result, Failure]


@dataclass(frozen=True)
class SynthesisRequest:
    """Everything the background process needs: files, factor, thick axis, model, device, precision, fusion,
    adaptation budget in steps, its optional wall-time cap and its seed (the options of
    ``ct-slice-synthesis synthesize``; both run the same pipeline).

    ``axis`` is the thick axis of the array in the input file (numpy order), or ``None`` to let a NIfTI input's
    affine decide. ``checkpoint`` ``None`` means the bundled weights for ``scale``. ``spacing`` is the voxel
    spacing in mm of a ``.npy`` input in numpy order; ``slice_thickness`` the slices' thickness in mm when known
    (``thickness_source``: ``given`` or ``dicom``), else the process estimates it.
    """

    input_path: str
    output_path: str
    scale: int
    axis: Optional[int] = None
    checkpoint: Optional[str] = None
    device: str = "auto"
    adapt_seconds: Optional[float] = None
    disagreement_path: Optional[str] = None
    precision: str = "auto"
    fusion: str = DEFAULT_FUSION
    spacing: Optional[Tuple[float, float, float]] = None
    slice_thickness: Optional[float] = None
    thickness_source: str = "given"
    adapt_steps: int = DEFAULT_ADAPT_STEPS
    seed: int = DEFAULT_SEED


def one_line(text: str) -> str:
    """Collapse ``text`` to a single line (messages must survive a line-based protocol)."""
    return " ".join(str(text).split())


def format_progress(fraction: float, stage: str) -> str:
    """The line that reports ``fraction`` (clamped to [0, 1]) done, now at ``stage``."""
    return f"{MARKER} PROGRESS {min(max(float(fraction), 0.0), 1.0):.4f} {one_line(stage)}"


def format_result(info: Dict[str, Any]) -> str:
    """The line that reports success with ``info`` (JSON-serialisable values)."""
    return f"{MARKER} RESULT {json.dumps(info, sort_keys=True)}"


def format_failure(message: str) -> str:
    """The line that reports a failure in one line."""
    return f"{MARKER} ERROR {one_line(message)}"


def parse_line(line: str) -> Optional[Message]:
    """Decode a protocol line; ``None`` for an ordinary log line (or a malformed protocol line)."""
    parts = line.rstrip("\r\n").split(" ", 2)
    if len(parts) < 2 or parts[0] != MARKER:
        return None
    kind, rest = parts[1], parts[2] if len(parts) == 3 else ""
    if kind == "PROGRESS":
        value, _, stage = rest.partition(" ")
        try:
            return Progress(min(max(float(value), 0.0), 1.0), stage)
        except ValueError:
            return None
    if kind == "RESULT":
        try:
            info = json.loads(rest)
        except ValueError:
            return None
        return Result(info) if isinstance(info, dict) else None
    if kind == "ERROR":
        return Failure(rest)
    return None


def argument_parser() -> argparse.ArgumentParser:
    """The command line of ``Scripts/synthesize_process.py`` (kept next to :func:`build_command`, its inverse)."""
    parser = argparse.ArgumentParser(
        prog="synthesize_process.py",
        description="Synthesize thin slices for one volume (.npy array, or NIfTI), reporting progress on stdout.",
    )
    parser.add_argument("--input", required=True, help="input volume: .npy (with --axis) or .nii/.nii.gz")
    parser.add_argument("--output", required=True, help="output file, same format as the input; written atomically")
    parser.add_argument("--scale", type=int, required=True, choices=SUPPORTED_SCALES, help="up-sampling factor r")
    parser.add_argument("--axis", type=int, choices=(0, 1, 2), help="thick axis of the array (default: from affine)")
    parser.add_argument("--checkpoint", help="model checkpoint (default: the bundled weights for --scale)")
    parser.add_argument("--device", default="auto", choices=DEVICES, help="compute device (default: auto)")
    parser.add_argument(
        "--adapt-steps", type=int, default=DEFAULT_ADAPT_STEPS,
        help=f"self-supervised adaptation budget in steps, 0 = off (default {DEFAULT_ADAPT_STEPS})",
    )
    parser.add_argument(
        "--adapt-seconds", type=float, help="optional wall-time cap on adaptation, 0 = off (no default)"
    )
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help=f"seed of adaptation's random pairs (default {DEFAULT_SEED})"
    )
    parser.add_argument("--spacing", type=float, nargs=3, help="voxel spacing (mm) of a .npy input, numpy order")
    parser.add_argument("--slice-thickness", type=float, help="slice thickness (mm), when known")
    parser.add_argument(
        "--thickness-source", choices=("given", "dicom"), default="given", help="where --slice-thickness came from"
    )
    parser.add_argument("--disagreement", help="also write the per-voxel disagreement map (float32 HU) here")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS, help="network arithmetic (default: auto)")
    parser.add_argument(
        "--fusion", default=DEFAULT_FUSION, choices=FUSIONS, help=f"how the views are mixed (default: {DEFAULT_FUSION})"
    )
    return parser


def parse_command(argv: Sequence[str]) -> SynthesisRequest:
    """Parse the arguments of the background script (exits with code 2 on a usage error, like argparse)."""
    args = argument_parser().parse_args(list(argv))
    if args.adapt_seconds is not None and not args.adapt_seconds >= 0:
        argument_parser().error("--adapt-seconds must not be negative")
    if args.adapt_steps < 0:
        argument_parser().error("--adapt-steps must not be negative")
    if args.slice_thickness is not None and not args.slice_thickness > 0:
        argument_parser().error("--slice-thickness must be positive")
    if args.spacing is not None and not all(value > 0 for value in args.spacing):
        argument_parser().error("--spacing must be positive")
    return SynthesisRequest(
        input_path=args.input,
        output_path=args.output,
        scale=args.scale,
        axis=args.axis,
        checkpoint=args.checkpoint,
        device=args.device,
        adapt_seconds=args.adapt_seconds,
        disagreement_path=args.disagreement,
        precision=args.precision,
        fusion=args.fusion,
        spacing=tuple(args.spacing) if args.spacing is not None else None,
        slice_thickness=args.slice_thickness,
        thickness_source=args.thickness_source,
        adapt_steps=args.adapt_steps,
        seed=args.seed,
    )


def build_command(python_executable: str, script: str, request: SynthesisRequest) -> List[str]:
    """The argument list that runs ``script`` with ``python_executable`` for ``request``."""
    command = [python_executable, script, "--input", request.input_path, "--output", request.output_path]
    command += ["--scale", str(request.scale), "--device", request.device]
    if request.axis is not None:
        command += ["--axis", str(request.axis)]
    if request.checkpoint:
        command += ["--checkpoint", request.checkpoint]
    command += ["--adapt-steps", str(int(request.adapt_steps)), "--seed", str(int(request.seed))]
    if request.adapt_seconds is not None:
        command += ["--adapt-seconds", f"{request.adapt_seconds:g}"]
    if request.spacing is not None:
        command += ["--spacing", *(f"{value:.9g}" for value in request.spacing)]
    if request.slice_thickness is not None:
        command += ["--slice-thickness", f"{request.slice_thickness:.9g}", "--thickness-source", request.thickness_source]
    if request.disagreement_path:
        command += ["--disagreement", request.disagreement_path]
    if request.precision != "auto":
        command += ["--precision", request.precision]
    if request.fusion != DEFAULT_FUSION:
        command += ["--fusion", request.fusion]
    return command
