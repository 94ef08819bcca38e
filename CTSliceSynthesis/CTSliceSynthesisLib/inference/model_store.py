"""Models ready for inference: creation, loading from checkpoints or the bundled weights, devices."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from ..core.config import SUPPORTED_SCALES, model_config
from ..core.errors import CheckpointError
from ..io.checkpoint import load_checkpoint, networks_from_payload, save_checkpoint, sha256_of_file
from ..nets import SynthesisNetworks
from .precision import precision_name, resolve_precision, tune_allocator, use_channels_last

MODELS_DIR_ENV = "CTSLICESYNTHESIS_MODELS_DIR"
MANIFEST_NAME = "manifest.json"


@dataclass
class SynthesisModel:
    """Trained networks in eval mode on a device, with where they came from and the arithmetic they run in.

    ``precision`` is the autocast dtype of the networks' convolutions (``None``: float32); interpolation bases,
    residual sums and the fusion stay float32 in every case.
    """

    networks: SynthesisNetworks
    model_id: str
    sha256: Optional[str]
    device: torch.device
    precision: Optional[torch.dtype] = None

    @property
    def precision_name(self) -> str:
        """``fp32``, ``bf16`` or ``fp16``."""
        return precision_name(self.precision)

    @property
    def scale(self) -> int:
        """The up-sampling factor r the networks were built for."""
        return self.networks.scale

    @property
    def preset(self) -> str:
        """Size preset name (``paper``, ``lite`` …)."""
        return self.networks.config.preset


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then CPU; an explicit device that is absent is an error."""
    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CheckpointError("device 'cuda' was requested but this torch build sees no CUDA GPU")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise CheckpointError("device 'mps' was requested but Apple MPS is not available")
    try:
        return torch.device(name)
    except RuntimeError:
        raise CheckpointError(f"unknown device {name!r}: use auto, cpu, cuda or mps") from None


def create_model(preset: str, scale: int, device: str = "cpu", precision: str = "fp32") -> SynthesisModel:
    """Freshly initialised networks (for tests and benchmarks), float32 unless ``precision`` says otherwise."""
    networks = SynthesisNetworks(model_config(preset, scale))
    return prepare_model(networks, f"untrained-{preset}-x{scale}", None, resolve_device(device), precision)


def load_model(
    checkpoint: Optional[os.PathLike] = None,
    scale: int = 2,
    device: str = "cpu",
    preset: Optional[str] = None,
    precision: str = "auto",
) -> SynthesisModel:
    """Load a checkpoint (or, with ``checkpoint=None``, the bundled weights for ``scale``) for inference.

    A checkpoint made for another factor, or another preset than ``preset`` when given, is refused.
    ``precision`` is ``auto`` (bf16 where the hardware runs it natively, see ``precision.resolve_precision``),
    ``fp32``, ``bf16`` or ``fp16``.
    """
    if scale not in SUPPORTED_SCALES:
        raise CheckpointError(f"unsupported scale {scale}: choose one of {SUPPORTED_SCALES}")
    target = resolve_device(device)
    if checkpoint is None:
        entry, path = bundled_entry(scale)
        payload = load_checkpoint(path, expected_sha256=entry["sha256"])
        model_id, sha = entry["id"], entry["sha256"]
    else:
        path = Path(checkpoint)
        payload = load_checkpoint(path)
        model_id, sha = path.stem, sha256_of_file(path)
    networks = networks_from_payload(payload, path.name)
    if networks.scale != scale:
        raise CheckpointError(f"{path.name} was trained for ×{networks.scale}, not ×{scale}")
    if preset is not None and networks.config.preset != preset:
        raise CheckpointError(f"{path.name} holds the {networks.config.preset!r} preset, not {preset!r}")
    return prepare_model(networks, model_id, sha, target, precision)


def save_model(model: SynthesisModel, path: os.PathLike, metadata: Optional[Dict[str, Any]] = None) -> None:
    """Write an inference checkpoint (weights and memory bank, no optimizer) atomically."""
    payload = {
        "model_config": model.networks.config.to_dict(),
        "networks": {k: v.detach().cpu() for k, v in model.networks.state_dict().items()},
        "metadata": dict(metadata or {}),
    }
    save_checkpoint(path, payload)


def models_directories() -> List[Path]:
    """Where bundled weights are looked for, in order: ``$CTSLICESYNTHESIS_MODELS_DIR``, the installed module's
    ``Resources/Models``, the repository's top-level ``Resources/Models``."""
    library = Path(__file__).resolve().parents[1]  # CTSliceSynthesisLib
    candidates = [library.parent / "Resources" / "Models", library.parent.parent / "Resources" / "Models"]
    if os.environ.get(MODELS_DIR_ENV):
        candidates.insert(0, Path(os.environ[MODELS_DIR_ENV]))
    return candidates


def bundled_entry(scale: int) -> tuple:
    """The manifest entry and weights path of the default bundled model for ``scale``."""
    for directory in models_directories():
        manifest = directory / MANIFEST_NAME
        if not manifest.is_file():
            continue
        try:
            entries = json.loads(manifest.read_text())["models"]
        except (ValueError, KeyError, TypeError):
            raise CheckpointError(f"bundled model manifest {manifest} is malformed") from None
        for entry in entries:
            if int(entry.get("scale", 0)) == scale and entry.get("default", False):
                return entry, directory / entry["file"]
    raise CheckpointError(f"no bundled model for ×{scale}: pass --model with a checkpoint (see Training/)")


def prepare_model(
    networks: SynthesisNetworks,
    model_id: str,
    sha256: Optional[str],
    device: torch.device,
    precision: str = "auto",
) -> SynthesisModel:
    """``networks`` ready for inference: on ``device``, in eval mode without gradients, weights channels-last,
    running in ``precision`` (see :func:`load_model`), and named ``model_id`` (``sha256``: of the weights file,
    ``None`` for weights that are not a file, e.g. fresh or adapted ones)."""
    try:
        dtype = resolve_precision(precision, device)
    except ValueError as error:
        raise CheckpointError(str(error)) from None
    networks = networks.to(device).eval()
    for parameter in networks.parameters():
        parameter.requires_grad_(False)
    use_channels_last(networks)
    if device.type == "cpu":
        tune_allocator()
    return SynthesisModel(networks=networks, model_id=model_id, sha256=sha256, device=device, precision=dtype)
