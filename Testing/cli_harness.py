"""Running ``ct-slice-synthesis synthesize`` on bad inputs and checking that it refuses them cleanly.

Shared by ``test_engine_cli_errors.py`` (issue 2) and ``test_reliability_inputs.py`` (issue 6). A refusal must
give exit code 2, exactly one line on stderr naming the problem (no traceback), leave the input file's bytes and
modification time as they were, and leave the output folder as it was: no output file and no leftover
``.OUT.partial-*`` temporary.

Cases are registered per test module in a :class:`CaseRegistry`; :func:`run_cases` builds all of them and runs
the subprocess ones together, a few at a time (each is dominated by importing torch). ``in_process`` cases call
``cli.main`` in the test process instead, which checks the same contract without another interpreter.
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

from CTSliceSynthesisLib.inference import model_store

ENGINE_ROOT = Path(__file__).resolve().parents[1] / "CTSliceSynthesis"
REPO_ROOT = ENGINE_ROOT.parent
PROGRAM = "ct-slice-synthesis"
SPACING = (0.8, 0.8, 3.0)
SHAPE = (24, 20, 5)
PARALLEL_RUNS = 2
RUN_TIMEOUT_S = 180
EXIT_USER_ERROR = 2
# ``synthesize`` adapts the model to each scan first by default (core.config.DEFAULT_ADAPT_STEPS steps): tests whose
# subject is not adaptation turn it off, or every tiny run would take that long.
NO_ADAPTATION = ("--adapt-steps", "0")


# --------------------------------------------------------------------------------------------------------------
# Processes


def cli_env() -> Dict[str, str]:
    """The test process's environment with the engine importable, UTF-8 stderr and one thread."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ENGINE_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["PYTHONIOENCODING"] = "utf-8"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    # Tiny volumes: one thread is many times faster than two on a loaded machine (no spinning OpenMP workers).
    env["OMP_NUM_THREADS"] = "1"
    return env


def cli_command(args: Sequence[str], command: str = "synthesize") -> List[str]:
    """``python -m CTSliceSynthesisLib.cli <command> args…``."""
    return [sys.executable, "-m", "CTSliceSynthesisLib.cli", command, *map(str, args)]


def run_cli(args: Sequence[str], cwd: Path = ENGINE_ROOT, **options) -> subprocess.CompletedProcess:
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
        **options,
    )


def run_in_process(args: Sequence[str], cwd: Path, capsys, monkeypatch, command: str = "synthesize"):
    """``cli.main`` on ``args`` in this process, returned as if it were a subprocess run."""
    from CTSliceSynthesisLib import cli

    monkeypatch.chdir(cwd)
    capsys.readouterr()
    try:
        code = cli.main([command, *map(str, args)])
    except SystemExit as stop:  # argparse
        code = stop.code
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(["cli.main", command, *args], code, captured.out, captured.err)


def default_sigint() -> None:
    """``preexec_fn``: a shell without job control starts background jobs with SIGINT ignored, and Python keeps an
    ignored SIGINT ignored; give the child the default disposition an interactive terminal gives it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


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
    """Poll ``predicate`` every 50 ms for up to ``timeout`` seconds; its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


# --------------------------------------------------------------------------------------------------------------
# Files


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


@dataclass
class Assets:
    """A valid volume and random-initialised lite checkpoints for ×2 and ×3."""

    folder: Path
    volume: Path
    lite2: Path
    lite3: Path


def save_tiny_checkpoint(path: Path, scale: int = 2, seed: int = 0) -> Path:
    """A random-initialised checkpoint much smaller than ``lite`` (PInt 8 channels, 1 group of 1 block; SInt-A
    1 block per group), so that the default command, 100 adaptation steps included, takes a few seconds."""
    from CTSliceSynthesisLib.core.config import ModelConfig, PIntConfig, SIntConfig, model_config
    from CTSliceSynthesisLib.nets import SynthesisNetworks

    lite = model_config("lite", scale)
    config = ModelConfig(
        preset="lite", scale=scale, sint=SIntConfig(stem_channels=1, block=8, blocks_per_group=1),
        pint=PIntConfig(width=8, groups=1, blocks_per_group=1), residual=lite.residual, base=lite.base,
    )
    torch.manual_seed(seed)
    model = model_store.prepare_model(SynthesisNetworks(config), "tiny", None, torch.device("cpu"), "fp32")
    model_store.save_model(model, path)
    return path


def make_assets(folder: Path) -> Assets:
    torch.manual_seed(0)
    model_store.save_model(model_store.create_model("lite", 2), folder / "lite_x2.pt")
    model_store.save_model(model_store.create_model("lite", 3), folder / "lite_x3.pt")
    volume = save_volume(folder / "volume.nii.gz", ct_volume(SHAPE))
    return Assets(folder, volume, folder / "lite_x2.pt", folder / "lite_x3.pt")


class RunsShellCommand:
    """Unpickling this object would run a shell command (``os.system``): the attack weights_only blocks."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


# --------------------------------------------------------------------------------------------------------------
# Cases


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


class CaseRegistry(Dict[str, CaseBuilder]):
    """The refusal cases of one test module, by name."""

    def case(self, name: str, in_process: bool = False) -> Callable[[CaseBuilder], CaseBuilder]:
        """Register a builder under ``name``."""

        def register(builder: CaseBuilder) -> CaseBuilder:
            def build(work: Path, assets: Assets) -> Case:
                built = builder(work, assets)
                built.in_process = in_process
                return built

            self[name] = build
            return build

        return register


def synth_args(source: Path, output: Path, scale: int = 2, model: Optional[Path] = None, *extra: str) -> List[str]:
    """``synthesize`` arguments on the CPU, without adaptation (see :data:`NO_ADAPTATION`)."""
    args = ["--input", str(source), "--output", str(output), "--scale", str(scale), "--device", "cpu"]
    args += NO_ADAPTATION
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
    """``data`` saved as a NIfTI, synthesized into an empty ``out`` folder."""
    source = save_volume(work / "in.nii.gz", data, spacing)
    return image_case(work, assets, source, phrase)


def image_case(work: Path, assets: Assets, source: Path, phrase: str) -> Case:
    """An existing input file, synthesized into an empty ``out`` folder."""
    output = work / "out" / "result.nii.gz"
    output.parent.mkdir()
    return Case(synth_args(source, output, 2, assets.lite2), source, output, phrase)


def checkpoint_case(work: Path, assets: Assets, checkpoint: Path, phrase: str, scale: int = 2) -> Case:
    source = copy_of_volume(work, assets)
    output = work / "result.nii.gz"
    return Case(synth_args(source, output, scale, checkpoint), source, output, phrase, watched=[checkpoint])


@dataclass
class Outcome:
    case: Case
    input_before: Optional[FileState]
    watched_before: Dict[Path, FileState]
    listing_before: Optional[List[str]]
    result: Optional[subprocess.CompletedProcess]


def run_cases(registry: CaseRegistry, tmp_path_factory: pytest.TempPathFactory, assets: Assets) -> Dict[str, Outcome]:
    """Build every case, record the state of its files, then run the subprocess ones, a few at a time."""
    outcomes = {name: record_outcome(builder(tmp_path_factory.mktemp(name), assets)) for name, builder in registry.items()}
    runnable = [name for name, outcome in outcomes.items() if outcome.case.skip is None and not outcome.case.in_process]
    with ThreadPoolExecutor(max_workers=PARALLEL_RUNS) as pool:
        results = pool.map(lambda name: run_cli(outcomes[name].case.args, outcomes[name].case.cwd), runnable)
        for name, result in zip(runnable, results):
            outcomes[name].result = result
    return outcomes


def record_outcome(built: Case) -> Outcome:
    """``built`` with the state of its files before the run (and no result yet)."""
    return Outcome(
        case=built,
        input_before=FileState.of(built.input) if built.input.is_file() else None,
        watched_before={path: FileState.of(path) for path in built.watched},
        listing_before=folder_listing((built.cwd / built.output).parent),
        result=None,
    )


def unlock_folders(outcomes: Dict[str, Outcome]) -> None:
    """Give back write permission to ``locked`` folders, so that pytest can remove them."""
    for outcome in outcomes.values():
        for folder in (outcome.case.cwd / outcome.case.output).parents:
            if folder.is_dir() and folder.name == "locked":
                folder.chmod(0o700)


def assert_one_error_line(result: subprocess.CompletedProcess, phrase: str) -> None:
    """Exit code 2 and exactly one ``ct-slice-synthesis: error: …`` line on stderr containing ``phrase``."""
    described = f"exit {result.returncode}, stderr {result.stderr!r}"
    assert result.returncode == EXIT_USER_ERROR, described  # a user error, not an internal one (exit 1)
    assert "Traceback" not in result.stderr, described
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and result.stderr.count("\n") == 1, described
    assert lines[0].startswith(f"{PROGRAM}: error: "), described
    assert phrase.lower() in lines[0].lower(), described
    assert result.stdout == "", result.stdout


def assert_refused_cleanly(outcome: Outcome, capsys, monkeypatch) -> None:
    """Run an in-process case (or take a subprocess case's result) and check the whole refusal contract."""
    built, result = outcome.case, outcome.result
    if built.skip:
        pytest.skip(built.skip)
    if built.in_process:
        result = run_in_process(built.args, built.cwd, capsys, monkeypatch)
    assert result is not None
    assert_one_error_line(result, built.phrase)
    assert_nothing_changed(outcome)


def assert_nothing_changed(outcome: Outcome) -> None:
    """The input and watched files are as they were; the output folder has neither an output nor a temporary."""
    built = outcome.case
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
