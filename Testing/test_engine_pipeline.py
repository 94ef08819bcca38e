"""One pipeline for both front ends: ``ct-slice-synthesis synthesize`` and the Slicer module's background process
(``Scripts/synthesize_process.py``) run :func:`inference.pipeline.run_pipeline`, so the same input with the same
options gives the same bytes; and the pipeline itself, in process (adaptation, ``.npy``, refusals)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import List

import nibabel as nib
import numpy as np
import pytest
import torch

from cli_harness import ENGINE_ROOT, cli_command, cli_env, ct_volume, save_volume
from CTSliceSynthesisLib.core.errors import InputError, OutputError
from CTSliceSynthesisLib.inference.model_store import create_model, save_model
from CTSliceSynthesisLib.inference.pipeline import Adaptation, PipelineOptions, run_pipeline
from CTSliceSynthesisLib.slicer_support import process_protocol as protocol

SCRIPT = ENGINE_ROOT / "Scripts" / "synthesize_process.py"
SHAPE = (24, 24, 6)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory):
    """A small int16 NIfTI (4 mm slices along the last axis) and an untrained lite ×2 checkpoint."""
    folder = tmp_path_factory.mktemp("pipeline")
    torch.manual_seed(2)
    save_model(create_model("lite", 2), folder / "lite_x2.pt")
    source = save_volume(folder / "thick.nii.gz", ct_volume(SHAPE, seed=4), spacing=(0.8, 0.8, 4.0))
    return source, folder / "lite_x2.pt"


def run(command: List[str]) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=str(ENGINE_ROOT), env=cli_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.mark.parametrize("fusion", ["equal", "calibrated"])
def test_cli_and_background_process_write_the_same_bytes(tmp_path: Path, inputs, fusion: str) -> None:
    source, checkpoint = inputs
    outputs = {name: (tmp_path / f"{name}.nii", tmp_path / f"{name}_spread.nii") for name in ("cli", "process")}
    run(cli_command(["--input", source, "--output", outputs["cli"][0], "--disagreement", outputs["cli"][1],
                     "--scale", "2", "--model", checkpoint, "--device", "cpu", "--precision", "fp32",
                     "--fusion", fusion, "--quiet", "--adapt-steps", "2"]))
    request = protocol.SynthesisRequest(str(source), str(outputs["process"][0]), 2, checkpoint=str(checkpoint),
                                        device="cpu", disagreement_path=str(outputs["process"][1]),
                                        precision="fp32", fusion=fusion, adapt_steps=2)
    process = run(protocol.build_command(sys.executable, str(SCRIPT), request))
    assert protocol.parse_line(process.stdout.strip().splitlines()[-1]).info["model_id"] == "lite_x2"
    for cli_file, process_file in zip(outputs["cli"], outputs["process"]):
        assert cli_file.read_bytes() == process_file.read_bytes(), f"{cli_file.name} ≠ {process_file.name}"
    volume = np.asanyarray(nib.load(str(outputs["cli"][0])).dataobj)
    assert volume.shape == (24, 24, 11)
    np.testing.assert_array_equal(volume[:, :, ::2], np.asanyarray(nib.load(str(source)).dataobj))


def test_pipeline_adapts_then_synthesizes(tmp_path: Path, inputs, one_torch_thread) -> None:
    """A short adaptation runs all its steps, with one constant stage text; the result names the weights as
    loaded and says how it adapted."""
    source, checkpoint = inputs
    stages: List[str] = []
    options = PipelineOptions(source, tmp_path / "thin.nii.gz", 2, checkpoint=checkpoint, device="cpu",
                              precision="fp32", adapt_steps=2, seed=5)
    result = run_pipeline(options, progress=lambda fraction, stage: stages.append(stage))
    assert result.adapted_steps == 2 and result.info.model_id == "lite_x2" and len(result.info.sha256) == 64
    assert result.adaptation == Adaptation(2, 2, 5, False, None, result.adaptation.seconds)
    assert stages[0] == "loading the model" and "adapting to this scan" in stages and stages[-1] == "done"
    assert not [stage for stage in stages if "step" in stage]  # progress is a fraction, not a line per step
    assert nib.load(str(tmp_path / "thin.nii.gz")).shape == (24, 24, 11)


@pytest.mark.parametrize("command", ["synthesize", "evaluate"])
def test_adaptation_defaults_are_steps_and_a_seed(command: str, capsys) -> None:
    """Adaptation is on unless turned off, with a budget in steps: the parser's defaults and ``--help`` are
    DEFAULT_ADAPT_STEPS and DEFAULT_SEED, and ``--adapt-seconds`` is an optional cap with no default."""
    from CTSliceSynthesisLib import cli
    from CTSliceSynthesisLib.cli.main import build_parser
    from CTSliceSynthesisLib.core.config import DEFAULT_ADAPT_STEPS, DEFAULT_SEED

    required = {"synthesize": ["--input", "a.nii", "--output", "b.nii", "--scale", "2"],
                "evaluate": ["--input", "a.nii", "--output-dir", "out", "--scale", "2"]}[command]
    parsed = build_parser().parse_args([command, *required])
    assert (parsed.adapt_steps, parsed.adapt_seconds, parsed.seed) == (DEFAULT_ADAPT_STEPS, None, DEFAULT_SEED)
    with pytest.raises(SystemExit) as stopped:
        cli.main([command, "--help"])
    assert stopped.value.code == 0
    words = " ".join(capsys.readouterr().out.split())  # argparse wraps the help text
    steps_help = words[words.index("--adapt-steps N "):words.index("--adapt-seconds S ")]
    assert f"default {DEFAULT_ADAPT_STEPS};" in steps_help
    cap_help = words[words.index("--adapt-seconds S "):words.index("--seed SEED ")]
    assert "no default" in cap_help and "not reproducible" in cap_help


def test_synthesize_records_its_adaptation(tmp_path: Path, inputs, one_torch_thread, capsys) -> None:
    """``--adapt-steps 1 --seed 3`` adapts one step: the output's description and the last line say so;
    ``--adapt-steps 0`` and ``--adapt-seconds 0`` both turn adaptation off."""
    from CTSliceSynthesisLib import cli

    source, checkpoint = inputs
    base = ["synthesize", "--input", str(source), "--scale", "2", "--model", str(checkpoint), "--device", "cpu",
            "--precision", "fp32"]
    output = tmp_path / "thin.nii.gz"
    assert cli.main([*base, "--output", str(output), "--adapt-steps", "1", "--seed", "3"]) == 0
    err = capsys.readouterr().err
    assert "(adapted to this scan in 1 steps, seed 3)" in err.splitlines()[-1]
    description = nib.load(str(output)).header["descrip"].tobytes().rstrip(b"\0").decode("ascii")
    assert description.startswith("CTSS x2 lite_x2 +adapt1 seed3; T=")
    for off in (["--adapt-steps", "0"], ["--adapt-seconds", "0"]):
        output = tmp_path / f"off{off[0]}.nii.gz"
        assert cli.main([*base, "--output", str(output), "--quiet", *off]) == 0
        description = nib.load(str(output)).header["descrip"].tobytes().rstrip(b"\0").decode("ascii")
        assert "+adapt" not in description and "seed" not in description
    assert cli.main([*base, "--output", str(tmp_path / "bad.nii.gz"), "--adapt-steps", "-1"]) == 2
    assert "--adapt-steps must not be negative" in capsys.readouterr().err


def test_pipeline_on_a_numpy_array(tmp_path: Path, inputs, one_torch_thread) -> None:
    """A ``.npy`` array needs its axis, and gives a ``.npy`` array back."""
    _, checkpoint = inputs
    kji = ct_volume((5, 16, 24), seed=1)
    np.save(tmp_path / "input.npy", kji)
    options = PipelineOptions(tmp_path / "input.npy", tmp_path / "output.npy", 2, checkpoint=checkpoint,
                              device="cpu", precision="fp32", adapt_seconds=0)
    with pytest.raises(InputError, match="--axis is required"):
        run_pipeline(options)
    with pytest.raises(OutputError, match=r"must end in \.npy"):
        run_pipeline(PipelineOptions(tmp_path / "input.npy", tmp_path / "output.nii", 2, axis=0))
    ready = []
    result = run_pipeline(dataclasses.replace(options, axis=0), on_ready=ready.append)
    assert ready == [result.info] and result.info.spacing is None and result.output_shape == (9, 16, 24)
    np.testing.assert_array_equal(np.load(tmp_path / "output.npy")[::2], kji)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["input.npy", "output.npy"]


def test_pipeline_refuses_unknown_options_before_reading(tmp_path: Path, inputs) -> None:
    source, _ = inputs
    with pytest.raises(InputError, match="unknown fusion"):
        run_pipeline(PipelineOptions(source, tmp_path / "o.nii", 2, fusion="median"))
    with pytest.raises(InputError, match="unsupported scale 7"):
        run_pipeline(PipelineOptions(source, tmp_path / "o.nii", 7))
    with pytest.raises(InputError, match="--adapt-steps must not be negative"):
        run_pipeline(PipelineOptions(source, tmp_path / "o.nii", 2, adapt_steps=-1))
    with pytest.raises(InputError, match="--adapt-seconds must not be negative"):
        run_pipeline(PipelineOptions(source, tmp_path / "o.nii", 2, adapt_seconds=-1.0))
    assert list(tmp_path.iterdir()) == []
