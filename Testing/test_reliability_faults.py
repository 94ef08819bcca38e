"""Issue 6, faults: cancelling, killing and racing the engine leaves no partial output and loses no work.

- Ctrl-C during ``synthesize``: exit 130 within seconds, one "cancelled" line, nothing written.
- Cancel in the Slicer module (the runner ends the background script during the synthesis): nothing written.
  ``test_slicer_process.py`` also cancels during adaptation (``test_cancel_from_the_runner_stops_the_real_script``)
  and by signal (``test_signal_leaves_no_output``).
- ``kill -9`` during training, then ``--resume``: the losses of the steps after the checkpoint are those of an
  uninterrupted run, exactly.
- Two runs writing the same output at once: a complete file from one of them, never a mix, no temporaries.
- A batch folder with one bad file: the good ones are written, the bad one reported, the exit code non-zero.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import nibabel as nib
import numpy as np
import pytest
import torch

from cli_harness import (
    ENGINE_ROOT,
    PROGRAM,
    FileState,
    StderrReader,
    cli_command,
    cli_env,
    ct_volume,
    default_sigint,
    error_lines,
    save_volume,
    synth_args,
    wait_for,
)
from CTSliceSynthesisLib.core.geometry import thick_axis, upsampled_affine, voxel_spacing
from CTSliceSynthesisLib.inference import model_store
from CTSliceSynthesisLib.inference.synthesis import synthesize_volume
from CTSliceSynthesisLib.io.checkpoint import load_checkpoint
from CTSliceSynthesisLib.io.nifti import read_nifti, write_nifti
from CTSliceSynthesisLib.slicer_support import batch_args, process_protocol
from CTSliceSynthesisLib.slicer_support.batch_runner import run_batch
from CTSliceSynthesisLib.slicer_support.process_runner import SynthesisProcess

POSIX_ONLY = pytest.mark.skipif(os.name == "nt", reason="signals and process groups are POSIX")
SCRIPT = ENGINE_ROOT / "Scripts" / "synthesize_process.py"
BIG_SHAPE = (256, 256, 60)  # a few seconds of ×4 synthesis on one thread with an untrained lite model
LOADING_STAGES = ("loading the engine", "loading the model")
CANCEL_WITHIN_S = 10.0


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Dict[int, Path]:
    """Untrained lite checkpoints for ×2 and ×4."""
    folder = tmp_path_factory.mktemp("fault_models")
    paths = {}
    for scale in (2, 4):
        torch.manual_seed(scale)
        paths[scale] = folder / f"lite_x{scale}.pt"
        model_store.save_model(model_store.create_model("lite", scale), paths[scale])
    return paths


@pytest.fixture(scope="module")
def big_volume(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_volume(tmp_path_factory.mktemp("big") / "big.nii", ct_volume(BIG_SHAPE))


def stop_process(process: subprocess.Popen) -> None:
    """Kill ``process`` if a failed assertion left it running."""
    if process.poll() is None:
        process.kill()
        process.wait()


# --------------------------------------------------------------------------------------------------------------
# Cancel


@POSIX_ONLY
def test_fault_cancel_cli_ctrl_c(tmp_path: Path, models: Dict[int, Path], big_volume: Path) -> None:
    state = FileState.of(big_volume)
    output = tmp_path / "out" / "thin.nii.gz"
    output.parent.mkdir()
    process = subprocess.Popen(
        cli_command(synth_args(big_volume, output, 4, models[4])),
        cwd=str(ENGINE_ROOT),
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=default_sigint,
    )
    reader = StderrReader(process.stderr)
    reader.start()
    try:
        started = wait_for(lambda: "; model lite_x4" in reader.text() or process.poll() is not None, 120)
        assert started and process.poll() is None, f"the command did not start working: {reader.text()!r}"
        time.sleep(0.3)  # the line comes just before the synthesis starts
        assert process.poll() is None, "synthesis finished before Ctrl-C: use a bigger volume"
        interrupted = time.monotonic()
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=120)
        took = time.monotonic() - interrupted
    finally:
        stop_process(process)
    reader.join(timeout=10)
    stderr = reader.text()
    assert code == 130, stderr
    assert took < CANCEL_WITHIN_S, f"exit {took:.1f} s after Ctrl-C"
    assert "Traceback" not in stderr, stderr
    messages = [line for line in error_lines(stderr) if line.startswith(f"{PROGRAM}:")]
    assert messages == [f"{PROGRAM}: cancelled; nothing was written"], stderr
    assert error_lines(stderr)[-1] == messages[0]
    assert FileState.of(big_volume) == state
    assert os.listdir(output.parent) == []


@POSIX_ONLY
def test_fault_cancel_slicer_during_synthesis(tmp_path: Path, models: Dict[int, Path], big_volume: Path) -> None:
    """The module's Cancel button: the runner ends the background script while it synthesizes."""
    output = tmp_path / "out" / "thin.nii.gz"
    output.parent.mkdir()
    request = process_protocol.SynthesisRequest(str(big_volume), str(output), 4, checkpoint=str(models[4]),
                                                device="cpu", adapt_seconds=0)
    stages: List[str] = []
    process = SynthesisProcess(
        process_protocol.build_command(sys.executable, str(SCRIPT), request),
        lambda fraction, stage: stages.append(stage),
        lambda line: None,
        env=cli_env(),
    )
    deadline = time.monotonic() + 120
    while not stages or stages[-1] in LOADING_STAGES:  # cancel at the first report of the synthesis itself
        assert process.poll() is None, f"the script ended before synthesizing: {stages}"
        assert time.monotonic() < deadline, stages
        time.sleep(0.02)
    cancelled = time.monotonic()
    process.cancel()
    outcome = None
    while outcome is None:
        outcome = process.poll()
        assert time.monotonic() - cancelled < CANCEL_WITHIN_S + 5, "the script did not stop"
        time.sleep(0.02)
    assert outcome.status == "cancelled", outcome
    assert not stages[-1].startswith("done") and "writing" not in stages[-1], stages
    assert os.listdir(output.parent) == []


# --------------------------------------------------------------------------------------------------------------
# kill -9 during training, then resume


def training_volume(path: Path) -> Path:
    """A 48×48×24 int16 phantom with 3 mm slices."""
    z, y, x = np.meshgrid(np.arange(24), np.arange(48), np.arange(48), indexing="ij")
    body = 400 * np.exp(-((x - 24) ** 2 + (y - 24) ** 2) / (2 * (48 / 3.5) ** 2))
    ribs = 600 * (np.sin(x / 3.0 + z / 4.0) * np.cos(y / 4.0 - z / 6.0) > 0.6)
    volume = np.moveaxis(body + ribs - 300, 0, 2).astype(np.int16)
    nib.save(nib.Nifti1Image(volume, np.diag([0.8, 0.8, 3.0, 1.0])), str(path))
    return path


def train_command(run: Path, *extra: str) -> List[str]:
    """8 steps of lite ×2 on 32×32 patches, a checkpoint every 4 steps."""
    return cli_command(
        ["--output-dir", str(run), "--steps", "8", "--checkpoint-every", "4", "--patch", "32", "--region", "48",
         "--window", "5", "--seed", "3", "--device", "cpu", "--quiet", *extra],
        command="train",
    )


def train(run: Path, *extra: str) -> None:
    result = subprocess.run(train_command(run, *extra), env=cli_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


def losses(run: Path) -> List[Dict[str, float]]:
    return [json.loads(line) for line in (run / "losses.jsonl").read_text().splitlines()]


@POSIX_ONLY
def test_fault_kill_9_during_training_then_resume(tmp_path: Path) -> None:
    data = training_volume(tmp_path / "thick.nii.gz")
    train(tmp_path / "whole", "--data", str(data))
    uninterrupted = losses(tmp_path / "whole")
    assert [record["step"] for record in uninterrupted] == list(range(1, 9))

    killed = tmp_path / "killed"
    checkpoint = killed / "checkpoint_latest.pt"
    process = subprocess.Popen(
        train_command(killed, "--data", str(data)), env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 300
        while not checkpoint.exists():  # written atomically at step 4: it exists only once complete
            assert process.poll() is None and time.monotonic() < deadline, "training ended before its checkpoint"
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        stop_process(process)
    assert not (killed / "model_final.pt").exists()
    assert load_checkpoint(checkpoint)["step"] == 4, "the kill came after step 8: the run was not interrupted"
    assert 4 <= len((killed / "losses.jsonl").read_text().splitlines()) < 8

    train(killed, "--resume", str(checkpoint))
    resumed = losses(killed)
    assert [record["step"] for record in resumed] == list(range(1, 9))  # steps 5+ of the killed run not repeated
    assert resumed[4:] == uninterrupted[4:]  # steps 5–8, every loss term, exactly
    assert resumed == uninterrupted
    assert load_checkpoint(checkpoint)["step"] == 8
    assert not list(killed.glob(".*.partial-*"))


# --------------------------------------------------------------------------------------------------------------
# Two runs writing the same output


def expected_output(source: Path, model: Path, folder: Path) -> np.ndarray:
    """What ``synthesize`` alone writes for ``source`` (run in this process, into ``folder``)."""
    from CTSliceSynthesisLib import cli

    output = folder / f"reference_{source.name}"
    with contextlib.redirect_stderr(io.StringIO()):
        assert cli.main(["synthesize", *synth_args(source, output, 2, model, "--quiet")]) == 0
    return np.asanyarray(nib.load(str(output)).dataobj)


def test_fault_two_runs_write_the_same_output(tmp_path: Path, models: Dict[int, Path]) -> None:
    work = tmp_path / "work"
    work.mkdir()
    sources = [
        save_volume(work / "a.nii.gz", ct_volume((96, 96, 5), seed=1)),
        save_volume(work / "b.nii.gz", ct_volume((96, 96, 7), seed=2)),
    ]
    output = work / "same.nii.gz"
    runs = [
        subprocess.Popen(
            cli_command(synth_args(source, output, 2, models[2], "--overwrite", "--quiet")),
            cwd=str(ENGINE_ROOT), env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for source in sources
    ]
    try:
        results = [(run.wait(timeout=300), run.communicate()) for run in runs]
    finally:
        for run in runs:
            stop_process(run)
    for code, (_, stderr) in results:
        assert code == 0, stderr
    written = np.asanyarray(nib.load(str(output)).dataobj)  # loads completely: not truncated
    candidates = [expected_output(source, models[2], tmp_path) for source in sources]
    assert any(written.shape == c.shape and np.array_equal(written, c) for c in candidates), "a mixed or partial file"
    assert sorted(os.listdir(work)) == ["a.nii.gz", "b.nii.gz", "same.nii.gz"]  # no temporaries left


# --------------------------------------------------------------------------------------------------------------
# A batch folder with one bad file


def engine_synthesize_file(model: model_store.SynthesisModel):
    """The batch's per-volume work done by the engine itself (Slicer reads and writes files the same way)."""

    def synthesize_file(source: Path, target: Path, options: batch_args.BatchOptions) -> None:
        volume = read_nifti(source)
        axis = thick_axis(voxel_spacing(volume.affine))
        result = synthesize_volume(volume.data, options.scale, model, axis=axis)
        write_nifti(target, result.volume, upsampled_affine(volume.affine, axis, options.scale), volume.header)

    return synthesize_file


def test_fault_batch_with_one_bad_file(tmp_path: Path, models: Dict[int, Path]) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    good = [save_volume(inputs / name, ct_volume((24, 20, 5), seed=n)) for n, name in enumerate(["a.nii.gz", "c.nii"])]
    bad = inputs / "b.nii.gz"
    bad.write_bytes(good[0].read_bytes()[:400])  # truncated
    outputs = tmp_path / "out"
    outputs.mkdir()
    lines: List[str] = []
    argv = ["--input", str(inputs), "--output", str(outputs), "--scale", "2", "--checkpoint", str(models[2]),
            "--format", "nifti"]
    code = run_batch(argv, engine_synthesize_file(model_store.load_model(models[2], 2, "cpu")), echo=lines.append)

    assert code == batch_args.EXIT_FAILED
    assert len(lines) == 4, lines
    assert lines[0].startswith(f"[1/3] done {good[0]}")
    assert lines[1].startswith(f"[2/3] FAILED {bad}: cannot read b.nii.gz: the file is truncated or corrupt"), lines
    assert lines[2].startswith(f"[3/3] done {good[1]}")
    assert lines[3] == "error: 1 of 3 volumes failed"
    written = sorted(os.listdir(outputs))
    assert len(written) == 2 and not any(name.startswith(".") for name in written), written
    for name, source in zip(written, good):
        assert np.array_equal(np.asanyarray(nib.load(str(outputs / name)).dataobj)[..., ::2], read_nifti(source).data)
