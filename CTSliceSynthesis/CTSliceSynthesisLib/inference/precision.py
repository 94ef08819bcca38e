"""Run-time speed settings for inference: arithmetic precision, memory layout, the C allocator.

Each lever was measured on its own (see ``Testing/benchmarks`` and the README's performance section); only the
ones that paid are applied, and none changes the result by more than the benchmark's 0.05 dB quality bound.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from functools import lru_cache
from typing import Optional

import torch
from torch import nn

from ..core.config import PRECISIONS

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}

# glibc ``mallopt`` parameters (malloc.h): blocks below the mmap threshold come from the heap, and freed heap
# memory below the trim threshold is kept for reuse instead of being handed back to the kernel, so the next
# tensor of that size does not page-fault its way in again. 32 MiB is glibc's largest mmap threshold on 64-bit.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
_TRIM_THRESHOLD_BYTES = 256 * 1024 * 1024


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bfloat16 in hardware (AVX-512 BF16 or AMX), where bf16 convolutions run about
    twice as fast as float32. Elsewhere torch emulates bf16 and it is slower, so it is not used."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            flags = cpuinfo.read()
    except OSError:  # not Linux: no cheap, reliable check
        return False
    has_flags = " avx512_bf16" in flags or " amx_bf16" in flags
    try:
        return has_flags and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(requested: str, device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype for ``requested`` on ``device``, or ``None`` for float32.

    ``auto``: bf16 on a CPU with native bf16, bf16 on a CUDA GPU that supports it (else fp16), float32 elsewhere
    (other CPUs, Apple MPS). An explicit ``bf16``/``fp16`` is honoured; ``fp16`` on a CPU is refused (slow there).
    """
    if requested not in PRECISIONS:
        raise ValueError(f"unknown precision {requested!r}: choose one of {', '.join(PRECISIONS)}")
    if requested == "fp32":
        return None
    if requested != "auto":
        if requested == "fp16" and device.type == "cpu":
            raise ValueError("fp16 is not supported on the CPU: use bf16 or fp32")
        return _DTYPES[requested]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return None


def autocast_to(device: torch.device, dtype: Optional[torch.dtype]) -> torch.autocast:
    """Autocast to ``dtype`` on ``device``, or a disabled autocast for ``None`` (float32)."""
    return torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)


def precision_name(dtype: Optional[torch.dtype]) -> str:
    """``fp32``, ``bf16`` or ``fp16`` for an autocast dtype from :func:`resolve_precision`."""
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def use_channels_last(networks: nn.Module) -> None:
    """Store the networks' weights channels-last (NHWC), the layout oneDNN's fast CPU convolutions want.

    The nets force their activations into the same layout after one-channel layers, whose layout is ambiguous.
    """
    for module in networks.modules():
        if isinstance(module, nn.Conv2d):
            module.weight.data = module.weight.data.contiguous(memory_format=torch.channels_last)
        if hasattr(module, "memory_format"):
            module.memory_format = torch.channels_last


@lru_cache(maxsize=1)
def tune_allocator() -> bool:
    """Serve blocks up to 32 MiB from glibc's heap and keep up to 256 MiB of freed heap for reuse (measured: large
    convolutions otherwise spend up to half their time in page faults). Returns whether it applied; a no-op off
    glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    mmap_set = mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES) == 1
    return mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES) == 1 and mmap_set
