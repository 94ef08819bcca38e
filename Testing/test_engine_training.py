"""Training: the loss goes down, checkpoints resume exactly, the memory is state, DDP keeps ranks identical."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from CTSliceSynthesisLib.io.checkpoint import load_checkpoint
from CTSliceSynthesisLib.training.data import TrainingVolume
from CTSliceSynthesisLib.training.trainer import Trainer, TrainConfig

ENGINE_ROOT = Path(__file__).resolve().parents[1] / "CTSliceSynthesis"
REPO_ROOT = ENGINE_ROOT.parent


def phantom(slices: int = 24, size: int = 48) -> np.ndarray:
    """A z-first HU volume with smooth anatomy-like structure that varies along z."""
    z, y, x = np.meshgrid(np.arange(slices), np.arange(size), np.arange(size), indexing="ij")
    body = 400 * np.exp(-((x - size / 2) ** 2 + (y - size / 2) ** 2) / (2 * (size / 3.5) ** 2))
    ribs = 600 * (np.sin(x / 3.0 + z / 4.0) * np.cos(y / 4.0 - z / 6.0) > 0.6)
    return (body + ribs - 300).astype(np.int16)


def small_config(**changes) -> TrainConfig:
    settings = dict(steps=30, patch=32, region=48, window=9, checkpoint_every=1000, learning_rate=1e-3)
    settings.update(changes)
    return TrainConfig(**settings)


STAGE_ONLY = {
    "pint": dict(pint_fraction=1.0, sint_fraction=0.0),
    "sint": dict(pint_fraction=0.0, sint_fraction=1.0),
    "joint": dict(pint_fraction=0.0, sint_fraction=0.0),
}


@pytest.mark.parametrize("stage", sorted(STAGE_ONLY))
def test_thirty_steps_of_each_stage_lower_its_loss(tmp_path: Path, stage: str) -> None:
    """PInt alone on in-plane pairs, SInt-A alone, and the joint objective each lower their own loss."""
    config = small_config(decay_fraction=1.0, pair_batch=8, pair_rows=24, **STAGE_ONLY[stage])
    trainer = Trainer(config, [TrainingVolume("p", phantom(), 2.0, (1.0, 1.0))], tmp_path)
    trainer.run()
    totals = [record["total"] for record in trainer.history]
    assert len(totals) == 30
    assert {record["stage"] for record in trainer.history} == {float(("pint", "sint", "joint").index(stage))}
    assert np.mean(totals[-5:]) < 0.7 * np.mean(totals[:5])
    assert (tmp_path / "checkpoint_latest.pt").is_file()


def test_stages_follow_their_fractions_and_restart_the_learning_rate() -> None:
    """60 / 20 / 20 % of 10 steps: steps 0–5 PInt, 6–7 SInt-A, 8–9 joint; lr ×0.1 after half of each stage."""
    config = small_config(steps=10, pint_fraction=0.6, sint_fraction=0.2, decay_fraction=0.5)
    assert config.stage_bounds() == [("pint", 0, 6), ("sint", 6, 8), ("joint", 8, 10)]
    assert [config.stage_at(step)[0] for step in range(10)] == ["pint"] * 6 + ["sint"] * 2 + ["joint"] * 2
    trainer = Trainer(config, [TrainingVolume("p", phantom(), 2.0)], None)
    rates = [trainer.learning_rate_at(step) for step in range(10)]
    assert rates == pytest.approx([1e-3] * 3 + [1e-4] * 3 + [1e-3, 1e-4] + [1e-3, 1e-4])


def test_pint_stage_trains_pint_only() -> None:
    """A PInt step leaves SInt-A (weights and memory) untouched; a SInt-A step leaves PInt untouched."""
    trainer = Trainer(small_config(steps=2, pint_fraction=0.5, sint_fraction=0.5, pair_rows=24),
                      [TrainingVolume("p", phantom(), 2.0)], None)
    sint_before = {k: v.clone() for k, v in trainer.networks.sint.state_dict().items()}
    pint_before = {k: v.clone() for k, v in trainer.networks.pint.state_dict().items()}
    trainer.train_step()
    assert all(torch.equal(v, trainer.networks.sint.state_dict()[k]) for k, v in sint_before.items())
    assert not all(torch.equal(v, trainer.networks.pint.state_dict()[k]) for k, v in pint_before.items())
    pint_after = {k: v.clone() for k, v in trainer.networks.pint.state_dict().items()}
    trainer.train_step()
    assert all(torch.equal(v, trainer.networks.pint.state_dict()[k]) for k, v in pint_after.items())


def test_memory_is_state_not_parameter() -> None:
    trainer = Trainer(small_config(steps=1, pint_fraction=0.0, sint_fraction=0.0), [TrainingVolume("p", phantom(), 2.0)], None)
    memory = trainer.networks.sint.memory.items
    optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert id(memory) not in optimised
    before = memory.clone()
    trainer.train_step()
    assert not torch.equal(before, trainer.networks.sint.memory.items)  # updated by the forward passes
    assert torch.allclose(trainer.networks.sint.memory.items.norm(dim=1), torch.ones(len(before)), atol=1e-5)
    assert "sint.memory.items" in trainer.checkpoint_payload()["networks"]


def test_activation_checkpointing_gives_the_same_steps() -> None:
    """Recomputing the residual groups' activations changes memory, not the arithmetic: same losses, same
    weights after two steps; ``auto`` turns it on for the paper preset only."""
    volumes = [TrainingVolume("p", phantom(), 2.0)]
    runs = []
    for mode in ("off", "on"):
        trainer = Trainer(small_config(steps=2, checkpoint_activations=mode), volumes, None)
        groups = [m for m in trainer.networks.modules() if type(m).__name__ == "ResidualGroup"]
        assert groups and all(group.checkpointed == (mode == "on") for group in groups)
        losses = [trainer.train_step()["total"] for _ in range(2)]
        runs.append((losses, trainer.networks.state_dict()))
    assert runs[0][0] == pytest.approx(runs[1][0], rel=1e-5)
    for name, value in runs[0][1].items():
        torch.testing.assert_close(runs[1][1][name], value, atol=1e-5, rtol=1e-4, msg=name)
    assert TrainConfig(preset="paper").uses_activation_checkpointing
    assert not TrainConfig(preset="lite").uses_activation_checkpointing


def test_resume_reproduces_the_next_steps_exactly(tmp_path: Path) -> None:
    volumes = [TrainingVolume("p", phantom(), 2.0)]
    first = Trainer(small_config(steps=4), volumes, tmp_path / "a")
    first.train_step()
    first.train_step()
    checkpoint = first.save(tmp_path / "step2.pt")
    continued = [first.train_step()["total"] for _ in range(2)]

    torch.manual_seed(999)  # a different global RNG state must not matter after restore
    second = Trainer(small_config(steps=4), volumes, tmp_path / "b")
    second.restore(load_checkpoint(checkpoint))
    assert second.step == 2
    resumed = [second.train_step()["total"] for _ in range(2)]
    assert resumed == continued
    for (name, a), b in zip(first.networks.state_dict().items(), second.networks.state_dict().values()):
        assert torch.equal(a, b), name


def test_learning_rate_decays_once(tmp_path: Path) -> None:
    trainer = Trainer(small_config(steps=10, decay_fraction=0.2), [TrainingVolume("p", phantom(), 2.0)], None)
    assert [trainer.learning_rate_at(s) for s in (0, 1, 2, 9)] == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4])


def test_train_cli_resume_and_fine_tune(tmp_path: Path) -> None:
    volume_path = tmp_path / "thick.nii.gz"
    nib.save(nib.Nifti1Image(np.moveaxis(phantom(), 0, 2), np.diag([0.8, 0.8, 3.0, 1.0])), str(volume_path))
    env = {**os.environ, "PYTHONPATH": str(ENGINE_ROOT), "OMP_NUM_THREADS": "2"}
    base = [sys.executable, str(REPO_ROOT / "Training" / "train.py"), "--patch", "32", "--window", "5", "--quiet"]
    run = subprocess.run(
        base + ["--data", str(volume_path), "--output-dir", str(tmp_path / "run"), "--steps", "2"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr
    checkpoint = tmp_path / "run" / "checkpoint_latest.pt"
    assert load_checkpoint(checkpoint)["step"] == 2
    assert (tmp_path / "run" / "loss_history.csv").read_text().count("\n") == 3
    resumed = subprocess.run(
        base + ["--resume", str(checkpoint), "--output-dir", str(tmp_path / "run"), "--steps", "3"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert load_checkpoint(checkpoint)["step"] == 3
    tuned = subprocess.run(
        base + ["--data", str(volume_path), "--init", str(tmp_path / "run" / "model_final.pt"),
                "--output-dir", str(tmp_path / "tuned"), "--steps", "1"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert tuned.returncode == 0, tuned.stderr
    assert load_checkpoint(tmp_path / "tuned" / "checkpoint_latest.pt")["step"] == 1


DDP_SCRIPT = textwrap.dedent(
    """
    import sys, torch, numpy as np
    sys.path.insert(0, sys.argv[1])
    from CTSliceSynthesisLib.training.data import TrainingVolume
    from CTSliceSynthesisLib.training.trainer import Trainer, TrainConfig, init_distributed
    torch.set_num_threads(1)
    context = init_distributed(torch.device("cpu"))
    rng = np.random.default_rng(0)
    volume = (rng.normal(0, 200, (12, 40, 40))).astype(np.int16)
    config = TrainConfig(steps=2, patch=32, region=40, window=5)
    trainer = Trainer(config, [TrainingVolume("v", volume, 2.0)], None, context=context)
    losses = [trainer.train_step()["total"] for _ in range(2)]
    state = {k: v.clone() for k, v in trainer.networks.state_dict().items()}
    torch.save({"state": state, "losses": losses, "world": context.world_size}, sys.argv[2] + f"/rank{context.rank}.pt")
    """
)


@pytest.mark.slow
def test_ddp_two_cpu_processes_keep_parameters_identical(tmp_path: Path) -> None:
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517",
               str(script), str(ENGINE_ROOT), str(tmp_path)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr[-3000:]
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert rank0["world"] == rank1["world"] == 2
    assert rank0["losses"] != rank1["losses"]  # each rank saw its own data
    for name, value in rank0["state"].items():
        if name == "sint.memory.items":
            continue  # per-rank state between forwards; DDP broadcasts rank 0's at each forward
        assert torch.equal(value, rank1["state"][name]), name


def test_thicken_slices_is_the_running_mean_of_consecutive_slices() -> None:
    """Width 2 on slices 0, 1, 4 gives 0.5 and 2.5; width 1 is the identity."""
    from CTSliceSynthesisLib.training.data import thicken_slices

    stack = np.array([0.0, 1.0, 4.0], dtype=np.float32)[:, None, None] * np.ones((1, 2, 3), np.float32)
    np.testing.assert_allclose(thicken_slices(stack, 2)[:, 0, 0], [0.5, 2.5])
    np.testing.assert_allclose(thicken_slices(stack, 3)[:, 0, 0], [5.0 / 3.0])
    np.testing.assert_array_equal(thicken_slices(stack, 1), stack)


def test_profile_augmentation_draws_every_width_and_keeps_the_window() -> None:
    """With ``max_profile_width`` 3 the sampler returns windows of the requested length, some of them thickened
    (a linear ramp along z stays a ramp, shifted by (w − 1)/2): both whole and half offsets occur."""
    from CTSliceSynthesisLib.training.data import TrainingVolume, WindowSampler

    ramp = np.broadcast_to(np.arange(40, dtype=np.float32)[:, None, None] * 10.0, (40, 16, 16)).copy()
    sampler = WindowSampler(
        [TrainingVolume("ramp", ramp, 1.0)], window=9, patch=16, region=16, generator=torch.Generator().manual_seed(0),
        flips=False, max_profile_width=3,
    )
    offsets = set()
    for _ in range(60):
        window = sampler.sample_one()
        assert window.shape == (9, 16, 16)
        np.testing.assert_allclose(np.diff(window[:, 0, 0]), 10.0, atol=1e-4)
        offsets.add(round(float(window[0, 0, 0] / 10.0) % 1.0, 3))
    assert offsets == {0.0, 0.5}  # widths 1 and 3 give whole offsets, width 2 a half
