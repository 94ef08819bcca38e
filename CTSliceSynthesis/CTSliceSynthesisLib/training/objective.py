"""The full training objective: single-view internal learning + incremental cross-view mutual distillation.

``L = Σ_{v∈{a,c,s}} L_v^int + 0.15·(L_c^cmd + L_s^cmd) + 0.1·(L_com + L_sep)`` (spec §7). ``loss_mode="paper"``
is the spec's recommended column (MSE, wavelet weight 1, 1/N averaging, γ = 25 %); ``loss_mode="code"``
reproduces the authors' released code (L1, wavelet weight 0.1, sum over levels, fixed top-k counts, PInt
internal loss over all slices).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, Tuple

import torch
from torch import nn

from ..nets import SynthesisNetworks
from ..nets.views import insert_slices, interpolate_axial, interpolate_coronal, interpolate_sagittal, new_positions
from .losses import WaveletDetailLoss, pixel_loss, truncated_consistency

LOSS_MODES = ("paper", "code")
# The authors' fixed top-k counts per level (spec §6.4).
CODE_TOPK_COUNTS = {2: (5000, 2000), 3: (5000, 5000), 4: (5000, 5000)}


@dataclass(frozen=True)
class LossConfig:
    """Weights and switches of the objective."""

    mode: str = "paper"
    levels: int = 2
    gamma: float = 0.25
    cmd_weight: float = 0.15
    memory_weight: float = 0.1

    def __post_init__(self) -> None:
        if self.mode not in LOSS_MODES:
            raise ValueError(f"loss_mode must be one of {LOSS_MODES}, got {self.mode!r}")
        if self.levels < 1:
            raise ValueError(f"need at least one incremental level, got {self.levels}")
        if not 0.0 < self.gamma <= 1.0:
            raise ValueError(f"gamma is a fraction in (0, 1], got {self.gamma}")

    @property
    def pixel_kind(self) -> str:
        """``"mse"`` (paper) or ``"l1"`` (code)."""
        return "mse" if self.mode == "paper" else "l1"

    @property
    def wavelet_weight(self) -> float:
        """1 (paper eq. 8–10) or 0.1 (code)."""
        return 1.0 if self.mode == "paper" else 0.1

    def to_dict(self) -> Dict[str, object]:
        """Plain-dict form for checkpoints."""
        return asdict(self)


class TrainingObjective(nn.Module):
    """Computes every loss term of one training step from a batch of volumes ``V (B, S, H, W)`` in [0, 1].

    ``S ≡ 1 (mod r)``. The module owns the networks, so DDP can wrap it and see one forward per step.
    """

    def __init__(self, networks: SynthesisNetworks, config: LossConfig) -> None:
        super().__init__()
        self.networks = networks
        self.config = config
        self.wavelet = WaveletDetailLoss()

    def _internal(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pixel = pixel_loss(prediction, target, self.config.pixel_kind)
        return pixel + self.config.wavelet_weight * self.wavelet(prediction, target)

    def _consistency(self, first: torch.Tensor, second: torch.Tensor, level: int) -> torch.Tensor:
        if self.config.mode == "code":
            return truncated_consistency(first, second, count=CODE_TOPK_COUNTS[self.networks.scale][level - 1])
        return truncated_consistency(first, second, fraction=self.config.gamma)

    def internal_terms(self, volume: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Stage 1: interpolate ``V↓ = V[:, ::r]`` back to ``V``; returns ``(L_a, L_c, L_s)``."""
        scale = self.networks.scale
        low = volume[:, ::scale]
        synthesized = new_positions(volume.shape[1], scale, volume.device)
        target = volume[:, synthesized]
        axial, _, _ = interpolate_axial(self.networks.sint, low)
        coronal = interpolate_coronal(self.networks.pint, low)
        sagittal = interpolate_sagittal(self.networks.pint, low)
        if self.config.mode == "code":  # PInt's internal loss over all slices (copies add zero error)
            return self._internal(axial, target), self._internal(coronal, volume), self._internal(sagittal, volume)
        return (
            self._internal(axial, target),
            self._internal(coronal[:, synthesized], target),
            self._internal(sagittal[:, synthesized], target),
        )

    def forward(self, volume: torch.Tensor) -> Dict[str, torch.Tensor]:
        scale, levels = self.networks.scale, self.config.levels
        if (volume.shape[1] - 1) % scale:
            raise ValueError(f"training windows need S ≡ 1 (mod {scale}) slices, got {volume.shape[1]}")
        internal_a, internal_c, internal_s = self.internal_terms(volume)

        axial = coronal = sagittal = volume
        cmd_c = cmd_s = volume.new_zeros((), dtype=torch.float32)
        compactness = separateness = volume.new_zeros((), dtype=torch.float32)
        for level in range(1, levels + 1):
            new, compactness, separateness = interpolate_axial(self.networks.sint, axial)
            axial = insert_slices(axial, new, scale)
            coronal = interpolate_coronal(self.networks.pint, coronal)
            sagittal = interpolate_sagittal(self.networks.pint, sagittal)
            synthesized = new_positions(axial.shape[1], scale, volume.device)
            cmd_c = cmd_c + self._consistency(new, coronal[:, synthesized], level)
            cmd_s = cmd_s + self._consistency(new, sagittal[:, synthesized], level)
        if self.config.mode == "paper":
            cmd_c, cmd_s = cmd_c / levels, cmd_s / levels
        if compactness is None or separateness is None:
            raise RuntimeError("the objective needs the networks in training mode (memory losses missing)")

        total = (
            internal_a
            + internal_c
            + internal_s
            + self.config.cmd_weight * (cmd_c + cmd_s)
            + self.config.memory_weight * (compactness + separateness)
        )
        return {
            "total": total,
            "internal_axial": internal_a,
            "internal_coronal": internal_c,
            "internal_sagittal": internal_s,
            "cmd_coronal": cmd_c,
            "cmd_sagittal": cmd_s,
            "compactness": compactness,
            "separateness": separateness,
        }
