"""Convolution throughput: the FLOPs the engine's networks do for a volume, and what torch reaches on this
machine for a plain stack of 3×3 convolutions of the same shapes, precision and layout.

FLOPs are counted by ``torch.utils.flop_counter`` (convolutions and matrix products, 2 per multiply-add) on one
real network call of each kind, then scaled by the number of calls a volume needs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from CTSliceSynthesisLib.inference.model_store import SynthesisModel
from CTSliceSynthesisLib.inference.precision import autocast_to
from CTSliceSynthesisLib.nets.views import interpolate_axial

SINT_PAIRS_PER_CALL = 8
PINT_IMAGES_PER_CALL = 5


@dataclass
class EngineFlops:
    """FLOPs of one volume's synthesis, split by network."""

    sint: float
    pint: float

    @property
    def total(self) -> float:
        """All network FLOPs."""
        return self.sint + self.pint


def count_flops(function) -> float:
    """FLOPs of one call of ``function()`` (no gradient)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        function()
    return float(counter.get_total_flops())


def engine_flops(model: SynthesisModel, slices: int, height: int = 512, width: int = 512) -> EngineFlops:
    """Network FLOPs to synthesize a ``height × width × slices`` volume: SInt on every pair, PInt on every
    coronal and sagittal image."""
    device = model.device
    stack = torch.rand(1, 3, height, width, device=device)
    per_pair = count_flops(lambda: interpolate_axial(model.networks.sint, stack, first_pair=0, pair_count=1))
    coronal = count_flops(lambda: model.networks.pint(torch.rand(1, 1, width, slices, device=device)))
    sagittal = count_flops(lambda: model.networks.pint(torch.rand(1, 1, height, slices, device=device)))
    return EngineFlops(sint=per_pair * (slices - 1), pint=coronal * height + sagittal * width)


def conv_stack_throughput(
    channels: int,
    height: int,
    width: int,
    batch: int,
    dtype: Optional[torch.dtype],
    device: torch.device,
    depth: int = 8,
    seconds: float = 2.0,
) -> float:
    """FLOP/s of ``depth`` plain ``channels → channels`` 3×3 convolutions (bias, zero padding) on a
    channels-last ``(batch, channels, height, width)`` input, under autocast to ``dtype`` (None: float32)."""
    stack = nn.Sequential(*[nn.Conv2d(channels, channels, 3, padding=1) for _ in range(depth)]).to(device).eval()
    stack = stack.to(memory_format=torch.channels_last)
    x = torch.rand(batch, channels, height, width, device=device).contiguous(memory_format=torch.channels_last)
    flops = 2.0 * 9 * channels * channels * height * width * batch * depth
    with torch.no_grad(), autocast_to(device, dtype):
        for _ in range(2):
            stack(x)
        synchronize(device)
        runs, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            stack(x)
            runs += 1
        synchronize(device)
        elapsed = time.perf_counter() - started
    return flops * runs / elapsed


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class ReferenceThroughput:
    """Plain conv-stack FLOP/s at the engine's two layer shapes, and for a wide 64-channel stack."""

    sint_shape: float  # 64 channels at 1/8 resolution, a chunk of SInt pairs
    pint_shape: float  # 16 channels on 512 × S images, a chunk of PInt images
    wide_fp32: float
    wide_bf16: Optional[float]

    def time_for(self, flops: EngineFlops) -> float:
        """Seconds the plain stacks would take for the engine's FLOPs at each shape."""
        return flops.sint / self.sint_shape + flops.pint / self.pint_shape


def reference_throughput(
    model: SynthesisModel, slices: int, bf16_available: bool, seconds: float = 2.0
) -> ReferenceThroughput:
    """Measure :class:`ReferenceThroughput` in the model's precision on its device."""
    device, dtype = model.device, model.precision
    sint_width = model.networks.config.sint.width
    pint_width = model.networks.config.pint.width
    sint_shape = conv_stack_throughput(sint_width, 64, 64, SINT_PAIRS_PER_CALL, dtype, device, seconds=seconds)
    pint_shape = conv_stack_throughput(pint_width, 512, slices, PINT_IMAGES_PER_CALL, dtype, device, seconds=seconds)
    wide_fp32 = conv_stack_throughput(64, 64, 64, 8, None, device, seconds=seconds)
    wide_bf16 = conv_stack_throughput(64, 64, 64, 8, torch.bfloat16, device, seconds=seconds) if bf16_available else None
    return ReferenceThroughput(sint_shape, pint_shape, wide_fp32, wide_bf16)
