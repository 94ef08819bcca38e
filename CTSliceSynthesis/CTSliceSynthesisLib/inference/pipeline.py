"""One synthesis from file to file, as ``ct-slice-synthesis synthesize`` and the Slicer module's background process
(``Scripts/synthesize_process.py``) both run it.

In order, and before any output exists: the output paths, the input's header (NIfTI) and geometry, the memory
the run needs, the voxels (:func:`check_volume`, label maps refused, non-HU intensities warned about), the
slices' spacing and thickness (given, or estimated from the voxels), the model; then adaptation to the scan
(default: :data:`~CTSliceSynthesisLib.core.config.DEFAULT_ADAPT_STEPS` steps from the seed
:data:`~CTSliceSynthesisLib.core.config.DEFAULT_SEED`, so that the same input gives the same bytes), calibration of
the fusion (optional),
the synthesis, and the atomic writing of the outputs (the disagreement map first, the output last). Inputs are
NIfTI (``.nii``, ``.nii.gz``; the output is NIfTI with the up-sampled affine and the run's provenance in its
description) or a numpy array (``.npy`` with an explicit axis and, for adaptation, the voxel spacing; the output
is ``.npy``). :func:`synthesize_scan` is the same synthesis on an array in memory (the evaluation's "ours").

Example::

    result = run_pipeline(PipelineOptions(Path("thick.nii.gz"), Path("thin.nii.gz"), scale=2))
    print(result.info.model_id, result.output_shape, f"{result.seconds:.1f} s")
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Optional, Sequence, Tuple

import numpy as np
import torch

from ..core.callbacks import CancelCheck, ProgressCallback, sub_range
from ..core.config import DEFAULT_ADAPT_STEPS, DEFAULT_FUSION, DEFAULT_SEED, FUSIONS, check_scale
from ..core.errors import InputError, OutputError, SynthesisCancelled
from ..core.geometry import SliceGeometry, choose_axis, scale_for_target_spacing, upsampled_affine
from ..io.atomic import write_atomically
from ..io.checks import (
    check_memory,
    check_output_path,
    check_volume,
    intensity_warning,
    refuse_label_map,
    synthesis_memory_bytes,
)
from ..io.nifti import NIFTI_SUFFIXES, load_nifti, open_nifti, voxel_itemsizes, write_nifti
from ..training.adaptation import adapt_to_volume
from ..training.profiles import estimate_thickness
from .calibration import calibrated_weights
from .fusion import fusion_weights
from .model_store import SynthesisModel, load_model, prepare_model
from .synthesis import SynthesisResult, synthesize_volume

NUMPY_SUFFIX = ".npy"
# Where each stage sits on the overall progress bar (the Slicer module's protocol).
MODEL_AT, SYNTHESIS_FROM, ADAPTED_AT, SYNTHESIS_TO, WRITING_AT = 0.02, 0.05, 0.5, 0.97, 0.98

Log = Callable[[str], None]


@dataclass(frozen=True)
class PipelineOptions:
    """What to synthesize, where to, and how.

    ``axis`` is the thick voxel axis; ``None`` takes the axis with the largest spacing from a NIfTI affine
    (isotropic voxels and degenerate affines are refused) and is an error for ``.npy`` input. ``checkpoint``
    ``None`` means the bundled weights for ``scale``. ``precision`` is one of ``core.config.PRECISIONS``,
    ``fusion`` one of ``core.config.FUSIONS``. ``adapt_steps`` > 0 fine-tunes the model on the input for that
    many steps first, with random pairs drawn from ``seed`` (0: off); ``adapt_seconds`` optionally caps that in
    wall time (``None``: no cap; 0: off, as before steps were the budget). A run the cap stops early is not
    reproducible, and its provenance and log say so.
    ``slice_thickness`` is the input's slice thickness in mm when known (``thickness_source`` says where it came
    from: ``given`` or ``dicom``), else it is estimated from the voxels. ``spacing`` is the voxel spacing in mm
    of a ``.npy`` input, in array order (NIfTI inputs have theirs in the affine). Without ``overwrite`` an
    existing output is refused. ``scale`` ``None`` chooses r from ``target_spacing`` (mm) once the input's slice
    spacing is known (:func:`~CTSliceSynthesisLib.core.geometry.scale_for_target_spacing`); exactly one of the two
    is given.
    """

    input_path: Path
    output_path: Path
    scale: Optional[int]
    axis: Optional[int] = None
    disagreement_path: Optional[Path] = None
    checkpoint: Optional[Path] = None
    device: str = "auto"
    precision: str = "auto"
    fusion: str = DEFAULT_FUSION
    adapt_steps: int = DEFAULT_ADAPT_STEPS
    adapt_seconds: Optional[float] = None
    seed: int = DEFAULT_SEED
    slice_thickness: Optional[float] = None
    thickness_source: str = "given"
    spacing: Optional[Tuple[float, float, float]] = None
    overwrite: bool = False
    target_spacing: Optional[float] = None


@dataclass(frozen=True)
class RunInfo:
    """The input and the model of a run, known once both are loaded: what the callers report.

    ``spacing`` is the voxel spacing in mm (``None`` for ``.npy`` input given none) and ``geometry`` the slices'
    spacing and thickness (``None`` without a spacing); ``model_id`` and ``sha256`` name the weights as loaded,
    before any adaptation. ``target_spacing`` is the spacing asked for when r was chosen from it.
    """

    input_name: str
    shape: Tuple[int, ...]
    dtype: np.dtype
    spacing: Optional[np.ndarray]
    geometry: Optional[SliceGeometry]
    axis: int
    scale: int
    model_id: str
    sha256: Optional[str]
    preset: str
    device: torch.device
    precision: str
    target_spacing: Optional[float] = None


def adaptation_requested(adapt_steps: int, adapt_seconds: Optional[float]) -> bool:
    """Whether options ask for adaptation: steps > 0 and no cap of 0 seconds (``--adapt-seconds 0``: off)."""
    return adapt_steps > 0 and (adapt_seconds is None or adapt_seconds > 0)


@dataclass(frozen=True)
class Adaptation:
    """How a run adapted to its scan: ``steps`` taken out of ``planned``, the ``seed`` of the random pairs, whether
    the wall-time cap (``cap_seconds``) stopped it early (``capped``) and the seconds it took."""

    steps: int
    planned: int
    seed: int
    capped: bool = False
    cap_seconds: Optional[float] = None
    seconds: float = 0.0

    @property
    def reproducible(self) -> bool:
        """Whether the same input and options give the same weights again (the cap did not stop the run)."""
        return not self.capped

    def describe(self) -> str:
        """Words for logs: ``adapted to this scan in 100 steps, seed 0``, and the cut when capped."""
        if not self.capped:
            return f"adapted to this scan in {self.steps} steps, seed {self.seed}"
        return (f"adapted to this scan in only {self.steps} of {self.planned} steps, seed {self.seed}: stopped by "
                f"the {self.cap_seconds:g} s cap (--adapt-seconds), so the result is not reproducible")


@dataclass(frozen=True)
class PipelineResult:
    """A finished run: its :class:`RunInfo`, the output's shape, the seconds spent computing (adaptation,
    calibration and synthesis; not reading or writing), the calibration's one-line summary (``""`` without
    calibration), the number of adaptation steps (0 without) and how it adapted (``None`` without)."""

    info: RunInfo
    output_shape: Tuple[int, ...]
    seconds: float
    calibration_summary: str = ""
    adapted_steps: int = 0
    adaptation: Optional[Adaptation] = None


@dataclass
class _Input:
    """The voxels and what writing the outputs needs."""

    data: np.ndarray
    axis: int
    spacing: Optional[np.ndarray]
    affine: Optional[np.ndarray] = None
    header: Optional[object] = None  # nibabel's header of a NIfTI input


def run_pipeline(
    options: PipelineOptions,
    *,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelCheck] = None,
    log: Optional[Log] = None,
    on_ready: Optional[Callable[[RunInfo], None]] = None,
) -> PipelineResult:
    """Synthesize ``options.input_path`` into ``options.output_path``; returns what was done.

    ``progress(fraction, stage)`` follows the whole run (0.02 loading the model, 0.05–0.97 adaptation and
    synthesis, 0.98 writing, 1.0 done; the stage texts are constant, the fraction says how far a stage is);
    ``cancel()`` returning True stops it with :class:`SynthesisCancelled` before anything is written;
    ``log(line)`` receives warnings (``"warning: …"``, e.g. an adaptation cut short by its cap);
    ``on_ready(info)`` is called once the input and the model are loaded, just before the work starts. Every
    refusal is a one-line :class:`~CTSliceSynthesisLib.core.errors.CTSliceSynthesisError`.
    """
    report: ProgressCallback = progress or (lambda fraction, stage: None)
    say = log or (lambda line: None)
    cancelled = cancel or (lambda: False)
    _check_options(options)
    options = _resolve_scale(options)
    source = _read_input(options, say)
    geometry = slice_geometry(source.data, source.axis, source.spacing, options.slice_thickness,
                              options.thickness_source)
    report(MODEL_AT, "loading the model")
    model = load_model(options.checkpoint, options.scale, options.device, precision=options.precision)
    info = _run_info(options, source, geometry, model)
    if cancelled():
        raise SynthesisCancelled("cancelled before the synthesis started")
    if on_ready is not None:
        on_ready(info)
    adapting = adaptation_requested(options.adapt_steps, options.adapt_seconds)
    if adapting and geometry is None:
        say("warning: the voxel spacing is unknown (.npy input without --spacing): not adapting to this scan")
    started = time.perf_counter()
    scan = synthesize_scan(
        source.data,
        source.axis,
        model,
        geometry,
        fusion=options.fusion,
        adapt_steps=options.adapt_steps if adapting and geometry is not None else 0,
        adapt_seconds=options.adapt_seconds,
        seed=options.seed,
        precision=options.precision,
        with_disagreement=options.disagreement_path is not None,
        progress=report,
        cancel=cancel,
    )
    seconds = time.perf_counter() - started
    if cancelled():
        raise SynthesisCancelled("cancelled before the output was written")
    if scan.adaptation is not None and scan.adaptation.capped:
        say(f"warning: {scan.adaptation.describe()} (it depends on the machine's speed and load; without "
            f"--adapt-seconds every run takes the same {scan.adaptation.planned} steps)")
    report(WRITING_AT, "writing the output")
    description = provenance(scan.model, options.scale, geometry, scan.adaptation)
    if options.disagreement_path is not None:
        disagreement = scan.result.disagreement.astype(np.float32, copy=False)
        _write(options.disagreement_path, disagreement, source, options.scale, description)
    _write(options.output_path, scan.result.volume, source, options.scale, description)
    report(1.0, "done")
    return PipelineResult(info, tuple(scan.result.volume.shape), seconds, scan.calibration_summary,
                          scan.adapted_steps, scan.adaptation)


@dataclass
class ScanSynthesis:
    """What :func:`synthesize_scan` made: the synthesis, the model it used (adapted or as given), the number
    of adaptation steps, the calibration's one-line summary (``""`` without), the seconds adaptation took and
    how it went (``None`` without)."""

    result: SynthesisResult
    model: SynthesisModel
    adapted_steps: int = 0
    calibration_summary: str = ""
    adapt_seconds: float = 0.0
    adaptation: Optional[Adaptation] = None


def synthesize_scan(
    data: np.ndarray,
    axis: int,
    model: SynthesisModel,
    geometry: Optional[SliceGeometry],
    *,
    fusion: str = DEFAULT_FUSION,
    adapt_steps: int = DEFAULT_ADAPT_STEPS,
    adapt_seconds: Optional[float] = None,
    seed: int = DEFAULT_SEED,
    precision: str = "auto",
    with_disagreement: bool = False,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelCheck] = None,
) -> ScanSynthesis:
    """The product's synthesis of one volume in memory (HU, thick axis ``axis``): adaptation to the scan for
    ``adapt_steps`` steps from ``seed`` (see :func:`adaptation_requested`; it needs ``geometry``; ``adapt_seconds``
    is an optional wall-time cap), calibration with ``fusion="calibrated"``, then the synthesis.

    ``progress`` sees the pipeline's scale (adaptation from 0.05 to 0.5, synthesis up to 0.97).
    """
    report: ProgressCallback = progress or (lambda fraction, stage: None)
    synthesis_from, steps, adapting_started = SYNTHESIS_FROM, 0, time.perf_counter()
    adaptation: Optional[Adaptation] = None
    if adaptation_requested(adapt_steps, adapt_seconds):
        if geometry is None:
            raise InputError("adapting to the scan needs its voxel spacing")
        spacing = _spacing_of(geometry, axis)
        adapted = adapt_to_volume(
            model.networks,
            data,
            axis=axis,
            spacing=spacing,
            thickness=geometry.thickness_mm if geometry.thickness_known else None,
            device=model.device,
            steps=adapt_steps,
            seed=seed,
            time_cap_s=adapt_seconds,
            progress=sub_range(report, SYNTHESIS_FROM, ADAPTED_AT),
            cancel=cancel,
        )
        model_id = f"{model.model_id}+adapted{adapted.steps}"
        model = prepare_model(adapted.networks, model_id, None, model.device, precision)
        synthesis_from, steps = ADAPTED_AT, adapted.steps
        adaptation = Adaptation(adapted.steps, adapted.planned, adapted.seed, adapted.capped, adapt_seconds,
                                time.perf_counter() - adapting_started)
    adapt_spent = adaptation.seconds if adaptation is not None else 0.0
    weights, summary = fusion_weights(fusion), ""
    if fusion == "calibrated":
        report(synthesis_from, "calibrating the fusion on this volume")
        weights, summary = calibrated_weights(data, model, axis=axis, cancel=cancel)
    result = synthesize_volume(
        data,
        model.scale,
        model,
        axis=axis,
        progress=sub_range(report, synthesis_from, SYNTHESIS_TO),
        cancel=cancel,
        with_disagreement=with_disagreement,
        fusion=weights,
    )
    return ScanSynthesis(result, model, steps, summary, adapt_spent, adaptation)


def slice_geometry(
    data: np.ndarray,
    axis: int,
    spacing: Optional[Sequence[float]],
    thickness: Optional[float],
    source: str = "given",
) -> Optional[SliceGeometry]:
    """The slices' spacing and thickness: ``thickness`` when given (from ``source``), else estimated from the
    voxels (``training.profiles.estimate_thickness``), else the spacing itself. ``None`` without a spacing."""
    if spacing is None:
        return None
    axis = axis % 3
    slice_spacing = float(spacing[axis])
    in_plane = tuple(float(spacing[a]) for a in range(3) if a != axis)
    if thickness is not None:
        return SliceGeometry(slice_spacing, float(thickness), source, in_plane)  # type: ignore[arg-type]
    estimate = estimate_thickness(np.moveaxis(data, axis, 0), slice_spacing, in_plane)
    if estimate is not None:
        return SliceGeometry(slice_spacing, estimate.thickness_mm, "estimated", in_plane)  # type: ignore[arg-type]
    return SliceGeometry(slice_spacing, slice_spacing, "spacing", in_plane)  # type: ignore[arg-type]


def _spacing_of(geometry: SliceGeometry, axis: int) -> Tuple[float, float, float]:
    """Voxel spacing in array order from a slice geometry (the thick axis at ``axis``)."""
    spacing = list(geometry.in_plane_mm)
    spacing.insert(axis % 3, geometry.spacing_mm)
    return tuple(spacing)  # type: ignore[return-value]


DESCRIPTION_CHARACTERS = 80  # the NIfTI-1 ``descrip`` field (``io.nifti.DESCRIPTION_BYTES``)


def provenance(
    model: SynthesisModel, scale: int, geometry: Optional[SliceGeometry], adaptation: Optional[Adaptation]
) -> str:
    """The output's description (NIfTI ``descrip``, at most 80 ASCII characters): synthetic (``CTSS``), factor,
    weights as loaded, adaptation (steps and seed; ``cap`` after the steps when the wall-time cap cut the run
    short, i.e. not reproducible) and the input's slice geometry with the source of its thickness, e.g.
    ``CTSS x2 lite-x2-inplane-3000 +adapt100 seed0; T=2.50mm(estimated) dz=2.00mm``. A model name too long for
    the field is shortened (ending in ``~``) so that the rest always fits."""
    base_id = model.model_id.split("+adapted")[0]
    tail = ""
    if adaptation is not None:  # even 0 steps: a cap that stopped the run before its first step is recorded
        tail += f" +adapt{adaptation.steps}{'cap' if adaptation.capped else ''} seed{adaptation.seed}"
    if geometry is not None:
        tail += f"; T={geometry.thickness_mm:.2f}mm({geometry.thickness_source}) dz={geometry.spacing_mm:.2f}mm"
    head = f"CTSS x{scale} "
    room = DESCRIPTION_CHARACTERS - len(head) - len(tail)
    if len(base_id) > room:
        base_id = base_id[: max(room - 1, 0)] + "~"
    return (head + base_id + tail)[:DESCRIPTION_CHARACTERS]


def _check_options(options: PipelineOptions) -> None:
    """Refuse what the options alone rule out: scale, fusion, adaptation budget, output paths."""
    if (options.scale is None) == (options.target_spacing is None):
        raise InputError("give either --scale or --target-spacing")
    if options.target_spacing is not None and not options.target_spacing > 0:
        raise InputError("--target-spacing must be a positive number of mm")
    if options.scale is not None:
        check_scale(options.scale)
    if options.fusion not in FUSIONS:
        raise InputError(f"unknown fusion {options.fusion!r}: choose one of {', '.join(FUSIONS)}")
    if options.adapt_seconds is not None and not options.adapt_seconds >= 0:
        raise InputError("--adapt-seconds must not be negative")
    if options.adapt_steps < 0:
        raise InputError("--adapt-steps must not be negative (0: no adaptation)")
    if options.slice_thickness is not None and not options.slice_thickness > 0:
        raise InputError("--slice-thickness must be a positive number of mm")
    if options.spacing is not None and (len(options.spacing) != 3 or not all(v > 0 for v in options.spacing)):
        raise InputError("--spacing needs three positive numbers (mm)")
    suffixes = (NUMPY_SUFFIX,) if _is_numpy(options.input_path) else NIFTI_SUFFIXES
    outputs = [options.output_path] + ([options.disagreement_path] if options.disagreement_path else [])
    for output in outputs:
        check_output_path(output, [options.input_path], options.overwrite, suffixes)
    if options.disagreement_path and options.disagreement_path.resolve() == options.output_path.resolve():
        raise OutputError("--disagreement must differ from --output")


def _resolve_scale(options: PipelineOptions) -> PipelineOptions:
    """``options`` with ``scale`` set: as given, or chosen from ``target_spacing`` and the input's slice spacing."""
    if options.scale is not None:
        return options
    if _is_numpy(options.input_path):
        if options.spacing is None or options.axis is None:
            raise InputError("--target-spacing needs the voxel spacing and the thick axis of a .npy input")
        spacing = float(options.spacing[options.axis])
    else:
        voxel_spacing, axis = choose_axis(open_nifti(options.input_path).affine, options.input_path.name, options.axis)
        spacing = float(voxel_spacing[axis])
    return replace(options, scale=scale_for_target_spacing(spacing, options.target_spacing))


def _run_info(
    options: PipelineOptions, source: _Input, geometry: Optional[SliceGeometry], model: SynthesisModel
) -> RunInfo:
    return RunInfo(
        input_name=options.input_path.name,
        shape=tuple(source.data.shape),
        dtype=source.data.dtype,
        spacing=source.spacing,
        geometry=geometry,
        axis=source.axis,
        scale=options.scale,
        model_id=model.model_id,
        sha256=model.sha256,
        preset=model.preset,
        device=model.device,
        precision=model.precision_name,
        target_spacing=options.target_spacing,
    )


def _is_numpy(path: Path) -> bool:
    return str(path).lower().endswith(NUMPY_SUFFIX)


def _read_input(options: PipelineOptions, log: Log) -> _Input:
    """Header checks, geometry and memory first, then the voxels and their checks."""
    if _is_numpy(options.input_path):
        return _read_numpy(options, log)
    image = open_nifti(options.input_path)
    spacing, axis = choose_axis(image.affine, options.input_path.name, options.axis)
    _check_memory(tuple(image.shape[:3]), axis, *voxel_itemsizes(image), options)
    volume = load_nifti(image, options.input_path)
    _check_voxels(volume.data, options.scale, axis, options.input_path.name, log)
    return _Input(volume.data, axis, spacing, volume.affine, volume.header)


def _read_numpy(options: PipelineOptions, log: Log) -> _Input:
    """A ``.npy`` array (the Slicer module's voxels): no geometry, so the axis must be given."""
    path = options.input_path
    if options.axis is None:
        raise InputError("--axis is required for .npy input (it has no geometry)")
    if not path.is_file():
        raise InputError(f"input file not found: {path}")
    try:
        header = np.load(path, mmap_mode="r", allow_pickle=False)  # shape and type without reading the voxels
        shape, itemsize = tuple(header.shape), header.dtype.itemsize
        del header
        if len(shape) == 3 and -3 <= options.axis <= 2:
            _check_memory(shape, options.axis, itemsize, None, options)
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise InputError(f"cannot read {path.name}: not a readable .npy array ({type(error).__name__})") from None
    # The array is the volume on screen, not a file the user named: messages call it "the volume".
    _check_voxels(data, options.scale, options.axis, "the volume", log)
    spacing = np.asarray(options.spacing, dtype=np.float64) if options.spacing is not None else None
    return _Input(data, options.axis, spacing)


def _check_memory(
    shape: Tuple[int, ...], axis: int, itemsize: int, load_itemsize: Optional[int], options: PipelineOptions
) -> None:
    """Refuse, before the voxels are read, a synthesis that needs more memory than is available."""
    with_disagreement = options.disagreement_path is not None
    needed = synthesis_memory_bytes(shape, axis, options.scale, itemsize, load_itemsize, with_disagreement)
    check_memory(needed, f"synthesizing {options.input_path.name} {shape} ×{options.scale}")


def _check_voxels(data: np.ndarray, scale: int, axis: int, name: str, log: Log) -> None:
    check_volume(data, scale, axis)
    refuse_label_map(data, name)
    warning = intensity_warning(data)
    if warning:
        log(f"warning: {warning}")


def _write(path: Path, array: np.ndarray, source: _Input, scale: int, description: str) -> None:
    """Atomically: NIfTI with the up-sampled affine, the input's header and ``description``, or a plain
    ``.npy`` array."""
    if source.affine is None:
        write_atomically(path, lambda temporary: np.save(temporary, array, allow_pickle=False))
    else:
        affine = upsampled_affine(source.affine, source.axis, scale)
        write_nifti(path, array, affine, source.header, description)
