"""The background process of the Slicer module: its line protocol, the runner, and the real script end to end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import List, Tuple

import numpy as np
import pytest

from CTSliceSynthesisLib.core.config import DEFAULT_ADAPT_STEPS, DEFAULT_SEED
from CTSliceSynthesisLib.core.callbacks import sub_range
from CTSliceSynthesisLib.slicer_support import process_protocol as protocol
from CTSliceSynthesisLib.slicer_support.process_runner import Outcome, SynthesisProcess

SCRIPT = Path(__file__).resolve().parents[1] / "CTSliceSynthesis" / "Scripts" / "synthesize_process.py"
POSIX_ONLY = pytest.mark.skipif(os.name == "nt", reason="process groups and signals are POSIX")


class Recorder:
    """Collects what a :class:`SynthesisProcess` reports."""

    def __init__(self) -> None:
        self.progress: List[Tuple[float, str]] = []
        self.log: List[str] = []

    def start(self, command: List[str]) -> SynthesisProcess:
        return SynthesisProcess(command, lambda f, s: self.progress.append((f, s)), self.log.append)


def finish(process: SynthesisProcess, timeout: float = 120.0) -> Outcome:
    """Poll ``process`` until it ends (failing the test after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        outcome = process.poll()
        if outcome is not None:
            return outcome
        time.sleep(0.02)
    process.cancel(grace_seconds=0.1)
    pytest.fail(f"the process did not end within {timeout} s")


def python(code: str) -> List[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


# --- the line protocol ------------------------------------------------------------------------------------


def test_protocol_lines_round_trip() -> None:
    assert protocol.parse_line(protocol.format_progress(0.25, "axial view")) == protocol.Progress(0.25, "axial view")
    assert protocol.parse_line(protocol.format_progress(1.7, "x")).fraction == 1.0
    assert protocol.parse_line(protocol.format_progress(-3, "x")).fraction == 0.0
    info = {"model_id": "lite_x2", "sha256": None, "seconds": 1.5}
    assert protocol.parse_line(protocol.format_result(info)) == protocol.Result(info)
    failure = protocol.parse_line(protocol.format_failure("bad\nthing   happened"))
    assert failure == protocol.Failure("bad thing happened")


@pytest.mark.parametrize(
    "line",
    ["ordinary log line", "@CTSS", "@CTSS PROGRESS abc stage", "@CTSS RESULT {not json", "@CTSS RESULT [1]",
     "@CTSS UNKNOWN 1", "CTSS PROGRESS 0.5 x"],
)
def test_other_lines_are_log_lines(line: str) -> None:
    assert protocol.parse_line(line) is None


def test_sub_range_maps_a_stage_onto_the_overall_bar() -> None:
    seen = []
    stage = sub_range(lambda f, s: seen.append((round(f, 6), s)), 0.5, 0.9)
    stage(0.0, "a")
    stage(0.5, "b")
    stage(2.0, "c")
    assert seen == [(0.5, "a"), (0.7, "b"), (0.9, "c")]


@pytest.mark.parametrize(
    "request_",
    [
        protocol.SynthesisRequest("in.npy", "out.npy", 2, axis=0),
        protocol.SynthesisRequest("in dir/a b.nii.gz", "o.nii.gz", 4, checkpoint="c k.pt", device="cuda",
                                  adapt_seconds=90.5, disagreement_path="d.nii.gz", seed=7),
        protocol.SynthesisRequest("in.nii", "out.nii", 3, axis=2, device="cpu"),
        protocol.SynthesisRequest("in.npy", "out.npy", 2, axis=1, precision="fp32", fusion="calibrated"),
        protocol.SynthesisRequest("in.npy", "out.npy", 3, axis=0, spacing=(5.0, 0.7, 0.703125), slice_thickness=0.625,
                                  thickness_source="dicom", adapt_seconds=0.0, adapt_steps=40),
        protocol.SynthesisRequest("in.npy", "out.npy", 2, axis=0, adapt_steps=0),
        protocol.SynthesisRequest("in.npy", "out.npy", 2, axis=0, spacing=(2.5, 0.5, 0.5), slice_thickness=3.75,
                                  thickness_source="given"),
        protocol.SynthesisRequest("in.npy", "out.npy", 2, axis=2, spacing=(0.8, 0.8, 5.0)),
    ],
)
def test_command_line_round_trips(request_: protocol.SynthesisRequest) -> None:
    command = protocol.build_command("/usr/bin/PythonSlicer", "/x/synthesize_process.py", request_)
    assert command[:2] == ["/usr/bin/PythonSlicer", "/x/synthesize_process.py"]
    assert protocol.parse_command(command[2:]) == request_


def test_the_slice_geometry_reaches_the_process_arguments() -> None:
    request_ = protocol.SynthesisRequest("in.npy", "out.npy", 2, axis=0, spacing=(5.0, 0.7, 0.7),
                                         slice_thickness=2.5, thickness_source="dicom", adapt_steps=7)
    command = protocol.build_command("py", "s.py", request_)
    assert command[command.index("--spacing") + 1:command.index("--spacing") + 4] == ["5", "0.7", "0.7"]
    assert command[command.index("--slice-thickness") + 1] == "2.5"
    assert command[command.index("--thickness-source") + 1] == "dicom"
    assert command[command.index("--adapt-steps") + 1] == "7"
    unknown = protocol.build_command("py", "s.py", protocol.SynthesisRequest("in.npy", "out.npy", 2, axis=0))
    assert not {"--spacing", "--slice-thickness", "--thickness-source", "--adapt-seconds"} & set(unknown)
    parsed = protocol.parse_command(unknown[2:])
    assert (parsed.adapt_steps, parsed.adapt_seconds, parsed.seed) == (DEFAULT_ADAPT_STEPS, None, DEFAULT_SEED)


@pytest.mark.parametrize("argv", [["--input", "a", "--output", "b", "--scale", "7"],
                                  ["--input", "a", "--output", "b", "--scale", "2", "--adapt-seconds", "-1"],
                                  ["--input", "a", "--output", "b", "--scale", "2", "--adapt-steps", "-1"],
                                  ["--input", "a", "--output", "b", "--scale", "2", "--fusion", "median"],
                                  ["--input", "a", "--output", "b", "--scale", "2", "--precision", "fp8"],
                                  ["--input", "a", "--scale", "2"],
                                  ["--input", "a", "--output", "b", "--scale", "2", "--slice-thickness", "0"],
                                  ["--input", "a", "--output", "b", "--scale", "2", "--slice-thickness", "-2"],
                                  ["--input", "a", "--output", "b", "--scale", "2", "--thickness-source", "guess"],
                                  ["--input", "a", "--output", "b", "--scale", "2", "--spacing", "1", "0", "1"],
                                  ["--input", "a", "--output", "b", "--scale", "2", "--spacing", "1", "1"]])
def test_bad_command_lines_exit_with_usage_code(argv: List[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        protocol.parse_command(argv)
    assert raised.value.code == 2


# --- the runner, with stand-in children -------------------------------------------------------------------


def test_completed_run_reports_progress_logs_and_result() -> None:
    recorder = Recorder()
    outcome = finish(recorder.start(python(f"""
        print({protocol.format_progress(0.5, 'half way')!r})
        print("a log line")
        print({protocol.format_result({'model_id': 'm', 'device': 'cpu'})!r})
    """)))
    assert outcome == Outcome("completed", "synthesis completed", {"model_id": "m", "device": "cpu"})
    assert recorder.progress == [(0.5, "half way")]
    assert "a log line" in recorder.log


def test_error_line_becomes_the_failure_message() -> None:
    outcome = finish(Recorder().start(python(f"""
        import sys
        print("Traceback and other noise")
        print({protocol.format_failure('checkpoint not found: x.pt')!r})
        sys.exit(1)
    """)))
    assert outcome == Outcome("failed", "checkpoint not found: x.pt")


def test_crash_without_error_line_reports_exit_code_and_last_line() -> None:
    outcome = finish(Recorder().start(python("import sys; print('first'); print('boom'); sys.exit(7)")))
    assert outcome.status == "failed"
    assert "code 7" in outcome.message and "boom" in outcome.message


def test_exit_zero_without_result_is_a_failure() -> None:
    assert finish(Recorder().start(python("print('nothing')"))).status == "failed"


def test_child_exiting_with_cancelled_code_is_cancelled() -> None:
    outcome = finish(Recorder().start(python(f"import sys; sys.exit({protocol.EXIT_CANCELLED})")))
    assert outcome.status == "cancelled"


def _wait_for_line(recorder: Recorder, text: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in recorder.log:
        assert time.monotonic() < deadline, f"never saw {text!r}"
        time.sleep(0.02)


@POSIX_ONLY
def test_cancel_ends_the_whole_process_tree(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    recorder = Recorder()
    process = recorder.start(python(f"""
        import subprocess, sys, time
        grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        open({str(pid_file)!r}, "w").write(str(grandchild.pid))
        print("ready", flush=True)
        time.sleep(120)
    """))
    deadline = time.monotonic() + 20
    while not pid_file.exists() or not pid_file.read_text():
        process.poll()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    grandchild = int(pid_file.read_text())
    process.cancel()
    assert finish(process, timeout=15).status == "cancelled"
    deadline = time.monotonic() + 10
    while _alive(grandchild):
        assert time.monotonic() < deadline, "the grandchild survived the cancel"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its dead parent's reaper) counts as gone.
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "State:\tZ" in status.read_text())


@POSIX_ONLY
def test_cancel_kills_a_child_that_ignores_sigterm() -> None:
    recorder = Recorder()
    process = recorder.start(python("""
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ready", flush=True)
        time.sleep(120)
    """))
    while "ready" not in recorder.log:
        assert process.poll() is None
        time.sleep(0.02)
    started = time.monotonic()
    process.cancel(grace_seconds=0.3)
    assert finish(process, timeout=10).status == "cancelled"
    assert time.monotonic() - started < 5


# --- the real background script ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """An untrained lite ×2 model saved as a checkpoint (the bundled weights may not exist yet)."""
    pytest.importorskip("torch")
    from CTSliceSynthesisLib.inference.model_store import create_model, save_model

    path = tmp_path_factory.mktemp("models") / "lite_x2.pt"
    save_model(create_model("lite", 2), path)
    return path


@pytest.fixture
def thick_nifti(tmp_path: Path) -> Tuple[Path, np.ndarray, np.ndarray]:
    """A small oblique int16 NIfTI with 4 mm slices along the third axis."""
    nib = pytest.importorskip("nibabel")
    rng = np.random.default_rng(0)
    voxels = rng.integers(-1000, 1500, size=(24, 24, 6)).astype(np.int16)
    affine = np.eye(4)
    angle = np.radians(12)
    affine[:3, :3] = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine[:3, :3] = affine[:3, :3] @ np.diag([0.8, 0.8, 4.0])
    affine[:3, 3] = [-10.0, 20.0, -30.0]
    path = tmp_path / "inputs" / "thick.nii.gz"
    path.parent.mkdir()
    nib.save(nib.Nifti1Image(voxels, affine), str(path))
    return path, voxels, affine


def test_script_synthesizes_a_nifti_end_to_end(tmp_path: Path, checkpoint: Path, thick_nifti) -> None:
    nib = pytest.importorskip("nibabel")
    source, voxels, affine = thick_nifti
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    request = protocol.SynthesisRequest(
        str(source), str(out_dir / "thin.nii.gz"), 2, checkpoint=str(checkpoint), device="cpu",
        disagreement_path=str(out_dir / "spread.nii.gz"), adapt_seconds=0)
    recorder = Recorder()
    outcome = finish(recorder.start(protocol.build_command(sys.executable, str(SCRIPT), request)))

    assert outcome.status == "completed", recorder.log
    assert outcome.result["model_id"] == "lite_x2" and len(outcome.result["sha256"]) == 64
    assert outcome.result["device"] == "cpu" and outcome.result["axis"] == 2 and outcome.result["scale"] == 2
    fractions = [fraction for fraction, _ in recorder.progress]
    assert fractions == sorted(fractions) and fractions[0] < 0.1 and fractions[-1] == 1.0
    assert sorted(p.name for p in out_dir.iterdir()) == ["spread.nii.gz", "thin.nii.gz"]  # no partial files
    thin = nib.load(str(out_dir / "thin.nii.gz"))
    data = np.asanyarray(thin.dataobj)
    assert data.shape == (24, 24, 11) and data.dtype == np.int16
    np.testing.assert_array_equal(data[:, :, ::2], voxels)
    expected_affine = affine.copy()
    expected_affine[:3, 2] /= 2
    np.testing.assert_allclose(thin.affine, expected_affine, atol=1e-5)
    spread = np.asanyarray(nib.load(str(out_dir / "spread.nii.gz")).dataobj)
    assert spread.shape == data.shape and spread.dtype == np.float32
    assert np.all(spread[:, :, ::2] == 0)


def test_script_synthesizes_a_slicer_array_along_the_given_axis(tmp_path: Path, checkpoint: Path) -> None:
    pytest.importorskip("torch")
    kji = np.random.default_rng(1).integers(-1000, 1000, size=(5, 16, 24)).astype(np.int16)  # K, J, I
    np.save(tmp_path / "input.npy", kji)
    request = protocol.SynthesisRequest(
        str(tmp_path / "input.npy"), str(tmp_path / "output.npy"), 2, axis=0, checkpoint=str(checkpoint), device="cpu",
        adapt_seconds=0)
    outcome = finish(Recorder().start(protocol.build_command(sys.executable, str(SCRIPT), request)))
    assert outcome.status == "completed"
    result = np.load(tmp_path / "output.npy")
    assert result.shape == (9, 16, 24) and result.dtype == np.int16
    np.testing.assert_array_equal(result[::2], kji)


def test_script_reports_a_missing_checkpoint_in_one_line(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    np.save(tmp_path / "input.npy", np.zeros((3, 16, 16), np.int16))
    request = protocol.SynthesisRequest(str(tmp_path / "input.npy"), str(tmp_path / "output.npy"), 2, axis=0,
                                        checkpoint=str(tmp_path / "missing.pt"), device="cpu", adapt_seconds=0)
    outcome = finish(Recorder().start(protocol.build_command(sys.executable, str(SCRIPT), request)))
    assert outcome.status == "failed"
    assert "missing.pt" in outcome.message and "\n" not in outcome.message
    assert not (tmp_path / "output.npy").exists()


def test_script_says_what_to_do_when_torch_cannot_be_loaded(tmp_path: Path) -> None:
    np.save(tmp_path / "input.npy", np.zeros((3, 16, 16), np.int16))
    request = protocol.SynthesisRequest(str(tmp_path / "input.npy"), str(tmp_path / "output.npy"), 2, axis=0)
    arguments = protocol.build_command(sys.executable, str(SCRIPT), request)[2:]
    runner = python(f"""
        import runpy, sys
        sys.modules["torch"] = None  # import torch now raises ImportError, as a broken installation would
        sys.argv = [{str(SCRIPT)!r}] + {arguments!r}
        runpy.run_path({str(SCRIPT)!r}, run_name="__main__")
    """)
    recorder = Recorder()
    outcome = finish(recorder.start(runner))
    assert outcome.status == "failed" and "\n" not in outcome.message
    assert "PyTorch Utils" in outcome.message and "torch" in outcome.message
    assert not any("Traceback" in line for line in recorder.log)
    assert not (tmp_path / "output.npy").exists()


def _adapting_command(source: Path, target: Path, checkpoint: Path) -> List[str]:
    request = protocol.SynthesisRequest(str(source), str(target), 2, checkpoint=str(checkpoint), device="cpu",
                                        adapt_steps=10**6, disagreement_path=str(target.with_name("spread.nii.gz")))
    return protocol.build_command(sys.executable, str(SCRIPT), request)


@POSIX_ONLY
@pytest.mark.parametrize(("signal_number", "stage"), [(signal.SIGTERM, "adapting"), (signal.SIGINT, "loading the model")])
def test_signal_leaves_no_output(tmp_path: Path, checkpoint: Path, thick_nifti, signal_number, stage: str) -> None:
    source, _, _ = thick_nifti
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    child = subprocess.Popen(_adapting_command(source, out_dir / "thin.nii.gz", checkpoint), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        for line in child.stdout:
            message = protocol.parse_line(line)
            if isinstance(message, protocol.Progress) and message.stage.startswith(stage):
                break
        else:
            pytest.fail(f"the script ended before {stage!r}")
        child.send_signal(signal_number)
        rest = child.stdout.read()  # cancellation is checked between adaptation steps
        assert child.wait(timeout=300) == protocol.EXIT_CANCELLED, rest
    finally:
        if child.poll() is None:
            child.kill()
    assert "cancelled" in rest
    assert list(out_dir.iterdir()) == []


@POSIX_ONLY
def test_cancel_from_the_runner_stops_the_real_script(tmp_path: Path, checkpoint: Path, thick_nifti) -> None:
    source, _, _ = thick_nifti
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    recorder = Recorder()
    process = recorder.start(_adapting_command(source, out_dir / "thin.nii.gz", checkpoint))
    deadline = time.monotonic() + 120
    while not recorder.progress:
        assert process.poll() is None, recorder.log
        assert time.monotonic() < deadline
        time.sleep(0.02)
    process.cancel()
    assert finish(process, timeout=60).status == "cancelled"
    assert list(out_dir.iterdir()) == []
