""""Adapt to this scan": self-supervised fine-tuning on the volume to be synthesized, under a time budget.

It takes and returns networks; the caller makes them ready for inference (``inference.pipeline`` does, with
``inference.model_store.prepare_model``).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from ..core.callbacks import CancelCheck, ProgressCallback
from ..core.errors import InputError
from ..nets import SynthesisNetworks
from .data import TrainingVolume, default_window
from .trainer import TrainConfig, Trainer

ADAPT_LEARNING_RATE = 1e-5
ADAPT_PATCH = 128


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
    device: torch.device,
    time_budget_s: float,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelCheck] = None,
    seed: int = 0,
) -> AdaptedNetworks:
    """Fine-tune a copy of ``networks`` on ``volume`` itself (no ground truth needed) for ``time_budget_s``
    seconds on ``device``.

    The volume is its own training data: windows of its slices are down-sampled again and interpolated back,
    with the cross-view distillation, exactly as in training. The networks given are left unchanged.
    """
    scale = networks.scale
    data = np.ascontiguousarray(np.moveaxis(volume, axis, 0))
    slices, height, width = data.shape
    window = min(default_window(scale), ((slices - 1) // scale) * scale + 1)
    block = networks.config.sint.block
    patch = min(ADAPT_PATCH, (min(height, width) // block) * block)
    if window < 2 * scale + 1 or patch < 2 * block:
        raise InputError(
            f"the volume is too small to adapt to (needs {2 * scale + 1} slices and {2 * block}×{2 * block} pixels)"
        )
    config = TrainConfig(
        preset=networks.config.preset,
        scale=scale,
        steps=10**9,
        window=window,
        patch=patch,
        region=max(height, width),
        learning_rate=ADAPT_LEARNING_RATE,
        decay_fraction=1.0,
        seed=seed,
    )
    trainer = Trainer(config, [TrainingVolume("input", data, 0.0)], None, device, copy.deepcopy(networks))
    started = time.monotonic()

    def report(record: dict) -> None:
        if progress is not None:
            elapsed = time.monotonic() - started
            progress(min(elapsed / time_budget_s, 1.0), f"adapting to this scan: step {int(record['step'])}")

    trainer.run(time_budget_s=time_budget_s, cancel=cancel, on_step=report)
    return AdaptedNetworks(trainer.networks, trainer.step)
