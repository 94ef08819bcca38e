"""Child process of the benchmark: training steps per second for one preset at the default patch and batch.

Usage: ``python training_child.py PRESET STEPS THREADS`` — prints one JSON line with the timing.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "CTSliceSynthesis"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from CTSliceSynthesisLib.training.data import TrainingVolume  # noqa: E402
from CTSliceSynthesisLib.training.trainer import Trainer, TrainConfig  # noqa: E402
from phantom import phantom_volume  # noqa: E402


STAGE_FRACTIONS = {"pint": (1.0, 0.0), "sint": (0.0, 1.0), "joint": (0.0, 0.0)}  # (pint_fraction, sint_fraction)


def main(preset: str, steps: str, device: str, stage: str = "joint") -> None:
    """One warm-up step, then ``steps`` timed steps of ``stage`` with default settings on a 5 mm phantom."""
    volume = TrainingVolume("phantom", phantom_volume(48, size=320).transpose(2, 0, 1).copy(), 5.0, (0.8, 0.8))
    pint_fraction, sint_fraction = STAGE_FRACTIONS[stage]
    config = TrainConfig(preset=preset, scale=2, steps=int(steps) + 1, checkpoint_every=10**6,
                         pint_fraction=pint_fraction, sint_fraction=sint_fraction)
    trainer = Trainer(config, [volume], None, device=torch.device(device))
    trainer.train_step()
    if device == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(int(steps)):
        trainer.train_step()
    if device == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - started
    print(json.dumps({
        "preset": preset,
        "stage": stage,
        "steps_per_s": int(steps) / elapsed,
        "patches_per_step": config.pair_batch if stage == "pint" else config.batch_size,
        "patch": config.patch,
        "batch": config.batch_size,
        "window": config.window,
        "activation_checkpointing": config.uses_activation_checkpointing,
    }))


if __name__ == "__main__":
    main(*sys.argv[1:5])
