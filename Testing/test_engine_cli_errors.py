"""``ct-slice-synthesis synthesize`` as a real subprocess: every bad input of issue 2 is refused cleanly.

Each refusal must give a non-zero exit, exactly one line on stderr naming the problem (no traceback), leave the
input file's bytes and modification time as they were, and leave the output folder as it was: no output file
and no leftover ``.OUT.partial-*`` temporary. Successful runs check geometry, pass-through and dtype; Ctrl-C
must end with exit code 130, one "cancelled" line and nothing written.

The refusal runs are independent processes, most of them dominated by importing torch, so they are started
together (a few at a time) by one module fixture; each case is then checked by its own test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import nibabel as nib
import numpy as np
import pytest
import torch

from CTSliceSynthesisLib import model_store
from CTSliceSynthesisLib.checkpoint import save_checkpoint

ENGINE_ROOT = Path(__file__).resolve().parents[1] / "CTSliceSynthesis"
PROGRAM = "ct-slice-synthesis"
SPACING = (0.8, 0.8, 3.0)
SHAPE = (24, 20, 5)
PARALLEL_RUNS = 2
RUN_TIMEOUT_S = 180


# --------------------------------------------------------------------------------------------------------------
# Helpers


def cli_env() -> Dict[str, str]:
    """The test process's environment with the engine importable, UTF-8 stderr and no bundled-model lookup."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ENGINE_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["PYTHONIOENCODING"] = "utf-8"
    # Tiny volumes: one thread is many times faster than two on a loaded machine (no spinning OpenMP workers).
    env["OMP_NUM_THREADS"] = "1"
    return env


def cli_command(args: Sequence[str]) -> List[str]:
    return [sys.executable, "-m", "CTSliceSynthesisLib.cli", "synthesize", *map(str, args)]


def run_cli(args: Sequence[str], cwd: Path = ENGINE_ROOT) -> subprocess.CompletedProcess:
    """Run ``synthesize`` with ``args`` to completion; stdout and stderr as text."""
    return subprocess.run(
        cli_command(args),
        cwd=str(cwd),
        env=cli_env(),
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=RUN_TIMEOUT_S,
    )


def affine_for(spacing: Sequence[float]) -> np.ndarray:
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = (-95.5, -80.25, 12.0)
    return affine


def ct_volume(shape: Sequence[int], seed: int = 0, dtype=np.int16) -> np.ndarray:
    """HU-like values: smooth structure plus noise, within [−1024, 3071]."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(0, 3, n) for n in shape], indexing="ij")
    volume = 700 * np.sin(2 * grids[0]) * np.cos(3 * grids[1]) + 60 * grids[-1] + rng.normal(0, 40, tuple(shape))
    return np.clip(volume, -1024, 3071).astype(dtype)


def save_volume(path: Path, data: np.ndarray, spacing: Sequence[float] = SPACING) -> Path:
    nib.save(nib.Nifti1Image(data, affine_for(spacing)), str(path))
    return path


@dataclass(frozen=True)
class FileState:
    """What must not change about a file: its bytes and its modification time."""

    content: bytes
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> "FileState":
        return cls(path.read_bytes(), path.stat().st_mtime_ns)


def partial_files(folder: Path, output: Path) -> List[Path]:
    return sorted(folder.glob(f".{output.name}.partial-*")) if folder.is_dir() else []


def folder_listing(folder: Path) -> Optional[List[str]]:
    return sorted(os.listdir(folder)) if folder.is_dir() else None


def error_lines(stderr: str) -> List[str]:
    """stderr split into lines (progress-bar carriage returns count as line breaks), blank ones dropped."""
    return [line for line in stderr.replace("\r", "\n").split("\n") if line.strip()]


# --------------------------------------------------------------------------------------------------------------
# Shared files: a valid volume and random-initialised lite checkpoints for ×2 and ×3.


@dataclass
class Assets:
    folder: Path
    volume: Path
    lite2: Path
    lite3: Path


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> Assets:
    folder = tmp_path_factory.mktemp("cli_assets")
    torch.manual_seed(0)
    model_store.save_model(model_store.create_model("lite", 2), folder / "lite_x2.pt")
    model_store.save_model(model_store.create_model("lite", 3), folder / "lite_x3.pt")
    volume = save_volume(folder / "volume.nii.gz", ct_volume(SHAPE))
    return Assets(folder, volume, folder / "lite_x2.pt", folder / "lite_x3.pt")


# --------------------------------------------------------------------------------------------------------------
# Refusals: each builder makes its files in its own folder and says how to call the command and what to expect.


@dataclass
class Case:
    args: List[str]
    input: Path
    output: Path
    phrase: str  # must appear (case-insensitively) in the error line
    cwd: Path = ENGINE_ROOT
    existing_output: bool = False  # the output exists beforehand and must stay as it was
    marker: Optional[Path] = None  # a file that the checkpoint's pickled code would create
    skip: Optional[str] = None
    watched: List[Path] = field(default_factory=list)  # other files that must stay as they were
    in_process: bool = False  # run through cli.main() in this process instead of a subprocess


CaseBuilder = Callable[[Path, Assets], Case]
CASES: Dict[str, CaseBuilder] = {}


def case(name: str, in_process: bool = False) -> Callable[[CaseBuilder], CaseBuilder]:
    """Register a builder; ``in_process`` cases (extras beyond issue 2's list) call ``cli.main`` directly, which
    checks the same contract without paying for another interpreter that imports torch."""

    def register(builder: CaseBuilder) -> CaseBuilder:
        def build(work: Path, assets: Assets) -> Case:
            built = builder(work, assets)
            built.in_process = in_process
            return built

        CASES[name] = build
        return build

    return register


def synth_args(source: Path, output: Path, scale: int = 2, model: Optional[Path] = None, *extra: str) -> List[str]:
    args = ["--input", str(source), "--output", str(output), "--scale", str(scale), "--device", "cpu"]
    if model is not None:
        args += ["--model", str(model)]
    return args + list(extra)


def input_case(source: Path, assets: Assets, phrase: str, scale: int = 2, **options) -> Case:
    """``source`` → ``r.nii.gz`` next to it, with the ×2 lite checkpoint."""
    output = source.parent / "r.nii.gz"
    return Case(synth_args(source, output, scale, assets.lite2), source, output, phrase, **options)


def copy_of_volume(work: Path, assets: Assets, name: str = "in.nii.gz") -> Path:
    target = work / name
    target.write_bytes(assets.volume.read_bytes())
    return target


def volume_case(work: Path, assets: Assets, data: np.ndarray, phrase: str, spacing=SPACING) -> Case:
    source = save_volume(work / "in.nii.gz", data, spacing)
    output = work / "out" / "result.nii.gz"
    output.parent.mkdir()
    return Case(synth_args(source, output, 2, assets.lite2), source, output, phrase)


def checkpoint_case(work: Path, assets: Assets, checkpoint: Path, phrase: str, scale: int = 2) -> Case:
    source = copy_of_volume(work, assets)
    output = work / "result.nii.gz"
    return Case(synth_args(source, output, scale, checkpoint), source, output, phrase, watched=[checkpoint])


@case("2d_image")
def _(work: Path, assets: Assets) -> Case:
    source = work / "in.nii.gz"
    nib.save(nib.Nifti1Image(ct_volume((24, 20)), np.diag([0.8, 0.8, 1.0, 1.0])), str(source))
    return Case(synth_args(source, work / "result.nii.gz", 2, assets.lite2), source, work / "result.nii.gz", "2-D")


@case("4d_image", in_process=True)
def _(work: Path, assets: Assets) -> Case:
    return volume_case(work, assets, ct_volume((24, 20, 5, 3)), "4-D")


@case("one_slice_along_thick_axis")
def _(work: Path, assets: Assets) -> Case:
    return volume_case(work, assets, ct_volume((24, 20, 1)), "at least 2 slices")


@case("scale_5")
def _(work: Path, assets: Assets) -> Case:
    source = copy_of_volume(work, assets)
    return input_case(source, assets, "unsupported scale 5", scale=5)


@case("scale_1")
def _(work: Path, assets: Assets) -> Case:
    source = copy_of_volume(work, assets)
    return input_case(source, assets, "unsupported scale 1", scale=1)


@case("nan_voxels")
def _(work: Path, assets: Assets) -> Case:
    data = ct_volume(SHAPE, dtype=np.float32)
    data[3, 4, 2] = np.nan
    return volume_case(work, assets, data, "1 NaN or infinite")


@case("inf_voxels")
def _(work: Path, assets: Assets) -> Case:
    data = ct_volume(SHAPE, dtype=np.float32)
    data[0, 0, 0], data[5, 6, 4] = np.inf, -np.inf
    return volume_case(work, assets, data, "2 NaN or infinite")


@case("degenerate_affine_zero_spacing", in_process=True)
def _(work: Path, assets: Assets) -> Case:
    # nibabel refuses to build such an image, so the sform row of a valid .nii is overwritten with zeros.
    source = work / "in.nii"
    image = nib.Nifti1Image(ct_volume(SHAPE), affine_for(SPACING))
    image.header["qform_code"], image.header["sform_code"] = 0, 1
    nib.save(image, str(source))
    raw = bytearray(source.read_bytes())
    raw[312:328] = np.zeros(4, dtype="<f4").tobytes()  # srow_z
    source.write_bytes(bytes(raw))
    assert nib.load(str(source)).affine[2, 2] == 0
    return input_case(source, assets, "degenerate affine")


@case("checkpoint_for_another_scale")
def _(work: Path, assets: Assets) -> Case:
    return checkpoint_case(work, assets, assets.lite3, "trained for ×3, not ×2")


@case("checkpoint_random_bytes")
def _(work: Path, assets: Assets) -> Case:
    checkpoint = work / "random.pt"
    checkpoint.write_bytes(np.random.default_rng(7).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    return checkpoint_case(work, assets, checkpoint, "corrupt")


@case("checkpoint_truncated")
def _(work: Path, assets: Assets) -> Case:
    checkpoint = work / "truncated.pt"
    content = assets.lite2.read_bytes()
    checkpoint.write_bytes(content[: len(content) // 2])
    return checkpoint_case(work, assets, checkpoint, "corrupt")


@case("checkpoint_empty_file", in_process=True)
def _(work: Path, assets: Assets) -> Case:
    checkpoint = work / "empty.pt"
    checkpoint.write_bytes(b"")
    return checkpoint_case(work, assets, checkpoint, "corrupt")


class RunsShellCommand:
    """Unpickling this object would run a shell command (``os.system``): the attack weights_only blocks."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def code_checkpoint_case(work: Path, assets: Assets, zip_format: bool) -> Case:
    marker = work / "PWNED"
    checkpoint = work / "with_code.pt"
    payload = {"format": "ct-slice-synthesis-checkpoint/1", "hook": RunsShellCommand(f"touch '{marker}'")}
    torch.save(payload, checkpoint, _use_new_zipfile_serialization=zip_format)
    built = checkpoint_case(work, assets, checkpoint, "refusing to load")
    built.marker = marker
    return built


@case("checkpoint_with_pickled_code")
def _(work: Path, assets: Assets) -> Case:
    return code_checkpoint_case(work, assets, zip_format=True)


@case("checkpoint_with_pickled_code_legacy_format", in_process=True)
def _(work: Path, assets: Assets) -> Case:
    return code_checkpoint_case(work, assets, zip_format=False)


@case("checkpoint_missing", in_process=True)
def _(work: Path, assets: Assets) -> Case:
    built = checkpoint_case(work, assets, work / "absent.pt", "checkpoint not found")
    built.watched = []
    return built


@case("checkpoint_not_ours", in_process=True)
def _(work: Path, assets: Assets) -> Case:
    checkpoint = work / "state_dict.pt"
    torch.save({"weight": torch.zeros(3, 3)}, checkpoint)
    return checkpoint_case(work, assets, checkpoint, "not a CTSliceSynthesis checkpoint")


@case("checkpoint_with_wrong_weights", in_process=True)
def _(work: Path, assets: Assets) -> Case:
    checkpoint = work / "incomplete.pt"
    payload = torch.load(assets.lite2, map_location="cpu", weights_only=True)
    payload["networks"].pop(sorted(payload["networks"])[0])
    save_checkpoint(checkpoint, {k: v for k, v in payload.items() if k not in ("format", "engine_version")})
    return checkpoint_case(work, assets, checkpoint, "does not hold CTSliceSynthesis networks")


@case("missing_input")
def _(work: Path, assets: Assets) -> Case:
    source = work / "absent.nii.gz"
    return input_case(source, assets, "input file not found")


@case("output_is_input")
def _(work: Path, assets: Assets) -> Case:
    source = copy_of_volume(work, assets)
    return Case(synth_args(source, source, 2, assets.lite2), source, source, "is the input file", existing_output=True)


@case("output_is_input_with_overwrite", in_process=True)
def _(work: Path, assets: Assets) -> Case:
    source = copy_of_volume(work, assets)
    args = synth_args(source, source, 2, assets.lite2, "--overwrite")
    return Case(args, source, source, "is the input file", existing_output=True)


@case("output_is_symlink_to_input")
def _(work: Path, assets: Assets) -> Case:
    source = copy_of_volume(work, assets)
    link = work / "link.nii.gz"
    link.symlink_to(source)
    args = synth_args(source, link, 2, assets.lite2, "--overwrite")
    return Case(args, source, link, "is the input file", existing_output=True)


@case("output_is_hard_link_to_input", in_process=True)
def _(work: Path, assets: Assets) -> Case:
    source = copy_of_volume(work, assets)
    link = work / "hard.nii.gz"
    os.link(source, link)
    args = synth_args(source, link, 2, assets.lite2, "--overwrite")
    return Case(args, source, link, "is the input file", existing_output=True)


@case("output_is_input_by_relative_path")
def _(work: Path, assets: Assets) -> Case:
    (work / "sub").mkdir()
    source = copy_of_volume(work, assets)
    args = synth_args(source, Path("sub") / ".." / source.name, 2, assets.lite2, "--overwrite")
    return Case(args, source, source, "is the input file", cwd=work, existing_output=True)


@case("input_by_relative_path_output_absolute", in_process=True)
def _(work: Path, assets: Assets) -> Case:
    source = copy_of_volume(work, assets)
    args = synth_args(Path(source.name), source, 2, assets.lite2, "--overwrite")
    return Case(args, source, source, "is the input file", cwd=work, existing_output=True)


@case("existing_output_without_overwrite")
def _(work: Path, assets: Assets) -> Case:
    source = copy_of_volume(work, assets)
    output = work / "result.nii.gz"
    output.write_bytes(b"an earlier result that must survive")
    return Case(synth_args(source, output, 2, assets.lite2), source, output, "pass --overwrite", existing_output=True)


@case("output_folder_not_writable")
def _(work: Path, assets: Assets) -> Case:
    source = copy_of_volume(work, assets)
    locked = work / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    skip = "root ignores folder permissions (see the parent-is-a-file case)" if os.geteuid() == 0 else None
    output = locked / "r.nii.gz"
    return Case(synth_args(source, output, 2, assets.lite2), source, output, "not writable", skip=skip)


@case("output_folder_is_a_regular_file")
def _(work: Path, assets: Assets) -> Case:
    source = copy_of_volume(work, assets)
    blocker = work / "not_a_folder"
    blocker.write_bytes(b"a regular file")
    output = blocker / "r.nii.gz"
    return Case(synth_args(source, output, 2, assets.lite2), source, output, "is not a folder", watched=[blocker])


@case("output_folder_missing")
def _(work: Path, assets: Assets) -> Case:
    source = copy_of_volume(work, assets)
    output = work / "no" / "such" / "folder" / "r.nii.gz"
    return Case(synth_args(source, output, 2, assets.lite2), source, output, "does not exist")


@case("truncated_nii_gz")
def _(work: Path, assets: Assets) -> Case:
    source = work / "in.nii.gz"
    content = assets.volume.read_bytes()
    source.write_bytes(content[: len(content) // 2])
    return input_case(source, assets, "truncated or corrupt")


@case("truncated_nii", in_process=True)
def _(work: Path, assets: Assets) -> Case:
    full = save_volume(work / "full.nii", ct_volume(SHAPE))
    source = work / "in.nii"
    source.write_bytes(full.read_bytes()[: 352 + full.stat().st_size // 3])
    full.unlink()
    return input_case(source, assets, "truncated or corrupt")


@case("not_nifti_extension")
def _(work: Path, assets: Assets) -> Case:
    source = copy_of_volume(work, assets, name="in.mha")
    return input_case(source, assets, "not a NIfTI file")


@case("not_nifti_content", in_process=True)
def _(work: Path, assets: Assets) -> Case:
    source = work / "in.nii.gz"
    source.write_text("this is not a NIfTI volume\n" * 20)
    return input_case(source, assets, "truncated or corrupt")


@case("output_not_nifti_extension", in_process=True)
def _(work: Path, assets: Assets) -> Case:
    source = copy_of_volume(work, assets)
    output = work / "result.mha"
    return Case(synth_args(source, output, 2, assets.lite2), source, output, "must end in .nii or .nii.gz")


@case("disagreement_is_input", in_process=True)
def _(work: Path, assets: Assets) -> Case:
    source = copy_of_volume(work, assets)
    output = work / "result.nii.gz"
    args = synth_args(source, output, 2, assets.lite2, "--disagreement", str(source), "--overwrite")
    return Case(args, source, output, "is the input file")


@case("disagreement_is_output", in_process=True)
def _(work: Path, assets: Assets) -> Case:
    source = copy_of_volume(work, assets)
    output = work / "result.nii.gz"
    args = synth_args(source, output, 2, assets.lite2, "--disagreement", str(output))
    return Case(args, source, output, "must differ from --output")


@case("bad_axis", in_process=True)
def _(work: Path, assets: Assets) -> Case:
    source = copy_of_volume(work, assets)
    args = synth_args(source, work / "r.nii.gz", 2, assets.lite2, "--axis", "3")
    return Case(args, source, work / "r.nii.gz", "--axis must be auto, 0, 1 or 2")


@case("unknown_device", in_process=True)
def _(work: Path, assets: Assets) -> Case:
    source = copy_of_volume(work, assets)
    args = synth_args(source, work / "r.nii.gz", 2, assets.lite2)
    args[args.index("--device") + 1] = "tpu7"
    return Case(args, source, work / "r.nii.gz", "unknown device")


@dataclass
class Outcome:
    case: Case
    input_before: Optional[FileState]
    watched_before: Dict[Path, FileState]
    listing_before: Optional[List[str]]
    result: Optional[subprocess.CompletedProcess]


@pytest.fixture(scope="module")
def refusals(tmp_path_factory: pytest.TempPathFactory, assets: Assets) -> Dict[str, Outcome]:
    """Build every case, record the state of its files, then run all of them, a few processes at a time."""
    outcomes: Dict[str, Outcome] = {}
    for name, builder in CASES.items():
        built = builder(tmp_path_factory.mktemp(name), assets)
        outcomes[name] = Outcome(
            case=built,
            input_before=FileState.of(built.input) if built.input.is_file() else None,
            watched_before={path: FileState.of(path) for path in built.watched},
            listing_before=folder_listing((built.cwd / built.output).parent),
            result=None,
        )
    runnable = [name for name, outcome in outcomes.items() if outcome.case.skip is None and not outcome.case.in_process]
    with ThreadPoolExecutor(max_workers=PARALLEL_RUNS) as pool:
        results = pool.map(lambda name: run_cli(outcomes[name].case.args, outcomes[name].case.cwd), runnable)
        for name, result in zip(runnable, results):
            outcomes[name].result = result
    yield outcomes
    for outcome in outcomes.values():  # let pytest clean up the locked folder
        for folder in (outcome.case.cwd / outcome.case.output).parents:
            if folder.is_dir() and folder.name == "locked":
                folder.chmod(0o700)


def run_in_process(args: Sequence[str], cwd: Path, capsys, monkeypatch) -> subprocess.CompletedProcess:
    """``cli.main`` on ``args`` in this process, as if it were a subprocess run."""
    from CTSliceSynthesisLib import cli

    monkeypatch.chdir(cwd)
    capsys.readouterr()
    try:
        code = cli.main(["synthesize", *args])
    except SystemExit as stop:  # argparse
        code = stop.code
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(["cli.main", *args], code, captured.out, captured.err)


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_refused_cleanly(name: str, refusals: Dict[str, Outcome], capsys, monkeypatch) -> None:
    outcome = refusals[name]
    built, result = outcome.case, outcome.result
    if built.skip:
        pytest.skip(built.skip)
    if built.in_process:
        result = run_in_process(built.args, built.cwd, capsys, monkeypatch)
    assert result is not None
    described = f"exit {result.returncode}, stderr {result.stderr!r}"
    assert result.returncode != 0, described
    assert result.returncode == 2, described  # a user error, not an internal one (exit 1)
    assert "Traceback" not in result.stderr, described
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and result.stderr.count("\n") == 1, described
    assert lines[0].startswith(f"{PROGRAM}: error: "), described
    assert built.phrase.lower() in lines[0].lower(), described
    assert result.stdout == "", result.stdout

    if outcome.input_before is None:
        assert not built.input.exists()
    else:
        assert FileState.of(built.input) == outcome.input_before, "the input file was modified"
    for path, state in outcome.watched_before.items():
        assert FileState.of(path) == state, f"{path.name} was modified"
    output = built.cwd / built.output
    folder = output.parent
    assert folder_listing(folder) == outcome.listing_before, "files appeared in or vanished from the output folder"
    assert partial_files(folder, output) == []
    if not built.existing_output:
        assert not os.path.lexists(output)
    if built.marker is not None:
        assert not built.marker.exists(), "the checkpoint's pickled code was executed"


def test_every_bad_input_of_issue_2_has_a_case() -> None:
    expected = {
        "2d_image",
        "one_slice_along_thick_axis",
        "scale_5",
        "scale_1",
        "nan_voxels",
        "inf_voxels",
        "checkpoint_for_another_scale",
        "checkpoint_random_bytes",
        "checkpoint_truncated",
        "checkpoint_with_pickled_code",
        "missing_input",
        "output_is_input",
        "output_is_symlink_to_input",
        "output_is_input_by_relative_path",
        "existing_output_without_overwrite",
        "output_folder_not_writable",
        "output_folder_is_a_regular_file",
        "output_folder_missing",
        "truncated_nii_gz",
        "not_nifti_extension",
    }
    assert expected <= set(CASES)


# --------------------------------------------------------------------------------------------------------------
# Successful runs


def check_synthesized(source: Path, output: Path, scale: int = 2) -> nib.Nifti1Image:
    """Output of a ×``scale`` run on the (24, 20, 5) int16 asset: shape, grid, pass-through, dtype."""
    before = nib.load(str(source))
    after = nib.load(str(output))
    original = np.asanyarray(before.dataobj)
    result = np.asanyarray(after.dataobj)
    assert result.shape == (24, 20, (5 - 1) * scale + 1)
    assert result.dtype == np.int16 == original.dtype
    assert after.get_data_dtype() == np.int16
    assert np.array_equal(result[..., ::scale], original)
    expected = before.affine.copy()
    expected[:3, 2] /= scale
    np.testing.assert_allclose(after.affine, expected, atol=1e-5)
    np.testing.assert_allclose(after.header.get_qform(), expected, atol=1e-5)
    np.testing.assert_allclose(after.affine[:3, 3], before.affine[:3, 3], atol=1e-6)
    np.testing.assert_allclose(after.header.get_zooms(), (0.8, 0.8, 3.0 / scale), atol=1e-6)
    assert -1024 <= result.min() and result.max() <= 3072
    return after


def test_valid_volume_is_synthesized(tmp_path: Path, assets: Assets) -> None:
    source = copy_of_volume(tmp_path, assets)
    state = FileState.of(source)
    output, disagreement = tmp_path / "out" / "thin.nii.gz", tmp_path / "out" / "spread.nii.gz"
    output.parent.mkdir()
    result = run_cli(synth_args(source, output, 2, assets.lite2, "--disagreement", str(disagreement)))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "thick axis 2" in result.stderr and "wrote" in result.stderr
    check_synthesized(source, output)
    spread = nib.load(str(disagreement))
    assert spread.shape == (24, 20, 9) and spread.get_data_dtype() == np.float32
    spread_data = np.asanyarray(spread.dataobj)
    assert np.all(spread_data[..., ::2] == 0) and np.all(np.isfinite(spread_data)) and spread_data.min() >= 0
    np.testing.assert_allclose(spread.affine, nib.load(str(output)).affine)
    assert FileState.of(source) == state
    assert sorted(os.listdir(output.parent)) == ["spread.nii.gz", "thin.nii.gz"]


def test_overwrite_replaces_an_existing_output(tmp_path: Path, assets: Assets) -> None:
    source = copy_of_volume(tmp_path, assets)
    output = tmp_path / "thin.nii.gz"
    output.write_bytes(b"stale")
    result = run_cli(synth_args(source, output, 2, assets.lite2, "--overwrite", "--quiet"))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    check_synthesized(source, output)
    assert partial_files(tmp_path, output) == []
    assert sorted(os.listdir(tmp_path)) == ["in.nii.gz", "thin.nii.gz"]


# --------------------------------------------------------------------------------------------------------------
# Ctrl-C


class StderrReader(threading.Thread):
    """Collects a process's stderr in the background, so the test can wait for a given line."""

    def __init__(self, stream) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.chunks: List[bytes] = []
        self.lock = threading.Lock()

    def run(self) -> None:
        for chunk in iter(lambda: self.stream.read1(4096), b""):
            with self.lock:
                self.chunks.append(chunk)

    def text(self) -> str:
        with self.lock:
            return b"".join(self.chunks).decode("utf-8", "replace")


def wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_ctrl_c_cancels_without_writing(tmp_path: Path, assets: Assets) -> None:
    source = save_volume(tmp_path / "big.nii.gz", ct_volume((160, 160, 64)))
    state = FileState.of(source)
    output = tmp_path / "out" / "thin.nii.gz"
    output.parent.mkdir()
    process = subprocess.Popen(
        cli_command(synth_args(source, output, 2, assets.lite2)),
        cwd=str(ENGINE_ROOT),
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        # A shell without job control starts background jobs with SIGINT ignored, and Python keeps an ignored
        # SIGINT ignored: give the child the default disposition an interactive terminal gives it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    reader = StderrReader(process.stderr)
    reader.start()
    try:
        started = wait_for(lambda: "thick axis 2; model" in reader.text() or process.poll() is not None, 120)
        assert started and process.poll() is None, f"the command did not start working: {reader.text()!r}"
        time.sleep(1.5)
        assert process.poll() is None, "synthesis finished before Ctrl-C: use a bigger volume"
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    reader.join(timeout=10)
    stderr = reader.text()
    assert code == 130, stderr
    assert "Traceback" not in stderr, stderr
    messages = [line for line in error_lines(stderr) if line.startswith(f"{PROGRAM}:")]
    assert messages == [f"{PROGRAM}: cancelled; nothing was written"], stderr
    assert error_lines(stderr)[-1] == messages[0]
    assert FileState.of(source) == state
    assert os.listdir(output.parent) == []
