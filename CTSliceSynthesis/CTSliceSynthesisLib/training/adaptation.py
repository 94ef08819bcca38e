""""Adapt to this scan": self-supervised fine-tuning on the volume to be synthesized, for a number of steps.

The scan's own axial images become scale-matched pairs for PInt at the scan's exact geometry: its slice spacing,
its pixel size, and its slice thickness when known (else the range of thicknesses of ``training.profiles``).
No thin-slice data is needed. SInt-A keeps its weights; the synthesis fuses it with the adapted PInt.

The budget is a number of steps and the learning-rate schedule is defined over those steps, and the random pairs
come from generators seeded by ``seed`` and the step (never from global random state), so the same input, options
and thread count give the same weights, however busy the machine. A wall-time cap is optional: a run it stops
before its steps is not reproducible, and :class:`AdaptedNetworks` says so (``capped``).

It takes and returns networks; the caller makes them ready for inference (``inference.pipeline`` does, with
``inference.model_store.prepare_model``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from ..core.callbacks import CancelCheck, ProgressCallback
from ..core.config import DEFAULT_ADAPT_STEPS, DEFAULT_SEED
from ..core.errors import InputError
from ..nets import SynthesisNetworks
from .data import TrainingVolume
from .pairs import MIN_ROWS
from .trainer import TrainConfig, Trainer

# Fine-tuning settings (measured on the evaluation volumes; see the README): PInt alone, 32 pairs of 48 × 12 per
# step, Adam at 3e-4 for the first 70 % of the steps and 3e-5 after (a schedule in steps, not in time).
ADAPT_LEARNING_RATE = 3e-4
ADAPT_DECAY_FRACTION = 0.7
ADAPT_PAIR_BATCH = 32
ADAPT_PAIR_COLUMNS = 12
# The stage text of the progress reports (constant: progress is the fraction of the steps, not a line per step).
ADAPT_STAGE = "adapting to this scan"


@dataclass
class AdaptedNetworks:
    """Networks fine-tuned on one volume (in training mode) and how: the steps taken out of ``planned``, the
    ``seed`` of the random pairs, and whether the wall-time cap stopped the run early (``capped``: then the
    result depends on the machine's speed and load, and is not reproducible)."""

    networks: SynthesisNetworks
    steps: int
    planned: int = DEFAULT_ADAPT_STEPS
    seed: int = DEFAULT_SEED
    capped: bool = False


def adapt_to_volume(
    networks: SynthesisNetworks,
    volume: np.ndarray,
    *,
    axis: int,
    spacing: Sequence[float],
    thickness: Optional[float],
    device: torch.device,
    steps: int = DEFAULT_ADAPT_STEPS,
    seed: int = DEFAULT_SEED,
    time_cap_s: Optional[float] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelCheck] = None,
) -> AdaptedNetworks:
    """Fine-tune a copy of ``networks``' PInt on ``volume`` (HU, thick axis ``axis``, voxel ``spacing`` in mm
    for the three axes) for ``steps`` steps, with random pairs drawn from ``seed``.

    ``thickness`` is the slice thickness in mm when known. The learning rate drops ×0.1 after 70 % of ``steps``.
    ``time_cap_s`` (optional) stops the run after that many seconds even before its steps: the schedule stays
    the one of ``steps``, so a capped run is the start of the full one. ``progress(fraction, ADAPT_STAGE)``
    follows the steps. The networks given, and the global random state, are left unchanged.
    """
    if steps < 1:
        raise InputError("adaptation needs at least 1 step")
    data = np.ascontiguousarray(np.moveaxis(volume, axis, 0))
    slices, height, width = data.shape
    if min(height, width) <= MIN_ROWS or slices < 2:
        raise InputError(f"the volume is too small to adapt to (needs 2 slices and {MIN_ROWS + 1} pixels in-plane)")
    in_plane = tuple(float(spacing[a]) for a in range(3) if a != axis % 3)
    target = TrainingVolume("input", data, float(spacing[axis]), in_plane, thickness)  # type: ignore[arg-type]
    config = TrainConfig(
        preset=networks.config.preset,
        scale=networks.scale,
        steps=int(steps),
        learning_rate=ADAPT_LEARNING_RATE,
        decay_fraction=ADAPT_DECAY_FRACTION,
        pint_fraction=1.0,
        sint_fraction=0.0,
        pair_batch=ADAPT_PAIR_BATCH,
        pair_columns=ADAPT_PAIR_COLUMNS,
        pair_geometry="volume",
        seed=int(seed),
    )

    def report(record: dict) -> None:
        if progress is not None:
            progress(trainer.fraction_done(), ADAPT_STAGE)

    # The trainer seeds torch's global generator (for fresh networks); the pairs use their own generators. Fork
    # the global state so that adaptation neither depends on it nor changes it for the code that runs after.
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        trainer = Trainer(config, [target], None, device, copy.deepcopy(networks))
        if progress is not None:
            progress(0.0, ADAPT_STAGE)
        trainer.run(time_budget_s=time_cap_s if time_cap_s else None, cancel=cancel, on_step=report)
    return AdaptedNetworks(trainer.networks, trainer.step, int(steps), int(seed), trainer.step < steps)
