"""Shared pytest setup: the engine package on ``sys.path``, two CPU threads and a fixed-seed fixture."""

from __future__ import annotations

import random
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
ENGINE_ROOT = REPO_ROOT / "CTSliceSynthesis"
if str(ENGINE_ROOT) not in sys.path:
    sys.path.insert(0, str(ENGINE_ROOT))

torch.set_num_threads(2)

SEED = 1234


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module of tiny volumes (and as in subprocesses run with ``OMP_NUM_THREADS=1``):
    many times faster than two when the machine is busy, and the same arithmetic as those subprocesses."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def fixed_seed() -> int:
    """Seed Python, NumPy and torch with :data:`SEED` before the test and return it."""
    random.seed(SEED)
    np.random.seed(SEED)
    torch.manual_seed(SEED)
    return SEED


@lru_cache(maxsize=None)
def untrained_lite(scale: int):
    """An untrained lite model for ``scale`` (seeded by ``scale``), built once and shared read-only."""
    from CTSliceSynthesisLib.inference.model_store import create_model

    torch.manual_seed(scale)
    return create_model("lite", scale)
