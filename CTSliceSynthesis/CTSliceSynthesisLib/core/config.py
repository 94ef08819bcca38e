"""Model sizes as configuration: the authors' ``paper`` preset and the CPU-friendly ``lite`` preset."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Optional

from .errors import InputError

# Up-sampling factors r (slices per input gap). 5 mm → 1 mm is ×5; above ×6 the slices are more than six output
# spacings apart and nothing was measured to pay (see the README).
SUPPORTED_SCALES = (2, 3, 4, 5, 6)
RESIDUAL_BASES = ("linear", "cubic")
# Arithmetic of the networks at inference (see ``inference.precision.resolve_precision``).
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
PRECISION_HELP = (
    "auto (default): bf16 convolutions where the hardware runs them natively (CPUs with AVX-512 BF16 or AMX, "
    "CUDA GPUs), float32 elsewhere; or force fp32, bf16, fp16 (GPU only)"
)
# Arithmetic of training steps (autocast of the forward pass; see ``training.trainer.TrainConfig``).
TRAINING_PRECISIONS = ("fp32", "bf16")
# How the views are mixed at synthesized slices: the mean of PInt's coronal and sagittal views (the two trained
# at the input's geometry, with scale-matched pairs), eq. 7's mean of all three views, or weights calibrated on
# the volume itself (see ``inference.calibration``).
FUSIONS = ("pint", "equal", "calibrated")
DEFAULT_FUSION = "pint"
# "Adapt to this scan": steps of self-supervised fine-tuning on the input before synthesizing (0: off). A budget in
# steps, not seconds, so that the same input gives the same bytes on a busy machine; a wall-time cap
# (``--adapt-seconds``) is an option with no default, and a run it cuts short is recorded as not reproducible.
DEFAULT_ADAPT_STEPS = 100
# The seed of adaptation's random pairs (recorded in the output's provenance).
DEFAULT_SEED = 0


def scale_problem(scale: int) -> Optional[str]:
    """Why ``scale`` cannot be used (one line), or ``None`` when it is one of :data:`SUPPORTED_SCALES`."""
    if scale in SUPPORTED_SCALES:
        return None
    low, high = SUPPORTED_SCALES[0], SUPPORTED_SCALES[-1]
    if isinstance(scale, int) and scale > high:
        return (f"unsupported scale {scale}: factors {low} to {high} are supported (above ×{high} the acquired "
                f"slices are too far apart for the networks to add detail over interpolation)")
    return f"unsupported scale {scale}: choose one of {', '.join(map(str, SUPPORTED_SCALES))}"


def check_scale(scale: int) -> None:
    """Raise :class:`InputError` (one line) unless ``scale`` is one of :data:`SUPPORTED_SCALES`."""
    problem = scale_problem(scale)
    if problem:
        raise InputError(problem)


@dataclass(frozen=True)
class SIntConfig:
    """Sizes of SInt-A, the axial slice interpolator (spec §2).

    The feature width is ``stem_channels * block**2`` (space-to-depth with block ``block``).
    """

    stem_channels: int = 3
    block: int = 8
    blocks_per_group: int = 12
    ca_reduction: int = 16
    memory_items: int = 10

    @property
    def width(self) -> int:
        """Feature width C of the residual groups (= memory item dimension d)."""
        return self.stem_channels * self.block**2


@dataclass(frozen=True)
class PIntConfig:
    """Sizes of PInt, the coronal/sagittal z super-resolution net (spec §4)."""

    width: int = 32
    groups: int = 5
    blocks_per_group: int = 8
    ca_reduction: int = 4


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to build the two networks for one up-sampling factor."""

    preset: str
    scale: int
    sint: SIntConfig = field(default_factory=SIntConfig)
    pint: PIntConfig = field(default_factory=PIntConfig)
    # Both nets predict a correction to a classical interpolation along z (``base``: "linear" between the two
    # neighbouring slices, or "cubic" B-spline over the whole stack), with their output convolutions initialised
    # to zero, so an untrained model starts as that interpolation. False reproduces the authors' networks,
    # which predict intensities directly.
    residual: bool = False
    base: str = "linear"

    def __post_init__(self) -> None:
        problem = scale_problem(self.scale)
        if problem:
            raise ValueError(problem)
        if self.base not in RESIDUAL_BASES:
            raise ValueError(f"unknown residual base {self.base!r}: choose one of {RESIDUAL_BASES}")

    def to_dict(self) -> Dict[str, Any]:
        """Plain-dict form, safe to store in a ``weights_only`` checkpoint."""
        return asdict(self)

    @staticmethod
    def from_dict(data: Dict[str, Any]) -> "ModelConfig":
        """Inverse of :meth:`to_dict`."""
        return ModelConfig(
            preset=str(data["preset"]),
            scale=int(data["scale"]),
            sint=SIntConfig(**data["sint"]),
            pint=PIntConfig(**data["pint"]),
            residual=bool(data.get("residual", False)),
            base=str(data.get("base", "linear")),
        )


PRESETS: Dict[str, tuple] = {
    # The authors' networks (code-exact): 53,460,586 + 891,839 parameters at r = 2.
    "paper": (SIntConfig(), PIntConfig(), False, "linear"),
    # CPU default (spec §14 lite-B): C = 64 = 1·8², 2 RCABs per group; PInt 16 channels, 2 groups × 2 blocks;
    # residual to cubic B-spline interpolation along z.
    "lite": (
        SIntConfig(stem_channels=1, block=8, blocks_per_group=2),
        PIntConfig(width=16, groups=2, blocks_per_group=2),
        True,
        "cubic",
    ),
}


def model_config(preset: str, scale: int) -> ModelConfig:
    """Return the :class:`ModelConfig` of a named preset for factor ``scale``."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}: choose one of {sorted(PRESETS)}")
    sint, pint, residual, base = PRESETS[preset]
    return ModelConfig(preset=preset, scale=scale, sint=sint, pint=pint, residual=residual, base=base)
