"""Shared pytest setup: the engine package on ``sys.path``, two CPU threads, a fixed-seed fixture, and Slicer's
core (``slicer-core``) for the tests marked ``slicer_core``."""

from __future__ import annotations

import platform
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


def slicer_core_has_wheels() -> bool:
    """Whether ``slicer-core`` has a wheel for this interpreter (the test extra's environment marker)."""
    return (3, 10) <= sys.version_info[:2] < (3, 14) and sys.platform == "linux" and platform.machine() == "x86_64"


@pytest.fixture(scope="module")
def slicer_core():
    """``slicer`` with Slicer's real core and the application stand-ins of ``slicer_core_harness`` for one test
    module. Skips, saying why, where slicer-core has no wheel; fails where it has one but does not import (the test
    extra installs it there, so the layer must run, as on CI)."""
    from slicer_core_harness import installed, slicer_core_available

    problem = slicer_core_available()
    if problem and slicer_core_has_wheels():
        pytest.fail(f"slicer-core should be installed here (pip install -e '.[test]') but does not import: {problem}")
    if problem:
        pytest.skip(f"Slicer-core layer not run: slicer-core has no wheel for Python "
                    f"{platform.python_version()} on {sys.platform}/{platform.machine()} ({problem})")
    with installed() as slicer:
        yield slicer


@pytest.fixture
def slicer_scene(slicer_core):
    """``slicer`` with an empty scene for each test."""
    slicer_core.mrmlScene.Clear(0)
    yield slicer_core
    slicer_core.mrmlScene.Clear(0)
