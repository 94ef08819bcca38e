"""The full training objective: single-view internal learning + incremental cross-view mutual distillation.

``L = Σ_{v∈{a,c,s}} L_v^int + 0.15·(L_c^cmd + L_s^cmd) + 0.1·(L_com + L_sep)`` (spec §7). ``loss_mode="paper"``
is the spec's recommended column (MSE, wavelet weight 1, 1/N averaging, γ = 25 %); ``loss_mode="code"``
reproduces the authors' released code (L1, wavelet weight 0.1, sum over levels, fixed top-k counts, PInt
internal loss over all slices).

PInt's internal terms come from scale-matched in-plane pairs (``pint_pairs="inplane"``, see ``training.pairs``;
the coronal term from pairs along the image's last axis, the sagittal one from its first) or, as in the paper,
from the window thinned once more by r (``"z"``). Training runs in stages (:data:`STAGES`): ``pint`` (PInt's
internal terms alone), ``sint`` (SInt-A's internal term and memory losses alone) and ``joint`` (everything,
with the cross-view distillation that carries PInt's scale into SInt-A and back).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, Optional, Tuple

import torch
from torch import nn

from ..nets import SynthesisNetworks
from ..nets.views import insert_slices, interpolate_axial, interpolate_coronal, interpolate_sagittal, new_positions
from .losses import WaveletDetailLoss, pixel_loss, truncated_consistency

LOSS_MODES = ("paper", "code")
# Who learns from whom in the cross-view terms: both ways (the paper), or SInt-A from PInt alone (PInt's outputs
# are constants there), for when PInt is the better-informed teacher (scale-matched pairs).
DISTILLATIONS = ("mutual", "from-pint")
STAGES = ("pint", "sint", "joint")
PINT_PAIRS = ("inplane", "z")
TERMS = (
    "internal_axial",
    "internal_coronal",
    "internal_sagittal",
    "cmd_coronal",
    "cmd_sagittal",
    "compactness",
    "separateness",
)
Pairs = Tuple[torch.Tensor, torch.Tensor]
# The authors' fixed top-k counts per level (spec §6.4); ×5 and ×6, beyond the paper, keep ×3 and ×4's.
CODE_TOPK_COUNTS = {2: (5000, 2000), 3: (5000, 5000), 4: (5000, 5000), 5: (5000, 5000), 6: (5000, 5000)}


@dataclass(frozen=True)
class LossConfig:
    """Weights and switches of the objective."""

    mode: str = "paper"
    levels: int = 2
    gamma: float = 0.25
    cmd_weight: float = 0.15
    memory_weight: float = 0.1
    distillation: str = "mutual"

    def __post_init__(self) -> None:
        if self.mode not in LOSS_MODES:
            raise ValueError(f"loss_mode must be one of {LOSS_MODES}, got {self.mode!r}")
        if self.distillation not in DISTILLATIONS:
            raise ValueError(f"distillation must be one of {DISTILLATIONS}, got {self.distillation!r}")
        if self.cmd_weight < 0:
            raise ValueError(f"the cross-view weight must not be negative, got {self.cmd_weight}")
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
    """Computes the loss terms of one training step of a given stage.

    Inputs: windows of volumes ``V (B, S, H, W)`` in [0, 1] with ``S ≡ 1 (mod r)`` (SInt-A's terms, the
    distillation, and PInt's terms with ``"z"`` pairs) and in-plane pairs ``(low (N, 1, A, L), target (N, 1, A,
    r(L − 1) + 1))`` (PInt's terms with ``"inplane"`` pairs; the first half of the batch counts as coronal). The
    module owns the networks, so DDP can wrap it and see one forward per step.
    """

    def __init__(self, networks: SynthesisNetworks, config: LossConfig, pint_pairs: str = "inplane") -> None:
        super().__init__()
        if pint_pairs not in PINT_PAIRS:
            raise ValueError(f"pint_pairs must be one of {PINT_PAIRS}, got {pint_pairs!r}")
        self.networks = networks
        self.config = config
        self.pint_pairs = pint_pairs
        self.wavelet = WaveletDetailLoss()

    def _internal(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pixel = pixel_loss(prediction, target, self.config.pixel_kind)
        return pixel + self.config.wavelet_weight * self.wavelet(prediction, target)

    def _consistency(self, first: torch.Tensor, second: torch.Tensor, level: int) -> torch.Tensor:
        if self.config.mode == "code":
            return truncated_consistency(first, second, count=CODE_TOPK_COUNTS[self.networks.scale][level - 1])
        return truncated_consistency(first, second, fraction=self.config.gamma)

    def axial_internal(self, volume: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """SInt-A interpolates ``V↓ = V[:, ::r]`` back to ``V``: ``(L_a, compactness, separateness)``."""
        scale = self.networks.scale
        _check_window(volume, scale)
        synthesized = new_positions(volume.shape[1], scale, volume.device)
        axial, compactness, separateness = interpolate_axial(self.networks.sint, volume[:, ::scale])
        if compactness is None or separateness is None:
            raise RuntimeError("the objective needs the networks in training mode (memory losses missing)")
        return self._internal(axial, volume[:, synthesized]), compactness, separateness

    def pixel_internal_z(self, volume: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """The paper's PInt terms: coronal and sagittal images of ``V↓`` interpolated back to ``V``."""
        scale = self.networks.scale
        _check_window(volume, scale)
        low = volume[:, ::scale]
        coronal = interpolate_coronal(self.networks.pint, low)
        sagittal = interpolate_sagittal(self.networks.pint, low)
        if self.config.mode == "code":  # PInt's internal loss over all slices (copies add zero error)
            return self._internal(coronal, volume), self._internal(sagittal, volume)
        synthesized = new_positions(volume.shape[1], scale, volume.device)
        target = volume[:, synthesized]
        return self._internal(coronal[:, synthesized], target), self._internal(sagittal[:, synthesized], target)

    def pixel_internal_inplane(self, pairs: Pairs) -> Tuple[torch.Tensor, torch.Tensor]:
        """PInt's terms on scale-matched pairs: the first half of the batch (coronal-like), then the second."""
        low, target = pairs
        half = (low.shape[0] + 1) // 2
        if half == low.shape[0]:  # a single pair: it serves both terms
            term = self._pair_internal(low, target)
            return term, term
        return self._pair_internal(low[:half], target[:half]), self._pair_internal(low[half:], target[half:])

    def _pair_internal(self, low: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Pixel loss on the synthesized columns (all columns in ``code`` mode), wavelet loss on whole images.

        The target's acquired columns are replaced by the input there (PInt passes them through), so they add
        no error to either term.
        """
        scale = self.networks.scale
        prediction = self.networks.pint(low)
        target = target.clone()
        target[..., ::scale] = low.to(target.dtype)
        if self.config.mode == "code":
            return self._internal(prediction, target)
        synthesized = new_positions(target.shape[-1], scale, target.device)
        pixel = pixel_loss(prediction[..., synthesized], target[..., synthesized], self.config.pixel_kind)
        return pixel + self.config.wavelet_weight * self.wavelet(prediction, target)

    def distillation(self, volume: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Incremental cross-view mutual distillation from ``V`` up: ``(L_c^cmd, L_s^cmd)`` and the memory losses
        of the last SInt-A call."""
        scale, levels = self.networks.scale, self.config.levels
        _check_window(volume, scale)
        axial = coronal = sagittal = volume
        cmd_c = cmd_s = volume.new_zeros((), dtype=torch.float32)
        compactness = separateness = None
        # From PInt alone, PInt's views are constants: computed without a graph (no backward pass through them).
        teacher_grad = self.config.distillation == "mutual" and torch.is_grad_enabled()
        for level in range(1, levels + 1):
            new, compactness, separateness = interpolate_axial(self.networks.sint, axial)
            axial = insert_slices(axial, new, scale)
            with torch.set_grad_enabled(teacher_grad):
                coronal = interpolate_coronal(self.networks.pint, coronal)
                sagittal = interpolate_sagittal(self.networks.pint, sagittal)
            synthesized = new_positions(axial.shape[1], scale, volume.device)
            cmd_c = cmd_c + self._consistency(new, coronal[:, synthesized], level)
            cmd_s = cmd_s + self._consistency(new, sagittal[:, synthesized], level)
        if self.config.mode == "paper":
            cmd_c, cmd_s = cmd_c / levels, cmd_s / levels
        if compactness is None or separateness is None:
            raise RuntimeError("the objective needs the networks in training mode (memory losses missing)")
        return cmd_c, cmd_s, compactness, separateness

    def forward(
        self, volume: Optional[torch.Tensor] = None, pairs: Optional[Pairs] = None, stage: str = "joint"
    ) -> Dict[str, torch.Tensor]:
        """Every term of :data:`TERMS` (zero where the stage has none) and their weighted ``total``."""
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
        reference = volume if volume is not None else pairs[0]
        zero = reference.new_zeros((), dtype=torch.float32)
        terms = {name: zero for name in TERMS}
        if stage in ("pint", "joint"):
            if self.pint_pairs == "inplane":
                if pairs is None:
                    raise ValueError("in-plane pairs are needed for PInt's internal terms")
                coronal, sagittal = self.pixel_internal_inplane(pairs)
            else:
                coronal, sagittal = self.pixel_internal_z(volume)
            terms.update(internal_coronal=coronal, internal_sagittal=sagittal)
        if stage in ("sint", "joint"):
            axial, compactness, separateness = self.axial_internal(volume)
            terms.update(internal_axial=axial, compactness=compactness, separateness=separateness)
        if stage == "joint":
            cmd_c, cmd_s, compactness, separateness = self.distillation(volume)
            terms.update(cmd_coronal=cmd_c, cmd_sagittal=cmd_s, compactness=compactness, separateness=separateness)
        total = (
            terms["internal_axial"]
            + terms["internal_coronal"]
            + terms["internal_sagittal"]
            + self.config.cmd_weight * (terms["cmd_coronal"] + terms["cmd_sagittal"])
            + self.config.memory_weight * (terms["compactness"] + terms["separateness"])
        )
        return {"total": total, **terms}


def _check_window(volume: Optional[torch.Tensor], scale: int) -> None:
    if volume is None:
        raise ValueError("this stage needs windows of volumes")
    if (volume.shape[1] - 1) % scale:
        raise ValueError(f"training windows need S ≡ 1 (mod {scale}) slices, got {volume.shape[1]}")
