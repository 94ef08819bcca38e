"""Reproducible by default (issue 18): adaptation to the scan has a budget in steps, a learning-rate schedule in
steps, random pairs from its own seeded generators (never the global random state), and an optional wall-time
cap that, when it cuts a run short, is recorded as such (log, provenance); and the default command gives the same
output bytes twice, also while another process loads the CPU."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path
from typing import Dict, List

import nibabel as nib
import numpy as np
import pytest
import torch

from cli_harness import ENGINE_ROOT, cli_command, cli_env, ct_volume, save_tiny_checkpoint, save_volume
from conftest import untrained_lite
from CTSliceSynthesisLib.inference.pipeline import PipelineOptions, run_pipeline
from CTSliceSynthesisLib.training import trainer as trainer_module
from CTSliceSynthesisLib.training.adaptation import ADAPT_STAGE, adapt_to_volume

VOLUME = ct_volume((6, 40, 36), seed=5)  # thick axis 0
SPACING = (4.0, 0.8, 0.8)


def adapt(steps: int = 3, seed: int = 0, **options):
    return adapt_to_volume(untrained_lite(2).networks, VOLUME, axis=0, spacing=SPACING, thickness=None,
                           device=torch.device("cpu"), steps=steps, seed=seed, **options)


def weights(adapted) -> Dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in adapted.networks.state_dict().items()}


def same(first: Dict[str, torch.Tensor], second: Dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(first[name], second[name]) for name in first)


class FakeClock:
    """``time.monotonic`` for the trainer: ``tick`` seconds pass at each reading."""

    def __init__(self, tick: float) -> None:
        self.now, self.tick = 0.0, tick

    def monotonic(self) -> float:
        self.now += self.tick
        return self.now


def test_the_seed_alone_draws_the_pairs(one_torch_thread) -> None:
    """The same seed gives the same weights whatever the global random state, which adaptation leaves as it was;
    another seed gives other weights."""
    torch.manual_seed(1)
    np.random.seed(1)
    first = adapt()
    torch.manual_seed(2)
    np.random.seed(2)
    state = torch.get_rng_state()
    second = adapt()
    assert torch.equal(torch.get_rng_state(), state), "adaptation changed the global random state"
    assert (first.steps, first.planned, first.seed, first.capped) == (3, 3, 0, False)
    assert same(weights(first), weights(second))
    assert not same(weights(first), weights(adapt(seed=1)))


def test_progress_is_a_fraction_of_the_steps_under_one_stage(one_torch_thread) -> None:
    seen: List[tuple] = []
    adapt(steps=4, progress=lambda fraction, stage: seen.append((fraction, stage)))
    assert seen == [(fraction, ADAPT_STAGE) for fraction in (0.0, 0.25, 0.5, 0.75, 1.0)]


def test_time_does_not_change_the_arithmetic(monkeypatch, one_torch_thread) -> None:
    """Without a cap, however slow the steps (1000 s each on the fake clock), the weights are those of a fast run:
    the learning-rate schedule is in steps."""
    reference = weights(adapt(steps=4))
    monkeypatch.setattr(trainer_module, "time", types.SimpleNamespace(monotonic=FakeClock(1000.0).monotonic))
    slow = adapt(steps=4)
    assert slow.steps == 4 and not slow.capped
    assert same(reference, weights(slow))


def test_a_capped_run_is_the_start_of_the_full_one_and_says_so(monkeypatch, one_torch_thread) -> None:
    """A 2.5 s cap on a clock that ticks 1 s per reading stops after 2 of 6 steps: ``capped``, and the weights
    are those of the first 2 steps of the same schedule."""
    monkeypatch.setattr(trainer_module, "time", types.SimpleNamespace(monotonic=FakeClock(1.0).monotonic))
    capped = adapt(steps=6, time_cap_s=2.5)
    assert (capped.steps, capped.planned, capped.capped) == (2, 6, True)
    monkeypatch.undo()
    assert same(weights(capped), weights(adapt(steps=2)))  # 3e-4 for both steps in both schedules


def test_the_pipeline_logs_and_records_a_cut_short_run(tmp_path: Path, monkeypatch, one_torch_thread) -> None:
    source = save_volume(tmp_path / "thick.nii.gz", ct_volume((24, 24, 6), seed=4), spacing=(0.8, 0.8, 4.0))
    checkpoint = save_tiny_checkpoint(tmp_path / "tiny.pt")
    monkeypatch.setattr(trainer_module, "time", types.SimpleNamespace(monotonic=FakeClock(1.0).monotonic))
    lines: List[str] = []
    options = PipelineOptions(source, tmp_path / "thin.nii.gz", 2, checkpoint=checkpoint, device="cpu",
                              precision="fp32", adapt_steps=6, adapt_seconds=2.5, seed=4)
    result = run_pipeline(options, log=lines.append)
    assert (result.adaptation.steps, result.adaptation.planned, result.adaptation.capped) == (2, 6, True)
    assert not result.adaptation.reproducible
    warnings = [line for line in lines if line.startswith("warning: ") and "not reproducible" in line]
    assert len(warnings) == 1 and "2 of 6 steps" in warnings[0] and "2.5 s cap" in warnings[0], lines
    description = nib.load(str(tmp_path / "thin.nii.gz")).header["descrip"].tobytes().rstrip(b"\0").decode()
    assert description.startswith("CTSS x2 tiny +adapt2cap seed4; T=") and len(description) <= 80


def busy_loops(count: int) -> List[subprocess.Popen]:
    """``count`` processes that spin on a core until killed."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


@pytest.mark.slow
def test_the_default_command_gives_the_same_bytes_on_a_busy_machine(tmp_path: Path) -> None:
    """``synthesize`` with its default options (adaptation on: DEFAULT_ADAPT_STEPS steps, seed DEFAULT_SEED) twice
    on a small volume with a tiny checkpoint, the second run while two busy loops load both cores: identical
    output bytes, and the output says how it adapted."""
    from CTSliceSynthesisLib.core.config import DEFAULT_ADAPT_STEPS, DEFAULT_SEED

    source = save_volume(tmp_path / "thick.nii.gz", ct_volume((40, 36, 8), seed=6), spacing=(0.8, 0.8, 3.0))
    checkpoint = save_tiny_checkpoint(tmp_path / "tiny.pt")
    outputs = [tmp_path / "quiet.nii.gz", tmp_path / "busy.nii.gz"]
    for number, output in enumerate(outputs):
        loops = busy_loops(2) if number == 1 else []
        try:
            result = subprocess.run(
                cli_command(["--input", source, "--output", output, "--scale", "2", "--model", checkpoint]),
                cwd=str(ENGINE_ROOT), env=cli_env(), capture_output=True, text=True, timeout=600,
            )
        finally:
            for loop in loops:
                loop.kill()
                loop.wait()
        assert result.returncode == 0, result.stderr
        assert f"adapted to this scan in {DEFAULT_ADAPT_STEPS} steps, seed {DEFAULT_SEED}" in result.stderr
    assert outputs[0].read_bytes() == outputs[1].read_bytes()
    description = nib.load(str(outputs[0])).header["descrip"].tobytes().rstrip(b"\0").decode()
    assert description.startswith(f"CTSS x2 tiny +adapt{DEFAULT_ADAPT_STEPS} seed{DEFAULT_SEED}; T=")
