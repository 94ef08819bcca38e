"""``ct-slice-synthesis evaluate``: score synthesis against thin-slice CTs (simulated thick slices), with the
classical baselines, optional ablations and a second model, and write a Markdown/JSON report and figures."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .. import __version__
from ..core.config import DEFAULT_FUSION, FUSIONS, PRECISIONS, PRECISION_HELP, SUPPORTED_SCALES
from ..core.degradation import DEGRADATIONS
from ..core.errors import CheckpointError, InputError, OutputError
from ..core.geometry import checked_spacing, thick_axis
from .arguments import add_adaptation_arguments, check_adaptation_arguments, parse_axis

if TYPE_CHECKING:
    from ..inference.model_store import SynthesisModel

FIGURES_DIR = "figures"


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``evaluate``."""
    parser.add_argument("--input", required=True, nargs="+", type=Path, help="thin-slice CT NIfTI files or folders")
    parser.add_argument("--scale", required=True, nargs="+", type=int, help=f"factors to simulate, from {SUPPORTED_SCALES[0]} to {SUPPORTED_SCALES[-1]}")
    parser.add_argument("--output-dir", required=True, type=Path, help="evaluation.md, evaluation.json, figures/")
    parser.add_argument(
        "--model", nargs="+", type=Path, help="checkpoints, one per scale (default: the bundled model of each scale)"
    )
    parser.add_argument(
        "--compare-model", nargs="+", type=Path, help="second model(s), one per scale, scored as the 'compare' row"
    )
    parser.add_argument(
        "--degradation", choices=DEGRADATIONS, nargs="+", default=["direct"],
        help="thick-slice simulations, one or more: direct (every r-th slice, default), thick (real thick slices: "
        "a box as wide as the new spacing), blur-noise",
    )
    parser.add_argument(
        "--slice-thickness", type=float, metavar="MM",
        help="thickness (mm) to tell the synthesis the thick input has (default: estimated, as synthesize does)",
    )
    add_adaptation_arguments(parser, seed_help=" before 'ours' (as synthesize does) and of --degradation blur-noise")
    parser.add_argument(
        "--fusion", choices=FUSIONS, default=DEFAULT_FUSION, help=f"fusion of 'ours' (default {DEFAULT_FUSION})"
    )
    parser.add_argument("--ablations", action="store_true", help="also score each view and PInt-C+S alone")
    parser.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    parser.add_argument("--axis", default="auto", help="thick voxel axis 0, 1 or 2 (default: largest spacing, last on ties)")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or mps; also used for SSIM")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto", help=PRECISION_HELP)


def run_evaluate(args: argparse.Namespace) -> int:
    """Check every input, model and the output folder first, then evaluate volume by volume, rewriting the
    report after each; prints the Markdown report and returns 0."""
    from ..evaluation.report import markdown_report, summarise, write_report
    from ..io.nifti import open_nifti

    scales = sorted(set(args.scale))
    unsupported = [s for s in scales if s not in SUPPORTED_SCALES]
    if unsupported:
        raise InputError(f"unsupported scale {unsupported[0]}: choose from {', '.join(map(str, SUPPORTED_SCALES))}")
    axis_choice = parse_axis(args.axis)
    check_adaptation_arguments(args)
    inputs = collect_inputs(args.input)
    for path in inputs:
        open_nifti(path)  # refuses unreadable or non-CT files from the header, before any work
    prepare_output_dir(args.output_dir, figures=not args.no_figures)
    models = models_by_scale(args.model, scales, args.device, args.precision, "--model", bundled=True)
    compares = models_by_scale(
        args.compare_model, scales, args.device, args.precision, "--compare-model", bundled=False
    )
    report: Dict[str, Any] = {"engine_version": __version__, "volumes": []}
    for number, path in enumerate(inputs, start=1):
        say(f"[{number}/{len(inputs)}] {path.name}")
        report["volumes"].append(evaluate_file(path, scales, models, compares, axis_choice, args))
        report["summary"] = summarise(report["volumes"])
        markdown, data = write_report(args.output_dir, report)
    print(markdown_report(report), end="")
    say(f"wrote {markdown} and {data}")
    return 0


def say(text: str) -> None:
    """A progress line on stderr."""
    print(text, file=sys.stderr, flush=True)


def collect_inputs(entries: Sequence[Path]) -> List[Path]:
    """Files as given and the NIfTI files of folders (sorted); refuses empty folders and repeated file names
    (figures are named after them)."""
    from ..io.nifti import is_nifti_path

    inputs: List[Path] = []
    for entry in entries:
        if entry.is_dir():
            found = sorted(p for p in entry.iterdir() if p.is_file() and is_nifti_path(p))
            if not found:
                raise InputError(f"folder {entry} holds no .nii or .nii.gz files")
            inputs += found
        else:
            inputs.append(entry)
    names = [volume_stem(p) for p in inputs]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InputError(f"two inputs are named {repeated[0]}: rename one (figures are named after the file)")
    return inputs


def volume_stem(path: Path) -> str:
    """The file name without ``.nii`` or ``.nii.gz``."""
    name = path.name
    return name[: -len(".nii.gz")] if name.lower().endswith(".nii.gz") else name.rsplit(".", 1)[0]


def prepare_output_dir(directory: Path, figures: bool) -> None:
    """Create the output folder (and ``figures/``) and make sure it can be written."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if figures:
            (directory / FIGURES_DIR).mkdir(exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot create output folder {directory}: {error.strerror or error}") from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise OutputError(f"output folder {directory} is not writable")


def checkpoint_scale(path: Path) -> int:
    """The up-sampling factor a checkpoint was trained for, read from its model configuration."""
    from ..io.checkpoint import load_checkpoint

    payload = load_checkpoint(path)
    try:
        return int(payload["model_config"]["scale"])
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(f"{path.name} does not hold CTSliceSynthesis networks (no model configuration)") from None


def models_by_scale(
    checkpoints: Optional[Sequence[Path]],
    scales: Sequence[int],
    device: str,
    precision: str,
    flag: str,
    bundled: bool,
) -> Dict[int, SynthesisModel]:
    """One model per scale: each checkpoint goes to the scale it was trained for; scales left without one get
    the bundled model if ``bundled`` (an error when there is none) and are skipped otherwise."""
    from ..inference.model_store import load_model

    chosen: Dict[int, Path] = {}
    for path in checkpoints or []:
        scale = checkpoint_scale(path)
        if scale not in scales:
            raise InputError(f"{flag} {path.name} is a ×{scale} model but --scale is {' '.join(map(str, scales))}")
        if scale in chosen:
            raise InputError(f"{flag} has two ×{scale} models: {chosen[scale].name} and {path.name}")
        chosen[scale] = path
    wanted = scales if bundled else sorted(chosen)
    return {scale: load_model(chosen.get(scale), scale, device, precision=precision) for scale in wanted}


def spacing_and_axis(affine: np.ndarray, name: str, choice: Optional[int]) -> Tuple[np.ndarray, int]:
    """``(voxel spacing, thick axis)``: the axis given, else the one with the largest spacing (the last one on
    ties, so isotropic volumes are thinned along their slice axis). A degenerate affine is refused."""
    spacing = checked_spacing(affine, name)
    return spacing, thick_axis(spacing) if choice is None else choice


def evaluate_file(
    path: Path,
    scales: Sequence[int],
    models: Dict[int, SynthesisModel],
    compares: Dict[int, SynthesisModel],
    axis_choice: Optional[int],
    args: argparse.Namespace,
) -> Dict[str, Any]:
    """Every scale of one volume: scores (and figures unless ``--no-figures``); returns its report entry."""
    from ..evaluation.figures import ReformatCrops, save_evaluation_figure
    from ..evaluation.report import anatomical_plane
    from ..evaluation.scoring import evaluate_volume
    from ..io.nifti import read_nifti

    volume = read_nifti(path)
    spacing, axis = spacing_and_axis(volume.affine, path.name, axis_choice)
    first, second = [a for a in range(3) if a != axis]
    planes = {a: anatomical_plane(volume.affine, a) for a in (first, second)}
    entry: Dict[str, Any] = {
        "name": path.name,
        "shape": list(volume.data.shape),
        "spacing_mm": [float(s) for s in spacing],
        "axis": axis,
        "planes": {"c": planes[first], "s": planes[second]},
        "evaluations": [],
    }
    for degradation in args.degradation:
        for scale in scales:
            model = models[scale]
            say(f"  ×{scale} ({degradation}), model {model.model_id} on {model.device}")
            crops = None if args.no_figures else ReformatCrops(axis, spacing)
            result = evaluate_volume(
                volume.data, scale, model, axis=axis, spacing=spacing, slice_thickness=args.slice_thickness,
                adapt_steps=args.adapt_steps, adapt_seconds=args.adapt_seconds, fusion=args.fusion,
                degradation=degradation, ablations=args.ablations, seed=args.seed,
                compare_model=compares.get(scale), with_disagreement=crops is not None, device=model.device,
                progress=lambda line: say(f"    {line}"), sink=crops,
            )
            entry["evaluations"].append(result)
            if crops is not None:
                suffix = "" if degradation == "direct" else f"_{degradation}"
                figure = args.output_dir / FIGURES_DIR / f"{volume_stem(path)}_x{scale}{suffix}.png"
                title = f"{path.name} ×{scale} ({degradation})"
                save_evaluation_figure(figure, crops, result["methods"], title, planes)
    return entry
