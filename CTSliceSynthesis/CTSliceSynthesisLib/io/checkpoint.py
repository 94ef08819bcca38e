"""Checkpoint files: atomic writes, safe loading (``weights_only=True``), integrity hashes, and the networks a
checkpoint holds (shared by the trainer and the model store)."""

from __future__ import annotations

import hashlib
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any, Dict, Optional

import torch

from .. import __version__
from ..core.config import ModelConfig
from ..core.errors import CheckpointError
from ..nets import SynthesisNetworks
from .atomic import PathLike, write_atomically

CHECKPOINT_FORMAT = "ct-slice-synthesis-checkpoint/1"


def save_checkpoint(path: PathLike, payload: Dict[str, Any]) -> None:
    """Write ``payload`` (tensors, numbers, strings, lists and dicts only) atomically, tagged with the format."""
    content = {"format": CHECKPOINT_FORMAT, "engine_version": __version__, **payload}
    write_atomically(path, lambda temporary: torch.save(content, temporary))


def load_checkpoint(path: PathLike, expected_sha256: Optional[str] = None) -> Dict[str, Any]:
    """Load a checkpoint without executing code (``weights_only=True``); one-line :class:`CheckpointError` on failure.

    With ``expected_sha256``, the file's hash must match first (bundled weights and their manifest).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if expected_sha256 is not None:
        actual = sha256_of_file(path)
        if actual != expected_sha256.lower():
            raise CheckpointError(
                f"checkpoint {path.name} does not match its manifest (sha256 {actual[:12]}…, expected "
                f"{expected_sha256[:12]}…): the file is corrupt or was replaced"
            )
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(_refusal(path.name, str(error))) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError, AttributeError) as error:
        raise CheckpointError(f"checkpoint {path.name} is corrupt or unreadable ({type(error).__name__})") from None
    if not isinstance(content, dict) or content.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path.name} is not a CTSliceSynthesis checkpoint (format tag missing)")
    return content


def networks_from_payload(payload: Dict[str, Any], source: str) -> SynthesisNetworks:
    """Build networks from a checkpoint dict and load their weights strictly (memory bank included)."""
    try:
        config = ModelConfig.from_dict(payload["model_config"])
        networks = SynthesisNetworks(config)
        networks.load_state_dict(payload["networks"], strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        reason = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{source} does not hold CTSliceSynthesis networks ({reason})") from None
    return networks


def sha256_of_file(path: PathLike) -> str:
    """Hex SHA-256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _refusal(name: str, message: str) -> str:
    """One line for a file that the weights-only unpickler rejected.

    torch's own message starts with several lines of advice (re-run with ``weights_only=False``) that must not
    reach users; only the offending global, or the unpickling fault of a corrupt file, is kept.
    """
    found = re.search(r"GLOBAL\s+([\w.]+)", message)
    if found:
        return f"refusing to load {name}: it carries code or Python objects ({found.group(1)}), not only weights"
    found = re.search(r"Unsupported operand \d+", message)
    detail = f" ({found.group(0)})" if found else ""
    return f"refusing to load {name}: the file is corrupt or not a plain weights file{detail}"
