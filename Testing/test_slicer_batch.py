"""The headless batch command: arguments, input discovery, output naming, the loop and its exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

from CTSliceSynthesisLib.slicer_support import batch_args
from CTSliceSynthesisLib.slicer_support.batch_args import (
    BatchError,
    disagreement_path,
    find_inputs,
    parse_batch_args,
    plan_outputs,
)
from CTSliceSynthesisLib.slicer_support.batch_runner import run_batch
from CTSliceSynthesisLib.slicer_support.dependencies import DependencyError

BATCH_SCRIPT = Path(__file__).resolve().parents[1] / "CTSliceSynthesis" / "Scripts" / "batch.py"


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"volume")
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for name in ("b.nrrd", "a.nii.gz", "c.mha", "notes.txt", "d.nii"):
        touch(tmp_path / "in" / name)
    (tmp_path / "in" / "sub.nrrd").mkdir()  # a folder with a volume-like name is not an input
    return tmp_path / "in"


def test_arguments_are_parsed(tmp_path: Path) -> None:
    checkpoint = touch(tmp_path / "m.pt")
    options = parse_batch_args(["--input", "in.nrrd", "--output", "out.nii.gz", "--scale", "3", "--axis", "J",
                                "--checkpoint", str(checkpoint), "--device", "cpu", "--adapt-steps", "60",
                                "--seed", "4", "--disagreement", "--overwrite", "--install-dependencies"])
    assert options == batch_args.BatchOptions(
        input=Path("in.nrrd"), output=Path("out.nii.gz"), scale=3, axis="J", checkpoint=checkpoint, device="cpu",
        adapt_steps=60, seed=4, disagreement=True, output_format="nrrd", overwrite=True, install_dependencies=True)


def test_slice_thickness_and_adaptation_defaults(tmp_path: Path) -> None:
    from CTSliceSynthesisLib.core.config import DEFAULT_ADAPT_STEPS, DEFAULT_SEED

    options = parse_batch_args(["--input", "in.nrrd", "--output", "out.nrrd", "--scale", "2"])
    assert options.slice_thickness is None
    assert (options.adapt_steps, options.adapt_seconds, options.seed) == (DEFAULT_ADAPT_STEPS, None, DEFAULT_SEED)
    options = parse_batch_args(["--input", "in.nrrd", "--output", "out.nrrd", "--scale", "2",
                                "--slice-thickness", "0.625", "--adapt-seconds", "0"])
    assert (options.slice_thickness, options.adapt_seconds) == (0.625, 0.0)
    options = parse_batch_args(["--input", "in.nrrd", "--output", "out.nrrd", "--scale", "2", "--adapt-steps", "0"])
    assert options.adapt_steps == 0


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--output", "o.nrrd", "--scale", "2"], "--input"),
        (["--input", "i.nrrd", "--output", "o.nrrd", "--scale", "7"], "invalid choice"),
        (["--input", "i.nrrd", "--output", "o.nrrd", "--scale", "2", "--adapt-seconds", "-5"], "negative"),
        (["--input", "i.nrrd", "--output", "o.nrrd", "--scale", "2", "--adapt-steps", "-5"], "negative"),
        (["--input", "i.nrrd", "--output", "o.nrrd", "--scale", "2", "--checkpoint", "nope.pt"], "nope.pt"),
        (["--input", "i.nrrd", "--output", "o.nrrd", "--scale", "2", "--device", "tpu"], "invalid choice"),
        (["--input", "i.nrrd", "--output", "o.nrrd", "--scale", "2", "--slice-thickness", "0"], "--slice-thickness"),
        (["--input", "i.nrrd", "--output", "o.nrrd", "--scale", "2", "--slice-thickness", "-1"], "--slice-thickness"),
        (["--input", "i.nrrd", "--output", "o.nrrd", "--scale", "2", "--slice-thickness", "nan"], "--slice-thickness"),
        (["--input", "i.nrrd", "--output", "o.nrrd", "--scale", "2", "--slice-thickness", "500"], "at most 100"),
        (["--input", "i.nrrd", "--output", "o.nrrd", "--scale", "2", "--slice-thickness", "thick"], "invalid float"),
    ],
)
def test_bad_arguments_are_usage_errors(argv: List[str], words: str) -> None:
    with pytest.raises(BatchError) as raised:
        parse_batch_args(argv)
    assert raised.value.exit_code == batch_args.EXIT_USAGE
    assert words in str(raised.value)


def test_a_folder_yields_its_volume_files_in_order(folder: Path) -> None:
    assert [p.name for p in find_inputs(folder)] == ["a.nii.gz", "b.nrrd", "c.mha", "d.nii"]
    assert find_inputs(folder / "b.nrrd") == [folder / "b.nrrd"]


@pytest.mark.parametrize("make", [lambda tmp: tmp / "missing.nrrd", lambda tmp: (tmp / "empty").mkdir() or tmp / "empty"])
def test_missing_or_empty_input_is_a_no_input_error(tmp_path: Path, make) -> None:
    with pytest.raises(BatchError) as raised:
        find_inputs(make(tmp_path))
    assert raised.value.exit_code == batch_args.EXIT_NO_INPUT


def options_for(input_: Path, output: Path, *extra: str) -> batch_args.BatchOptions:
    return parse_batch_args(["--input", str(input_), "--output", str(output), "--scale", "2", *extra])


def test_folder_outputs_are_named_after_inputs(folder: Path, tmp_path: Path) -> None:
    options = options_for(folder, tmp_path / "out")
    pairs = plan_outputs(options, find_inputs(folder))
    assert [target.name for _, target in pairs] == [
        "a_synthesized_x2.nrrd", "b_synthesized_x2.nrrd", "c_synthesized_x2.nrrd", "d_synthesized_x2.nrrd"]
    nifti = plan_outputs(options_for(folder, tmp_path / "out", "--format", "nifti"), find_inputs(folder))
    assert nifti[0][1] == tmp_path / "out" / "a_synthesized_x2.nii.gz"


def test_two_inputs_with_one_output_name_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("scan.mha", "scan.nii.gz"):
        touch(folder / name)
    with pytest.raises(BatchError) as raised:
        plan_outputs(options_for(folder, tmp_path / "out"), find_inputs(folder))
    assert "scan.mha and scan.nii.gz would both be written to" in str(raised.value)
    assert raised.value.exit_code == batch_args.EXIT_USAGE


def test_file_output_is_taken_as_given(folder: Path, tmp_path: Path) -> None:
    source = folder / "b.nrrd"
    assert plan_outputs(options_for(source, tmp_path / "thin.nii"), [source]) == [(source, tmp_path / "thin.nii")]


@pytest.mark.parametrize(
    ("output", "extra", "words"),
    [("thin.txt", (), "must end with"), ("SOURCE", (), "overwrite the input"), ("EXISTING", (), "--overwrite")],
)
def test_unsafe_outputs_are_refused(folder: Path, tmp_path: Path, output: str, extra, words: str) -> None:
    source = folder / "b.nrrd"
    target = {"SOURCE": source, "EXISTING": touch(tmp_path / "old.nrrd")}.get(output, tmp_path / output)
    with pytest.raises(BatchError) as raised:
        plan_outputs(options_for(source, target, *extra), [source])
    assert words in str(raised.value) and raised.value.exit_code == batch_args.EXIT_USAGE


def test_overwrite_allows_an_existing_output(folder: Path, tmp_path: Path) -> None:
    source = folder / "b.nrrd"
    existing = touch(tmp_path / "old.nrrd")
    assert plan_outputs(options_for(source, existing, "--overwrite"), [source]) == [(source, existing)]


def test_folder_input_needs_a_folder_output(folder: Path, tmp_path: Path) -> None:
    with pytest.raises(BatchError):
        plan_outputs(options_for(folder, touch(tmp_path / "file.nrrd")), find_inputs(folder))


@pytest.mark.parametrize(
    ("output", "expected"),
    [("thin.nrrd", "thin_disagreement.nrrd"), ("thin.nii.gz", "thin_disagreement.nii.gz"),
     ("a.b.nii", "a.b_disagreement.nii")],
)
def test_disagreement_maps_sit_next_to_outputs(output: str, expected: str) -> None:
    assert disagreement_path(Path("/o") / output) == Path("/o") / expected


# --- the loop -----------------------------------------------------------------------------------------------


def test_every_volume_gets_a_progress_line_and_exit_zero(folder: Path, tmp_path: Path) -> None:
    lines: List[str] = []
    done = []
    code = run_batch(["--input", str(folder), "--output", str(tmp_path / "out"), "--scale", "2"],
                     lambda source, target, options: done.append((source.name, target.name)), echo=lines.append)
    assert code == batch_args.EXIT_OK
    assert [name for name, _ in done] == ["a.nii.gz", "b.nrrd", "c.mha", "d.nii"]
    assert len(lines) == 4 and lines[0].startswith("[1/4] done ") and lines[3].startswith("[4/4] done ")


def test_a_failed_volume_is_reported_and_the_rest_still_run(folder: Path, tmp_path: Path) -> None:
    lines: List[str] = []
    done = []

    def synthesize(source: Path, target: Path, options) -> None:
        if source.name == "b.nrrd":
            raise RuntimeError("the volume is 2-D:\nnothing to synthesize")
        done.append(source.name)

    code = run_batch(["--input", str(folder), "--output", str(tmp_path / "out"), "--scale", "2"], synthesize,
                     echo=lines.append)
    assert code == batch_args.EXIT_FAILED
    assert done == ["a.nii.gz", "c.mha", "d.nii"]
    assert any(line.startswith("[2/4] FAILED") and "2-D: nothing" in line for line in lines)
    assert lines[-1] == "error: 1 of 4 volumes failed"
    assert all("\n" not in line for line in lines)


def test_missing_dependencies_stop_before_any_volume(folder: Path, tmp_path: Path) -> None:
    lines: List[str] = []

    def prepare(options) -> None:
        raise DependencyError("missing Python packages: torch>=2.2")

    code = run_batch(["--input", str(folder), "--output", str(tmp_path / "out"), "--scale", "2"],
                     lambda *args: pytest.fail("no volume may be processed"), prepare, echo=lines.append)
    assert code == batch_args.EXIT_DEPENDENCIES
    assert lines == ["error: missing Python packages: torch>=2.2"]


@pytest.mark.parametrize(
    ("argv", "code"),
    [(["--scale", "2"], batch_args.EXIT_USAGE), (["--input", "/nope", "--output", "/o.nrrd", "--scale", "2"],
                                                  batch_args.EXIT_NO_INPUT)],
)
def test_command_errors_are_one_line_with_their_exit_code(argv: List[str], code: int) -> None:
    lines: List[str] = []
    assert run_batch(argv, lambda *args: None, echo=lines.append) == code
    assert len(lines) == 1 and lines[0].startswith("error: ")


# --- the script itself, outside Slicer (its Slicer part is never reached) ----------------------------------


def run_script(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BATCH_SCRIPT), *argv], capture_output=True, text=True, timeout=120)


def test_script_help_exits_zero() -> None:
    result = run_script("--help")
    assert result.returncode == 0 and "--scale" in result.stdout and "--slice-thickness MM" in result.stdout


def test_script_usage_error_exits_two_with_one_line() -> None:
    result = run_script("--input", "x.nrrd")
    assert result.returncode == batch_args.EXIT_USAGE
    assert result.stdout.strip().count("\n") == 0 and result.stdout.startswith("error: ")


def test_script_missing_input_exits_three(tmp_path: Path) -> None:
    result = run_script("--input", str(tmp_path / "none.nrrd"), "--output", str(tmp_path / "o.nrrd"), "--scale", "2")
    assert result.returncode == batch_args.EXIT_NO_INPUT
    assert result.stdout.strip() == f"error: input not found: {tmp_path / 'none.nrrd'}"
