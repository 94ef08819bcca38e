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
from CTSliceSynthesisLib.inference.pipeline import PipelineOptions, run_pipeline
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
                     "--fusion", fusion, "--quiet", "--adapt-seconds", "0"]))
    request = protocol.SynthesisRequest(str(source), str(outputs["process"][0]), 2, checkpoint=str(checkpoint),
                                        device="cpu", disagreement_path=str(outputs["process"][1]),
                                        precision="fp32", fusion=fusion, adapt_seconds=0)
    process = run(protocol.build_command(sys.executable, str(SCRIPT), request))
    assert protocol.parse_line(process.stdout.strip().splitlines()[-1]).info["model_id"] == "lite_x2"
    for cli_file, process_file in zip(outputs["cli"], outputs["process"]):
        assert cli_file.read_bytes() == process_file.read_bytes(), f"{cli_file.name} ≠ {process_file.name}"
    volume = np.asanyarray(nib.load(str(outputs["cli"][0])).dataobj)
    assert volume.shape == (24, 24, 11)
    np.testing.assert_array_equal(volume[:, :, ::2], np.asanyarray(nib.load(str(source)).dataobj))


def test_pipeline_adapts_then_synthesizes(tmp_path: Path, inputs, one_torch_thread) -> None:
    """A short adaptation runs to its end (the steps are counted), and the result names the weights as loaded."""
    source, checkpoint = inputs
    stages: List[str] = []
    options = PipelineOptions(source, tmp_path / "thin.nii.gz", 2, checkpoint=checkpoint, device="cpu",
                              precision="fp32", adapt_seconds=0.5)
    result = run_pipeline(options, progress=lambda fraction, stage: stages.append(stage))
    assert result.adapted_steps >= 1 and result.info.model_id == "lite_x2" and len(result.info.sha256) == 64
    assert stages[0] == "loading the model" and "adapting to this scan" in stages and stages[-1] == "done"
    assert nib.load(str(tmp_path / "thin.nii.gz")).shape == (24, 24, 11)


def test_synthesize_adapts_to_the_scan_by_default(tmp_path: Path, inputs, one_torch_thread, capsys) -> None:
    """Adaptation is on unless turned off: the parser's default and ``--help`` are DEFAULT_ADAPT_SECONDS (60 s),
    and ``synthesize`` given only ``--adapt-steps 1`` adapts, as the output's description records."""
    from CTSliceSynthesisLib import cli
    from CTSliceSynthesisLib.cli.main import build_parser
    from CTSliceSynthesisLib.core.config import DEFAULT_ADAPT_SECONDS

    source, checkpoint = inputs
    output = tmp_path / "thin.nii.gz"
    assert DEFAULT_ADAPT_SECONDS == 60
    parsed = build_parser().parse_args(["synthesize", "--input", str(source), "--output", str(output), "--scale", "2"])
    assert parsed.adapt_seconds == DEFAULT_ADAPT_SECONDS and parsed.adapt_steps is None
    with pytest.raises(SystemExit) as stopped:
        cli.main(["synthesize", "--help"])
    assert stopped.value.code == 0
    words = " ".join(capsys.readouterr().out.split())  # argparse wraps the help text
    adapt_help = words[words.index("--adapt-seconds ADAPT_SECONDS "):words.index("--adapt-steps ADAPT_STEPS ")]
    assert f"default {DEFAULT_ADAPT_SECONDS:g};" in adapt_help

    code = cli.main(["synthesize", "--input", str(source), "--output", str(output), "--scale", "2",
                     "--model", str(checkpoint), "--device", "cpu", "--precision", "fp32", "--adapt-steps", "1",
                     "--quiet"])
    assert code == 0, capsys.readouterr().err
    description = nib.load(str(output)).header["descrip"].tobytes().rstrip(b"\0").decode("ascii")
    assert "+adapt1" in description
    assert description.startswith("CTSliceSynthesis x2 lite_x2 +adapt1; in T=")


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
    with pytest.raises(InputError, match="unsupported scale 5"):
        run_pipeline(PipelineOptions(source, tmp_path / "o.nii", 5))
    assert list(tmp_path.iterdir()) == []
