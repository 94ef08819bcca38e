"""Self-supervised training and fine-tuning (spec §5–6, §9.3, §10), on one process or many (DDP).

A run goes through the stages of ``training.objective.STAGES`` in order: PInt alone on scale-matched in-plane
pairs (many small patches per step), SInt-A alone on its own z-windows, then both with the cross-view
distillation. ``pint_fraction`` and ``sint_fraction`` of the steps go to the first two stages, the rest to the
joint one; the learning rate follows the same schedule within each stage.

Checkpoints hold weights, memory bank, optimizer, step, RNG state, configuration and loss history; resuming
continues exactly. Fine-tuning is training that starts from a checkpoint's weights with a fresh optimizer.
Each step's losses are appended to ``losses.jsonl`` as it completes, so a killed run still shows its progress.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from ..core.callbacks import CancelCheck
from ..core.config import TRAINING_PRECISIONS, check_scale, model_config
from ..core.errors import InputError, SynthesisCancelled
from ..io.atomic import write_atomically
from ..io.checkpoint import load_checkpoint, networks_from_payload, save_checkpoint
from ..nets import SynthesisNetworks
from .data import TrainingVolume, WindowSampler, default_window
from .objective import PINT_PAIRS, STAGES, LossConfig, TrainingObjective
from .pairs import InPlanePairSampler, PairShape
from .profiles import TRAINING_SPACING_MM, ProfileRange, blind_thickness_ratio

ACTIVATION_CHECKPOINTING = ("auto", "on", "off")
PAIR_GEOMETRIES = ("range", "volume")
LATEST_CHECKPOINT = "checkpoint_latest.pt"
FINAL_MODEL = "model_final.pt"
LOSS_LOG = "losses.jsonl"


@dataclass
class TrainConfig:
    """Every setting of a training run (stored in its checkpoints)."""

    preset: str = "lite"
    scale: int = 2
    steps: int = 2000
    batch_size: int = 1
    window: int = 0  # slices per training window l_V; 0 → 15 for ×2, 13 for ×3 and ×4
    patch: int = 128
    region: int = 256
    learning_rate: float = 1e-4
    sint_learning_rate: float = 0.0  # SInt-A's rate; 0 → learning_rate (SInt-A diverges at PInt's 1e-3)
    decay_fraction: float = 0.2  # lr ×0.1 after this fraction of the steps (paper: 10 of 50 epochs)
    levels: int = 2
    gamma: float = 0.25
    cmd_weight: float = 0.15
    distillation: str = "mutual"
    loss_mode: str = "paper"
    checkpoint_every: int = 100
    seed: int = 0
    degradation: str = "none"
    profile_width: int = 0  # slice-profile augmentation up to this many slices; 0 → r, 1 → off
    flips: bool = True
    precision: str = "fp32"
    checkpoint_activations: str = "auto"  # auto: on for the paper preset (it does not fit 24 GB otherwise)
    # Stages: this fraction of the steps trains PInt alone, then this one SInt-A alone, the rest both jointly.
    pint_fraction: float = 0.6
    sint_fraction: float = 0.2
    # PInt's internal pairs: scale-matched from in-plane axes ("inplane") or the paper's z-thinning ("z").
    pint_pairs: str = "inplane"
    pair_batch: int = 32
    pair_rows: int = 48
    pair_columns: int = 12
    # Slice geometries of the in-plane pairs: Δz in mm and T/Δz, drawn log-uniformly; (0, 0) → the defaults
    # (spacings of TRAINING_SPACING_MM, thickness unknown: ``profiles.blind_thickness_ratio``).
    pair_spacing_mm: Tuple[float, float] = (0.0, 0.0)
    pair_thickness_ratio: Tuple[float, float] = (0.0, 0.0)
    # "range": every pair draws Δz from pair_spacing_mm; "volume": Δz is the pair's volume's own slice spacing
    # and T its thickness when known (fine-tuning on a site's scans, adaptation to one scan).
    pair_geometry: str = "range"

    def __post_init__(self) -> None:
        if self.window == 0:
            self.window = default_window(self.scale)
        if self.profile_width == 0:
            self.profile_width = self.scale
        if self.sint_learning_rate == 0:
            self.sint_learning_rate = self.learning_rate
        if tuple(self.pair_spacing_mm) == (0.0, 0.0):
            self.pair_spacing_mm = TRAINING_SPACING_MM
        if tuple(self.pair_thickness_ratio) == (0.0, 0.0):
            self.pair_thickness_ratio = blind_thickness_ratio(self.scale)
        self.pair_spacing_mm = tuple(float(v) for v in self.pair_spacing_mm)
        self.pair_thickness_ratio = tuple(float(v) for v in self.pair_thickness_ratio)
        check_scale(self.scale)
        if (self.window - 1) % self.scale or self.window < 2 * self.scale + 1:
            raise InputError(
                f"--window {self.window} must be ≡ 1 (mod {self.scale}) and at least {2 * self.scale + 1}"
            )
        block = model_config(self.preset, self.scale).sint.block
        if self.patch % block or self.patch < 2 * block:
            raise InputError(f"--patch {self.patch} must be a multiple of {block} and at least {2 * block}")
        if self.precision not in TRAINING_PRECISIONS:
            raise InputError(f"--precision must be one of {TRAINING_PRECISIONS}")
        if self.checkpoint_activations not in ACTIVATION_CHECKPOINTING:
            raise InputError(f"--checkpoint-activations must be one of {ACTIVATION_CHECKPOINTING}")
        if self.steps < 0 or self.batch_size < 1 or self.checkpoint_every < 1:
            raise InputError("--steps must be ≥ 0, --batch-size and --checkpoint-every ≥ 1")
        fractions = (self.pint_fraction, self.sint_fraction)
        if min(fractions) < 0 or sum(fractions) > 1 + 1e-9:
            raise InputError("--pint-fraction and --sint-fraction must be ≥ 0 and sum to at most 1")
        if self.pint_pairs not in PINT_PAIRS:
            raise InputError(f"--pint-pairs must be one of {PINT_PAIRS}")
        if self.pair_geometry not in PAIR_GEOMETRIES:
            raise InputError(f"--pair-geometry must be one of {PAIR_GEOMETRIES}")
        if self.pair_batch < 1 or self.pair_rows < 4 or self.pair_columns < 3:
            raise InputError("--pair-batch must be ≥ 1, --pair-rows ≥ 4 and --pair-columns ≥ 3")
        try:
            self.profile_range()
        except ValueError as error:
            raise InputError(f"pair geometry: {error}") from None
        try:
            self.loss_config()
        except ValueError as error:
            raise InputError(str(error)) from None

    def stage_bounds(self) -> List[Tuple[str, int, int]]:
        """``(stage, first step, end step)`` of each stage of :data:`STAGES`, in order (empty ones included)."""
        pint_end = round(self.pint_fraction * self.steps)
        sint_end = min(self.steps, pint_end + round(self.sint_fraction * self.steps))
        return [("pint", 0, pint_end), ("sint", pint_end, sint_end), ("joint", sint_end, self.steps)]

    def stage_at(self, step: int) -> Tuple[str, int, int]:
        """The stage that step ``step`` (0-based) belongs to, with its bounds."""
        for bounds in self.stage_bounds():
            if bounds[1] <= step < bounds[2]:
                return bounds
        return self.stage_bounds()[-1]

    def profile_range(self) -> ProfileRange:
        """The slice geometries of the in-plane pairs."""
        return ProfileRange(tuple(self.pair_spacing_mm), tuple(self.pair_thickness_ratio))

    @property
    def uses_activation_checkpointing(self) -> bool:
        """Whether residual groups recompute their activations in the backward pass."""
        return self.checkpoint_activations == "on" or (
            self.checkpoint_activations == "auto" and self.preset == "paper"
        )

    def loss_config(self) -> LossConfig:
        """The objective's settings."""
        return LossConfig(
            mode=self.loss_mode,
            levels=self.levels,
            gamma=self.gamma,
            cmd_weight=self.cmd_weight,
            distillation=self.distillation,
        )

    @staticmethod
    def from_dict(data: Dict[str, Any]) -> "TrainConfig":
        """Inverse of ``dataclasses.asdict``, ignoring unknown keys."""
        known = {f.name for f in fields(TrainConfig)}
        return TrainConfig(**{k: v for k, v in data.items() if k in known})


@dataclass
class DistributedContext:
    """Rank and world size of this process (1 process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Only the main process writes files and shows progress."""
        return self.rank == 0


def init_distributed(device: torch.device) -> DistributedContext:
    """Join the process group when started by ``torchrun`` (``WORLD_SIZE`` > 1): gloo on CPU, nccl on CUDA."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistributedContext(rank=dist.get_rank(), world_size=dist.get_world_size())


class Trainer:
    """Runs training steps, writes checkpoints, resumes them."""

    def __init__(
        self,
        config: TrainConfig,
        volumes: Sequence[TrainingVolume],
        output_dir: Optional[Path],
        device: torch.device = torch.device("cpu"),
        initial_networks: Optional[SynthesisNetworks] = None,
        context: Optional[DistributedContext] = None,
    ) -> None:
        self.config = config
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.device = device
        self.context = context or DistributedContext()
        torch.manual_seed(config.seed)
        networks = initial_networks or SynthesisNetworks(model_config(config.preset, config.scale))
        if networks.config.scale != config.scale:
            raise InputError(f"the initial weights are for ×{networks.config.scale}, not ×{config.scale}")
        if networks.config.preset != config.preset:
            raise InputError(f"the initial weights are the {networks.config.preset!r} preset, not {config.preset!r}")
        self.networks = networks.to(device).train()
        self.networks.checkpoint_activations(config.uses_activation_checkpointing)
        for parameter in self.networks.parameters():
            parameter.requires_grad_(True)
        self.objective = TrainingObjective(self.networks, config.loss_config(), config.pint_pairs).to(device)
        self.model: torch.nn.Module = self.objective
        if self.context.world_size > 1:  # stages train one network at a time: the other has no gradient
            self.model = DistributedDataParallel(self.objective, find_unused_parameters=True)
        groups = [
            {"params": list(self.networks.pint.parameters()), "lr": config.learning_rate},
            {"params": list(self.networks.sint.parameters()), "lr": config.sint_learning_rate},
        ]
        self.optimizer = torch.optim.Adam(groups, betas=(0.9, 0.99))
        stages = {name for name, first, end in config.stage_bounds() if end > first}
        needs_windows = bool(stages & {"sint", "joint"}) or config.pint_pairs == "z"
        self.sampler = (
            WindowSampler(
                volumes,
                config.window,
                config.patch,
                config.region,
                torch.Generator(),
                flips=config.flips,
                degradation=config.degradation,
                max_profile_width=config.profile_width,
            )
            if needs_windows
            else None
        )
        self.pair_sampler = (
            InPlanePairSampler(
                volumes,
                config.scale,
                config.profile_range(),
                torch.Generator(),
                PairShape(config.pair_rows, config.pair_columns),
                own_geometry=config.pair_geometry == "volume",
            )
            if config.pint_pairs == "inplane" and stages & {"pint", "joint"}
            else None
        )
        self.step = 0
        self.history: List[Dict[str, float]] = []
        self.data_sources: List[str] = []
        self.data_options: Dict[str, Any] = {}  # how the volumes were loaded (the CLI's thinning, thickness)

    def fraction_done(self) -> float:
        """How far the run is, in steps."""
        return min(self.step / max(self.config.steps, 1), 1.0)

    def learning_rate_at(self, step: int, network: str = "pint") -> float:
        """``network``'s learning rate (``pint`` or ``sint``) at ``step``: within each stage, the configured rate
        for its first ``decay_fraction`` of steps, then ×0.1 (spec A12). A function of the step alone, never of
        the time, so that a run's arithmetic does not depend on the machine's speed or load.
        """
        _, first, end = self.config.stage_at(step)
        decay_step = first + math.ceil(self.config.decay_fraction * (end - first))
        rate = self.config.sint_learning_rate if network == "sint" else self.config.learning_rate
        return rate * (0.1 if step >= decay_step else 1.0)

    def _seed_samplers(self) -> None:
        # Seeding per (seed, rank, step) makes every batch reproducible, whatever was resumed when.
        seed = self.config.seed * 1_000_003 + self.context.rank * 7_919 + self.step
        for index, sampler in enumerate((self.sampler, self.pair_sampler)):
            if sampler is not None:
                sampler.generator.manual_seed(seed + index * 104_729)

    def train_step(self) -> Dict[str, float]:
        """One optimisation step of the current stage on fresh batches; returns the loss terms as floats."""
        stage = self.config.stage_at(self.step)[0]
        self._seed_samplers()
        volume = pairs = None
        if stage != "pint" or self.config.pint_pairs == "z":
            volume = self.sampler.sample(self.config.batch_size).to(self.device)
        if stage != "sint" and self.pair_sampler is not None:
            pairs = tuple(t.to(self.device) for t in self.pair_sampler.sample(self.config.pair_batch))
        for group, network in zip(self.optimizer.param_groups, ("pint", "sint")):
            group["lr"] = self.learning_rate_at(self.step, network)
        autocast = torch.autocast(
            device_type=self.device.type, dtype=torch.bfloat16, enabled=self.config.precision == "bf16"
        )
        with autocast:
            terms = self.model(volume, pairs, stage)
        self.optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        self.optimizer.step()
        self.step += 1
        record = {name: float(value.detach()) for name, value in terms.items()}
        record["stage"] = float(STAGES.index(stage))
        record["step"] = float(self.step)
        self.history.append(record)
        return record

    def checkpoint_payload(self) -> Dict[str, Any]:
        """Everything needed to resume exactly."""
        return {
            "model_config": self.networks.config.to_dict(),
            "networks": {k: v.detach().cpu() for k, v in self.networks.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "torch_rng": torch.get_rng_state(),
            "train_config": asdict(self.config),
            "loss_config": self.config.loss_config().to_dict(),
            "history": [dict(record) for record in self.history],
            "data_sources": list(self.data_sources),
            "data_options": dict(self.data_options),
        }

    def save(self, path: Optional[Path] = None) -> Optional[Path]:
        """Write the resumable checkpoint atomically (main process only; nowhere without an output folder)."""
        if path is None and self.output_dir is None:
            return None
        path = Path(path) if path is not None else self.output_dir / LATEST_CHECKPOINT
        if self.context.is_main:
            path.parent.mkdir(parents=True, exist_ok=True)
            save_checkpoint(path, self.checkpoint_payload())
        return path

    def restore(self, payload: Dict[str, Any]) -> None:
        """Load a resumable checkpoint written by :meth:`save`."""
        networks = networks_from_payload(payload, "the checkpoint")
        if networks.config != self.networks.config:
            raise InputError("the checkpoint's model configuration differs from this run's (preset or scale)")
        self.networks.load_state_dict(networks.state_dict())
        if "optimizer" not in payload:
            raise InputError("the checkpoint has no optimizer state (inference weights?): use --init to fine-tune")
        self.optimizer.load_state_dict(payload["optimizer"])
        self.step = int(payload["step"])
        torch.set_rng_state(payload["torch_rng"])
        self.history = [dict(record) for record in payload.get("history", [])]

    def save_final(self) -> Path:
        """Write inference-only weights (no optimizer) next to the checkpoints."""
        if self.output_dir is None:
            raise InputError("this run has no output folder")
        path = self.output_dir / FINAL_MODEL
        if self.context.is_main:
            payload = self.checkpoint_payload()
            for key in ("optimizer", "torch_rng", "history"):
                payload.pop(key)
            save_checkpoint(path, payload)
        return path

    def run(
        self,
        time_budget_s: Optional[float] = None,
        cancel: Optional[CancelCheck] = None,
        on_step: Optional[Callable[[Dict[str, float]], None]] = None,
    ) -> None:
        """Train until ``config.steps`` (or the time budget) with a checkpoint every ``checkpoint_every`` steps.

        ``on_step(record)`` gets each step's losses and ``step`` as it completes: the hook for progress
        displays (the trainer shows none itself) and validation. A time budget only stops the run (training in
        chunks with ``--resume``, a cap on adaptation): the learning-rate schedule is in steps whatever it is.
        """
        started = time.monotonic()
        with self._loss_log() as log:
            while self.step < self.config.steps:
                if cancel is not None and cancel():
                    raise SynthesisCancelled("training cancelled")
                if time_budget_s is not None and time.monotonic() - started >= time_budget_s:
                    break
                record = self.train_step()
                log(record)
                if on_step is not None:
                    on_step(record)
                if self.step % self.config.checkpoint_every == 0:
                    self.save()
        self.save()

    @contextlib.contextmanager
    def _loss_log(self) -> Iterator[Callable[[Dict[str, float]], None]]:
        """A function that appends one step's losses to ``losses.jsonl`` as a flushed JSON line.

        The log is first rewritten from :attr:`history`, i.e. from what the checkpoint being resumed holds, so
        that steps an interrupted run made after its last checkpoint are not listed twice. Without an output
        folder, or on ranks other than 0, the function does nothing.
        """
        if self.output_dir is None or not self.context.is_main:
            yield lambda record: None
            return
        path = self.output_dir / LOSS_LOG
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = "".join(json.dumps(record) + "\n" for record in self.history)
        write_atomically(path, lambda temporary: Path(temporary).write_text(lines))
        with open(path, "a") as stream:

            def append(record: Dict[str, float]) -> None:
                stream.write(json.dumps(record) + "\n")
                stream.flush()

            yield append


def resume_payload(path: Path) -> Dict[str, Any]:
    """Read a resumable checkpoint and its training configuration."""
    payload = load_checkpoint(path)
    if "train_config" not in payload:
        raise InputError(f"{Path(path).name} is not a training checkpoint (no training configuration)")
    return payload
