"""The pair of interpolators trained and used together."""

from __future__ import annotations

from torch import nn

from ..core.config import ModelConfig
from .blocks import ResidualGroup
from .pint import PixelInterpolator
from .sint import SliceInterpolator


class SynthesisNetworks(nn.Module):
    """SInt-A (axial, with its memory bank) and PInt (coronal and sagittal, shared weights) for one factor r."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.sint = SliceInterpolator(config.sint, config.scale, residual=config.residual, base=config.base)
        self.pint = PixelInterpolator(config.pint, config.scale, residual=config.residual, base=config.base)

    @property
    def scale(self) -> int:
        """The up-sampling factor r."""
        return self.config.scale

    def checkpoint_activations(self, enabled: bool) -> None:
        """Recompute each residual group's activations in the backward pass instead of storing them."""
        for module in self.modules():
            if isinstance(module, ResidualGroup):
                module.checkpointed = enabled
