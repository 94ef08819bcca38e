""""Adapt to this scan": self-supervised fine-tuning on the volume to be synthesized, under a time budget."""

from __future__ import annotations

import copy
import time
from typing import Callable, Optional

import numpy as np

from ..core.errors import InputError
from ..inference.model_store import SynthesisModel, _ready
from .data import TrainingVolume, default_window
from .trainer import TrainConfig, Trainer

ADAPT_LEARNING_RATE = 1e-5
ADAPT_PATCH = 128


def adapt_to_volume(
    model: SynthesisModel,
    volume: np.ndarray,
    *,
    axis: int,
    time_budget_s: float,
    progress: Optional[Callable[[float, str], None]] = None,
    cancel: Optional[Callable[[], bool]] = None,
    seed: int = 0,
) -> SynthesisModel:
    """Fine-tune a copy of ``model`` on ``volume`` itself (no ground truth needed) for ``time_budget_s`` seconds.

    The volume is its own training data: windows of its slices are down-sampled again and interpolated back,
    with the cross-view distillation, exactly as in training. The input model is left unchanged.
    """
    scale = model.scale
    data = np.ascontiguousarray(np.moveaxis(volume, axis, 0))
    slices, height, width = data.shape
    window = min(default_window(scale), ((slices - 1) // scale) * scale + 1)
    block = model.networks.config.sint.block
    patch = min(ADAPT_PATCH, (min(height, width) // block) * block)
    if window < 2 * scale + 1 or patch < 2 * block:
        raise InputError(
            f"the volume is too small to adapt to (needs {2 * scale + 1} slices and {2 * block}×{2 * block} pixels)"
        )
    config = TrainConfig(
        preset=model.preset,
        scale=scale,
        steps=10**9,
        window=window,
        patch=patch,
        region=max(height, width),
        learning_rate=ADAPT_LEARNING_RATE,
        decay_fraction=1.0,
        seed=seed,
    )
    trainer = Trainer(config, [TrainingVolume("input", data, 0.0)], None, model.device, copy.deepcopy(model.networks))
    started = time.monotonic()

    def report(record: dict) -> None:
        if progress is not None:
            elapsed = time.monotonic() - started
            progress(min(elapsed / time_budget_s, 1.0), f"adapting to this scan: step {int(record['step'])}")

    trainer.run(show_progress=False, time_budget_s=time_budget_s, cancel=cancel, on_step=report)
    return _ready(trainer.networks, f"{model.model_id}+adapted{trainer.step}", None, model.device)
