"""SInt-A: the axial slice interpolator (CAIN-style U-net with a memory bank; spec §2)."""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..core.config import SIntConfig
from .blocks import conv3x3, pointwise, slice_group
from .memory import MemoryBank


class SliceInterpolatorOutput(NamedTuple):
    """SInt result: ``slices (N, r−1, H, W)`` and, in training, the memory losses of this call."""

    slices: torch.Tensor
    compactness: Optional[torch.Tensor]
    separateness: Optional[torch.Tensor]


class SliceInterpolator(nn.Module):
    """Predicts the ``r − 1`` slices between two axial slices in one pass.

    ``(N, 1, H, W), (N, 1, H, W) → (N, r − 1, H, W)``; channel ``u`` is the slice at fraction ``(u + 1)/r``.
    ``H`` and ``W`` must be multiples of ``config.block``. With ``residual`` the output is a base interpolation
    plus the net's correction (zero at initialisation): ``base (N, r − 1, H, W)`` when given (the caller computes
    the cubic base, which needs more than two slices; see ``base_kind``), else linear interpolation between the
    two slices. In training mode every call reads the memory, computes its losses, then updates it (no
    gradient); in eval mode the memory is only read.
    """

    def __init__(self, config: SIntConfig, scale: int, residual: bool = False, base: str = "linear") -> None:
        super().__init__()
        self.residual = residual
        self.base_kind = base
        # Layout of the activations; ``inference.precision.use_channels_last`` switches it with the weights.
        self.memory_format = torch.contiguous_format
        self.register_buffer("fractions", torch.arange(1, scale, dtype=torch.float32) / scale, persistent=False)
        width, blocks, reduction = config.width, config.blocks_per_group, config.ca_reduction
        self.block = config.block
        self.stem = nn.Conv2d(1, config.stem_channels, 1)
        self.encoder_head = conv3x3(2 * width, width)
        self.encoder_groups = nn.ModuleList(slice_group(width, blocks, reduction) for _ in range(3))
        self.encoder_tail = conv3x3(width, width)
        self.memory = MemoryBank(config.memory_items, width)
        self.decoder_heads = nn.ModuleList(conv3x3(2 * width, width) for _ in range(3))
        self.decoder_groups = nn.ModuleList(slice_group(width, blocks, reduction) for _ in range(3))
        self.decoder_tail = conv3x3(width, width)
        self.head_out = nn.Conv2d(config.stem_channels, scale - 1, 1)
        if residual:
            # Zero the last wide convolution, not the narrow 1×1 head: with ``stem_channels`` inputs the head's
            # weight gradient is nearly zero at a zero start and the correction would never begin to learn.
            nn.init.zeros_(self.decoder_tail.weight)
            nn.init.zeros_(self.decoder_tail.bias)
            nn.init.zeros_(self.head_out.bias)

    def forward(
        self, first: torch.Tensor, second: torch.Tensor, base: Optional[torch.Tensor] = None
    ) -> SliceInterpolatorOutput:
        height, width = first.shape[-2:]
        if height % self.block or width % self.block or min(height, width) < 2 * self.block:
            raise ValueError(
                f"SInt needs H and W divisible by {self.block} and at least {2 * self.block}, got {(height, width)}"
            )
        a = F.pixel_unshuffle(pointwise(self.stem, first), self.block)
        b = F.pixel_unshuffle(pointwise(self.stem, second), self.block)
        e0 = self.encoder_head(torch.cat((a, b), dim=1).contiguous(memory_format=self.memory_format))
        e1 = self.encoder_groups[0](e0)
        e2 = self.encoder_groups[1](e1)
        e3 = self.encoder_tail(self.encoder_groups[2](e2) + e0)

        with torch.autocast(device_type=e3.device.type, enabled=False):  # memory maths in float32
            queries = F.normalize(e3.float(), dim=1)
            n, width, h, w = queries.shape
            flat = queries.permute(0, 2, 3, 1).reshape(-1, width)
            read = self.memory.read(flat).reshape(n, h, w, width).permute(0, 3, 1, 2)
            compactness = separateness = None
            if self.training:
                compactness, separateness = self.memory.losses(flat)
                self.memory.update(flat)
        d3 = torch.cat((queries, read), dim=1).to(e3.dtype)

        u1 = self.decoder_groups[0](self.decoder_heads[0](d3))
        u2 = self.decoder_groups[1](self.decoder_heads[1](torch.cat((u1 - e2, u1), dim=1)))
        u3 = self.decoder_groups[2](self.decoder_heads[2](torch.cat((u2 - e1, u2), dim=1)))
        out = pointwise(self.head_out, F.pixel_shuffle(self.decoder_tail(u3), self.block))
        if self.residual:
            if base is None:
                fractions = self.fractions.to(out.dtype)[None, :, None, None]
                base = first + (second - first) * fractions
            out = out.float() + base.float()  # the sum in float32: a bf16 result would cost ~4 HU
        return SliceInterpolatorOutput(out, compactness, separateness)
