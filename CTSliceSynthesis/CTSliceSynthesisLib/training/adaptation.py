""""Adapt to this scan": self-supervised fine-tuning on the volume to be synthesized, under a time budget.

The scan's own axial images become scale-matched pairs for PInt at the scan's exact geometry: its slice spacing,
its pixel size, and its slice thickness when known (else the range of thicknesses of ``training.profiles``).
No thin-slice data is needed. SInt-A keeps its weights; the synthesis fuses it with the adapted PInt.

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
from ..core.errors import InputError
from ..nets import SynthesisNetworks
from .data import TrainingVolume
from .pairs import MIN_ROWS
from .trainer import TrainConfig, Trainer

# Fine-tuning settings (measured on the evaluation volumes; see the README): PInt alone, 32 pairs of 48 × 12 per
# step, Adam at 3e-4 for the first 70 % of the budget and 3e-5 after.
ADAPT_LEARNING_RATE = 3e-4
ADAPT_DECAY_FRACTION = 0.7
ADAPT_PAIR_BATCH = 32
ADAPT_PAIR_COLUMNS = 12


@dataclass
class AdaptedNetworks:
    """Networks fine-tuned on one volume (in training mode) and the number of steps it took."""

    networks: SynthesisNetworks
    steps: int


def adapt_to_volume(
    networks: SynthesisNetworks,
    volume: np.ndarray,
    *,
    axis: int,
    spacing: Sequence[float],
    thickness: Optional[float],
    device: torch.device,
    time_budget_s: float,
    max_steps: Optional[int] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelCheck] = None,
    seed: int = 0,
) -> AdaptedNetworks:
    """Fine-tune a copy of ``networks``' PInt on ``volume`` (HU, thick axis ``axis``, voxel ``spacing`` in mm
    for the three axes) for ``time_budget_s`` seconds, or ``max_steps`` steps if that comes first.

    ``thickness`` is the slice thickness in mm when known. The learning rate drops ×0.1 after 70 % of the budget
    (by time or by steps, whichever is further along). The networks given are left unchanged.
    """
    data = np.ascontiguousarray(np.moveaxis(volume, axis, 0))
    slices, height, width = data.shape
    if min(height, width) <= MIN_ROWS or slices < 2:
        raise InputError(f"the volume is too small to adapt to (needs 2 slices and {MIN_ROWS + 1} pixels in-plane)")
    in_plane = tuple(float(spacing[a]) for a in range(3) if a != axis % 3)
    target = TrainingVolume("input", data, float(spacing[axis]), in_plane, thickness)  # type: ignore[arg-type]
    config = TrainConfig(
        preset=networks.config.preset,
        scale=networks.scale,
        steps=max_steps if max_steps is not None else 10**9,
        learning_rate=ADAPT_LEARNING_RATE,
        decay_fraction=ADAPT_DECAY_FRACTION,
        pint_fraction=1.0,
        sint_fraction=0.0,
        pair_batch=ADAPT_PAIR_BATCH,
        pair_columns=ADAPT_PAIR_COLUMNS,
        pair_geometry="volume",
        seed=seed,
    )
    trainer = Trainer(config, [target], None, device, copy.deepcopy(networks))

    def report(record: dict) -> None:
        if progress is not None:
            progress(trainer.fraction_done(), f"adapting to this scan: step {int(record['step'])}")

    trainer.run(time_budget_s=time_budget_s, cancel=cancel, on_step=report, schedule_by_time=True)
    return AdaptedNetworks(trainer.networks, trainer.step)
