"""Per-volume fusion weights from the volume's own evidence (self-supervised, no ground truth needed).

The input's slices are thinned once more by r, synthesized back with every candidate (SInt-A, PInt-C, PInt-S,
linear and cubic interpolation along z), and compared with the slices that were held out. The weights that
best reproduce those slices, under the constraint that they are non-negative and sum to 1, are used to fuse
the full-resolution synthesis. A net that does not help on this volume gets little weight, and where none
helps the output falls back to the better classical interpolation.

Calibration runs :func:`synthesize_volume`; callers that want calibrated fusion fit the weights here first and
pass them to the synthesis (``fusion=``), which knows nothing of calibration.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import numpy as np

from ..core.callbacks import CancelCheck
from ..core.intensity import HU_MAX, HU_MIN
from ..core.interpolation import upsample_cubic, upsample_linear
from .fusion import CANDIDATES, VIEWS, FusionWeights
from .model_store import SynthesisModel
from .synthesis import synthesize_volume

# Calibration works on a central in-plane crop of at most this size and on at most this many thinned slices:
# enough voxels to fit five weights, a small fraction of the synthesis time.
CALIBRATION_CROP = 192
CALIBRATION_MAX_SLICES = 33


@dataclass
class Calibration:
    """The fitted weights and what they rest on: PSNR (dB, held-out slices) of every candidate and of the mix."""

    weights: FusionWeights
    psnr: Dict[str, float] = field(default_factory=dict)
    held_out_slices: int = 0
    note: str = ""


def fit_weights(candidates: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Least-squares weights on the probability simplex, exactly.

    ``candidates (K, N)``, ``truth (N,)`` → ``w (K,)`` with ``w ≥ 0``, ``Σ w = 1`` minimising
    ``‖wᵀ candidates − truth‖² = wᵀ Q w`` with ``Q`` the Gram matrix of the errors ``candidates − truth``.
    Every support set is tried (K is 5): on a support the optimum solves the KKT system
    ``[[Q, 1], [1ᵀ, 0]] [w, μ] = [0, 1]`` (least squares, so equal candidates are fine); the best one with
    non-negative weights wins. Float64 throughout.
    """
    errors = candidates.astype(np.float64) - truth.astype(np.float64)[None]
    gram = errors @ errors.T
    count = len(gram)
    best, best_value = np.eye(count)[int(np.argmin(np.diag(gram)))], float(np.min(np.diag(gram)))
    for support in itertools.chain.from_iterable(itertools.combinations(range(count), k) for k in range(2, count + 1)):
        index = list(support)
        system = np.ones((len(index) + 1, len(index) + 1))
        system[:-1, :-1], system[-1, -1] = gram[np.ix_(index, index)], 0.0
        right = np.zeros(len(index) + 1)
        right[-1] = 1.0
        weights = np.zeros(count)
        weights[index] = np.linalg.lstsq(system, right, rcond=None)[0][:-1]
        value = float(weights @ gram @ weights)
        if weights.min() >= -1e-12 and abs(weights.sum() - 1.0) < 1e-9 and value < best_value:
            best, best_value = np.maximum(weights, 0.0) / np.maximum(weights, 0.0).sum(), value
    return best


def calibrate_fusion(source: np.ndarray, model: SynthesisModel, cancel: Optional[CancelCheck] = None) -> Calibration:
    """Fit :class:`FusionWeights` for the z-first volume ``source (S, H, W)`` (HU) and ``model``.

    Falls back to eq. 7 (equal views) when the volume has too few slices to hold any out (fewer than 2r + 1).
    """
    scale = model.scale
    usable = ((source.shape[0] - 1) // scale) * scale + 1
    if usable < 2 * scale + 1:
        return Calibration(FusionWeights(), note=f"too few slices to calibrate ({source.shape[0]}): eq. 7 weights")
    first = max(0, (usable // scale - CALIBRATION_MAX_SLICES) // 2) * scale
    last = min(usable, first + (CALIBRATION_MAX_SLICES - 1) * scale + 1)
    truth = _central_crop(source[first:last]).astype(np.float32)
    thinned = truth[::scale]
    held_out = np.arange(truth.shape[0]) % scale != 0
    outputs: Dict[str, np.ndarray] = {
        view: synthesize_volume(thinned, scale, model, axis=0, views=(view,), cancel=cancel).volume for view in VIEWS
    }
    outputs["linear"] = upsample_linear(thinned, scale, axis=0)
    outputs["cubic"] = upsample_cubic(thinned, scale, axis=0)
    stacked = np.stack([_unit(outputs[name][held_out]).ravel() for name in CANDIDATES])
    target = _unit(truth[held_out]).ravel()
    weights = fit_weights(stacked, target)
    psnr = {name: _psnr(stacked[k], target) for k, name in enumerate(CANDIDATES)}
    psnr["calibrated"] = _psnr(weights @ stacked, target)
    fitted = FusionWeights(**dict(zip(CANDIDATES, (float(w) for w in weights / weights.sum()))))
    return Calibration(fitted, psnr, int(held_out.sum()))


def _central_crop(volume: np.ndarray) -> np.ndarray:
    _, height, width = volume.shape
    top, left = max(0, (height - CALIBRATION_CROP) // 2), max(0, (width - CALIBRATION_CROP) // 2)
    return volume[:, top : top + CALIBRATION_CROP, left : left + CALIBRATION_CROP]


def _unit(hu: np.ndarray) -> np.ndarray:
    return (np.clip(hu.astype(np.float64), HU_MIN, HU_MAX) - HU_MIN) / float(HU_MAX - HU_MIN)


def _psnr(prediction: np.ndarray, truth: np.ndarray) -> float:
    mse = float(np.mean((prediction - truth) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


def describe(calibration: Calibration) -> str:
    """One line for logs: the weights and the held-out PSNR of the mix against the best single candidate."""
    weights = ", ".join(f"{name} {value:.2f}" for name, value in calibration.weights.as_dict().items())
    if not calibration.psnr:
        return f"fusion weights: {weights} ({calibration.note})"
    best: Optional[str] = max(CANDIDATES, key=lambda name: calibration.psnr[name])
    return (
        f"fusion weights: {weights}; held-out PSNR {calibration.psnr['calibrated']:.2f} dB "
        f"(best single: {best} {calibration.psnr[best]:.2f} dB)"
    )


def calibrated_weights(
    volume: np.ndarray, model: SynthesisModel, *, axis: int, cancel: Optional[CancelCheck] = None
) -> Tuple[FusionWeights, str]:
    """The weights to pass as :func:`synthesize_volume`'s ``fusion`` for ``volume`` (HU, thick axis ``axis``),
    and their one-line :func:`describe` summary for logs."""
    calibration = calibrate_fusion(np.moveaxis(volume, axis, 0), model, cancel)
    return calibration.weights, describe(calibration)
