"""Self-supervised training: window sampling (``data``), the loss terms (``losses``), the full objective
(``objective``), the trainer with checkpoints, resume and DDP (``trainer``) and adaptation to the scan being
synthesized (``adaptation``). Imports ``core``, ``nets`` and ``io``."""

from .adaptation import AdaptedNetworks, adapt_to_volume
from .data import TrainingVolume, WindowSampler, default_window, find_volumes, load_volume
from .losses import WaveletDetailLoss, pixel_loss, truncated_consistency
from .objective import LossConfig, TrainingObjective
from .trainer import DistributedContext, TrainConfig, Trainer, init_distributed, resume_payload

__all__ = [
    "AdaptedNetworks",
    "DistributedContext",
    "LossConfig",
    "TrainConfig",
    "Trainer",
    "TrainingObjective",
    "TrainingVolume",
    "WaveletDetailLoss",
    "WindowSampler",
    "adapt_to_volume",
    "default_window",
    "find_volumes",
    "init_distributed",
    "load_volume",
    "pixel_loss",
    "resume_payload",
    "truncated_consistency",
]
