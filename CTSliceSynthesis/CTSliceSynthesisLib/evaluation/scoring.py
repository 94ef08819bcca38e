"""Scoring synthesis against thin-slice truth: simulate thick slices, synthesize, compare (spec §9.4–9.5)."""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import numpy as np
import torch

from ..core.config import DEFAULT_FUSION
from ..core.degradation import DEGRADATIONS, blur_noise_sampling, direct_sampling, thick_sampling, trim_to_multiple
from ..core.errors import InputError
from ..core.interpolation import upsample_cubic, upsample_lanczos3, upsample_linear, upsample_nearest
from ..inference.calibration import calibrated_weights
from ..inference.model_store import SynthesisModel
from ..inference.pipeline import slice_geometry, synthesize_scan
from ..inference.synthesis import synthesize_volume
from ..nets import SynthesisNetworks
from .metrics import psnr, saint_psnr, ssim_views, synthesized_indices

BASELINES: Dict[str, Callable[[np.ndarray, int, int], np.ndarray]] = {
    "nearest": upsample_nearest,
    "linear": upsample_linear,
    "cubic": upsample_cubic,
    "lanczos3": upsample_lanczos3,
}
# Ablation rows: the views averaged at synthesized slices, and the fusion calibrated on each volume (see
# inference/calibration.py), all with the model "ours" used (adapted to the volume when adaptation is on). The
# "ours" row is the product's default: adaptation as asked, then eq. 7 (the mean of all three views).
ABLATIONS: Dict[str, Tuple[str, ...]] = {
    "SInt-A": ("axial",),
    "PInt-C": ("coronal",),
    "PInt-S": ("sagittal",),
    "PInt-C+S": ("coronal", "sagittal"),
    "calibrated": ("axial", "coronal", "sagittal"),
}
OURS = "ours"
UNADAPTED = "not adapted"
COMPARE = "compare"
METRICS = ("psnr_all", "psnr_synthesized", "ssim_a", "ssim_c", "ssim_s", "ssim_mean", "saint_psnr")
# Called with a name ("truth", a method, or "disagreement") and the HU volume, e.g. to keep figure crops.
OutputSink = Callable[[str, np.ndarray], None]
Progress = Callable[[str], None]
# A deferred reconstruction: returns the output volume in HU and the disagreement map (or None).
Reconstruction = Callable[[], Tuple[np.ndarray, Optional[np.ndarray]]]


def psnr_after_downsampling(
    networks: SynthesisNetworks, thin: np.ndarray, axis: int, scale: int, device: torch.device
) -> Dict[str, float]:
    """Trim ``thin`` so ``(L − 1) mod r = 0``, keep every r-th slice, synthesize, and return PSNR over all output
    slices and over the synthesized ones only. The networks' mode (train/eval) is restored afterwards."""
    truth = np.moveaxis(trim_to_multiple(thin, scale, axis), axis, 0)
    thick = direct_sampling(truth, scale, 0)
    was_training = networks.training
    networks.eval()
    try:
        model = SynthesisModel(networks=networks, model_id="validation", sha256=None, device=device)
        output = synthesize_volume(thick, scale, model, axis=0).volume
    finally:
        networks.train(was_training)
    new = synthesized_indices(truth.shape[0], scale)
    return {"psnr_all": psnr(output, truth), "psnr_synthesized": psnr(output[new], truth[new])}


def simulate_thick(
    thin_hu: np.ndarray, scale: int, axis: int, degradation: str = "direct", seed: int = 0
) -> Tuple[np.ndarray, np.ndarray]:
    """``(truth, thick)`` in float32 HU: ``thin_hu`` trimmed so ``(L − 1) mod scale = 0``, and every
    ``scale``-th slice of it, directly (``direct``) or after the code-faithful blur (3 taps, σ = 1.3, along the
    thick axis and the first other axis) and N(0, 25²) HU noise (``blur-noise``, noise seeded by ``seed``)."""
    if degradation not in DEGRADATIONS:
        raise InputError(f"unknown degradation {degradation!r}: choose one of {', '.join(DEGRADATIONS)}")
    if thin_hu.shape[axis] < scale + 1:
        raise InputError(f"×{scale} needs at least {scale + 1} slices along axis {axis}, got {thin_hu.shape[axis]}")
    truth = trim_to_multiple(thin_hu, scale, axis).astype(np.float32)
    if degradation == "direct":
        return truth, np.ascontiguousarray(direct_sampling(truth, scale, axis))
    if degradation == "thick":
        return truth, thick_sampling(truth, scale, axis)
    in_plane = min(a for a in range(3) if a != axis)
    thick = blur_noise_sampling(truth, scale, axis, in_plane_axis=in_plane, rng=np.random.default_rng(seed))
    return truth, thick


def score_volume(
    output_hu: np.ndarray, truth_hu: np.ndarray, scale: int, axis: int, device: Optional[torch.device] = None
) -> Dict[str, float]:
    """Every metric of :data:`METRICS` for one output volume against the truth (same shape)."""
    new = synthesized_indices(truth_hu.shape[axis], scale)
    return {
        "psnr_all": psnr(output_hu, truth_hu),
        "psnr_synthesized": psnr(np.take(output_hu, new, axis=axis), np.take(truth_hu, new, axis=axis)),
        **ssim_views(output_hu, truth_hu, axis, device),
        "saint_psnr": saint_psnr(output_hu, truth_hu, scale, axis),
    }


def evaluate_volume(
    thin_hu: np.ndarray,
    scale: int,
    model: Optional[SynthesisModel],
    *,
    axis: int,
    spacing: Optional[Sequence[float]] = None,
    slice_thickness: Optional[float] = None,
    adapt_steps: int = 0,
    adapt_seconds: Optional[float] = None,
    fusion: str = DEFAULT_FUSION,
    degradation: str = "direct",
    methods: Sequence[str] = tuple(BASELINES),
    ablations: bool = False,
    seed: int = 0,
    compare_model: Optional[SynthesisModel] = None,
    with_disagreement: bool = False,
    device: Optional[torch.device] = None,
    progress: Optional[Progress] = None,
    sink: Optional[OutputSink] = None,
) -> Dict[str, Any]:
    """Simulate thick slices from the thin-slice ``thin_hu`` (HU, thick axis ``axis``, voxel ``spacing`` in mm),
    reconstruct them with the classical ``methods`` (names of :data:`BASELINES`), with ``model`` as the product
    runs it (row ``ours``: the thick input's slice geometry, with ``slice_thickness`` or estimated, adaptation
    for ``adapt_steps`` steps from ``seed`` (capped at ``adapt_seconds`` when given), then ``fusion``), with the
    view subsets of :data:`ABLATIONS` of the model ``ours`` used and, when it was adapted, the model as given (row
    ``not adapted``) if ``ablations``, and with ``compare_model`` (row ``compare``, as given), and score each
    against the truth (metrics on ``device``, CPU by default). ``seed`` also draws the noise of ``blur-noise``.

    Returns a JSON-serialisable dict: the setting, the thick input's slice geometry, the models used and, per
    method in table order, the metrics of :data:`METRICS` and ``seconds`` (wall time of the reconstruction;
    ``ours`` also has ``adapt_seconds`` (spent), ``adapted_steps`` and, when adapted, ``adapt_seed`` and
    ``adapt_capped``). With ``with_disagreement`` the ``ours`` run also computes the cross-view disagreement map
    (inside its timing). ``progress(line)`` is called after each method; ``sink(name, volume)`` receives the
    truth, every output and the disagreement map.
    """
    unknown = [name for name in methods if name not in BASELINES]
    if unknown:
        raise InputError(f"unknown method {unknown[0]!r}: choose from {', '.join(BASELINES)}")
    if model is None and (ablations or with_disagreement):
        raise InputError("ablations and the disagreement map need a model")
    for chosen in (model, compare_model):
        if chosen is not None and chosen.scale != scale:
            raise InputError(f"model {chosen.model_id} was trained for ×{chosen.scale}, not ×{scale}")
    truth, thick = simulate_thick(thin_hu, scale, axis, degradation, seed)
    if sink is not None:
        sink("truth", truth)
    thick_spacing = None
    if spacing is not None:
        thick_spacing = [float(value) for value in spacing]
        thick_spacing[axis] *= scale
    geometry = slice_geometry(thick, axis, thick_spacing, slice_thickness) if thick_spacing is not None else None
    scores: Dict[str, Dict[str, float]] = {}

    def record(name: str, started: float, output: np.ndarray, disagreement: Optional[np.ndarray] = None) -> None:
        seconds = time.perf_counter() - started
        scores[name] = {**score_volume(output, truth, scale, axis, device), "seconds": seconds}
        if sink is not None:
            sink(name, output)
            if disagreement is not None:
                sink("disagreement", disagreement)
        if progress is not None:
            score = scores[name]
            progress(f"{name}: PSNR {score['psnr_all']:.2f} dB, SSIM {score['ssim_mean']:.4f}, {seconds:.1f} s")

    for name in (name for name in BASELINES if name in methods):
        started = time.perf_counter()
        record(name, started, BASELINES[name](thick, scale, axis))
    order = list(scores)
    if model is not None:
        started = time.perf_counter()
        scan = synthesize_scan(
            thick, axis, model, geometry, fusion=fusion,
            adapt_steps=adapt_steps if geometry is not None else 0, adapt_seconds=adapt_seconds, seed=seed,
            with_disagreement=with_disagreement,
        )
        record(OURS, started, scan.result.volume, scan.result.disagreement)
        scores[OURS].update(adapt_seconds=scan.adapt_seconds, adapted_steps=scan.adapted_steps)
        if scan.adaptation is not None:
            scores[OURS].update(adapt_seed=scan.adaptation.seed, adapt_capped=scan.adaptation.capped)
        if fusion == "calibrated" and progress is not None:
            progress(scan.calibration_summary)
        if ablations:
            order += _ablation_rows(thick, scale, axis, scan.model, model if scan.adapted_steps else None,
                                    record, progress)
        order.append(OURS)
    if compare_model is not None:
        started = time.perf_counter()
        record(COMPARE, started, synthesize_volume(thick, scale, compare_model, axis=axis).volume)
        order.append(COMPARE)
    models = {OURS: model, COMPARE: compare_model}
    return {
        "scale": scale,
        "axis": axis,
        "degradation": degradation,
        "seed": seed,
        "truth_shape": list(truth.shape),
        "thick_shape": list(thick.shape),
        "slice_geometry": _describe_geometry(geometry),
        "synthesized_slices": int(len(synthesized_indices(truth.shape[axis], scale))),
        "models": {role: describe_model(m) for role, m in models.items() if m is not None},
        "methods": {name: scores[name] for name in order},
    }


def _ablation_rows(
    thick: np.ndarray,
    scale: int,
    axis: int,
    model: SynthesisModel,
    unadapted: Optional[SynthesisModel],
    record: Callable[..., None],
    progress: Optional[Progress],
) -> list:
    """Score each view subset of :data:`ABLATIONS` with ``model`` and, when given, the ``unadapted`` model with
    eq. 7; returns the row names in order."""
    rows = []
    for name, views in ABLATIONS.items():
        started = time.perf_counter()
        weights = None
        if name == "calibrated":
            weights, summary = calibrated_weights(thick, model, axis=axis)
            if progress is not None:
                progress(summary)
        record(name, started, synthesize_volume(thick, scale, model, axis=axis, views=views, fusion=weights).volume)
        rows.append(name)
    if unadapted is not None:
        started = time.perf_counter()
        record(UNADAPTED, started, synthesize_volume(thick, scale, unadapted, axis=axis).volume)
        rows.append(UNADAPTED)
    return rows


def _describe_geometry(geometry) -> Optional[Dict[str, Any]]:
    if geometry is None:
        return None
    return {
        "spacing_mm": geometry.spacing_mm,
        "thickness_mm": geometry.thickness_mm,
        "thickness_source": geometry.thickness_source,
        "in_plane_mm": list(geometry.in_plane_mm),
    }


def describe_model(model: SynthesisModel) -> Dict[str, Any]:
    """Identity of a model for reports: id, preset, scale, weights hash and device."""
    return {
        "id": model.model_id,
        "preset": model.preset,
        "scale": model.scale,
        "sha256": model.sha256,
        "device": str(model.device),
    }
