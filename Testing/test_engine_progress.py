"""Logs a person can read: the progress of ``synthesize`` and ``train`` is a tqdm bar on a terminal and a few
time-stamped lines anywhere else (a CI log, a ``nohup`` file, Slicer's batch log), never carriage returns."""

from __future__ import annotations

import io
import re
import subprocess
from pathlib import Path

import pytest

from cli_harness import ENGINE_ROOT, cli_command, cli_env, ct_volume, save_tiny_checkpoint, save_volume
from CTSliceSynthesisLib.cli.progress import ProgressReporter

STAMPED = re.compile(r"^\[\d\d:\d\d:\d\d\] synthesize: \d{1,3}% \S")


class FakeStream(io.StringIO):
    """A text stream that says whether it is a terminal."""

    def __init__(self, terminal: bool) -> None:
        super().__init__()
        self.terminal = terminal

    def isatty(self) -> bool:
        return self.terminal


def drive(reporter: ProgressReporter) -> None:
    """A run of three stages, reported in 1 % steps."""
    for percent in range(101):
        stage = ("axial view", "coronal view", "sagittal view")[min(percent // 34, 2)]
        reporter.update(percent / 100, stage)
    reporter.close()


def test_on_a_terminal_the_reporter_draws_a_bar() -> None:
    stream = FakeStream(terminal=True)
    drive(ProgressReporter("synthesize", stream))
    text = stream.getvalue()
    assert "\r" in text and "100%" in text and "sagittal view" in text


def test_elsewhere_the_reporter_writes_a_few_stamped_lines() -> None:
    stream = FakeStream(terminal=False)
    drive(ProgressReporter("synthesize", stream, clock=lambda: "12:03:04"))
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert lines[0] == "[12:03:04] synthesize: 0% axial view"
    assert "[12:03:04] synthesize: 34% coronal view" in lines  # a new stage: a line at once
    assert lines[-1] == "[12:03:04] synthesize: 100% sagittal view"
    assert len(lines) == 11 + 2  # one per 10 % and one per stage change
    assert all(STAMPED.match(line) for line in lines)


def test_counted_progress_and_details() -> None:
    stream = FakeStream(terminal=False)
    reporter = ProgressReporter("train", stream, total=20, unit="step", initial=10, clock=lambda: "00:00:01")
    for step in range(11, 21):
        reporter.update(step / 20, "", f"loss={1 / step:.4g}")
    reporter.close()
    lines = stream.getvalue().splitlines()
    assert lines[0] == "[00:00:01] train: 55% (11/20 steps) loss=0.09091"
    assert [line.split()[2] for line in lines] == ["55%", "60%", "70%", "80%", "90%", "100%"]


@pytest.mark.parametrize("terminal", [True, False])
def test_disabled_reporter_prints_nothing(terminal: bool) -> None:
    stream = FakeStream(terminal)
    drive(ProgressReporter("synthesize", stream, enabled=False))
    assert stream.getvalue() == ""


def test_synthesize_log_in_a_file(tmp_path: Path) -> None:
    """``synthesize`` with its DEFAULT options (adaptation to the scan on) and stderr in a file: the input line,
    one stamped line per stage and at most one per 10 % otherwise (adaptation included: no line per step), and
    the result with the adaptation's steps and seed."""
    from CTSliceSynthesisLib.core.config import DEFAULT_ADAPT_STEPS, DEFAULT_SEED

    checkpoint = save_tiny_checkpoint(tmp_path / "tiny.pt", seed=3)
    source = save_volume(tmp_path / "thick.nii.gz", ct_volume((40, 36, 12)))
    log = tmp_path / "stderr.log"
    with open(log, "w") as stderr:
        code = subprocess.run(
            cli_command(["--input", source, "--output", tmp_path / "thin.nii.gz", "--scale", "2",
                         "--model", checkpoint]),
            cwd=str(ENGINE_ROOT), env=cli_env(), stdout=subprocess.DEVNULL, stderr=stderr, timeout=300,
        ).returncode
    text = log.read_text()
    assert code == 0, text
    assert "\r" not in text
    lines = text.splitlines()
    progress = [line for line in lines if STAMPED.match(line)]
    others = [line for line in lines if not STAMPED.match(line)]
    assert 3 <= len(progress) <= 16, text
    assert len(others) == 2, text  # the input and model, what was written
    assert others[0].startswith("thick.nii.gz: (40, 36, 12) int16") and others[-1].startswith("wrote ")
    assert f"(adapted to this scan in {DEFAULT_ADAPT_STEPS} steps, seed {DEFAULT_SEED})" in others[-1]
    assert progress[-1].endswith("100% done")
    adapting = [line for line in progress if line.endswith(" adapting to this scan")]
    assert 2 <= len(adapting) <= 6, text  # the stage's first line, then one per 10 % of the whole run
    assert not [line for line in lines if "step " in line], text
    stages = [(int(line.split()[2].rstrip("%")), line.split(" ", 3)[3]) for line in progress]
    for (before, stage_before), (after, stage) in zip(stages, stages[1:]):
        assert stage != stage_before or after // 10 > before // 10, text  # within a stage: a new tenth


def test_train_log_in_a_pipe(tmp_path: Path) -> None:
    """``train`` with stderr in a pipe: its two report lines and one stamped line per step counted in steps (few
    steps: each is a new tenth), no carriage return; ``--quiet`` leaves only the report lines."""
    source = save_volume(tmp_path / "thick.nii.gz", ct_volume((48, 48, 12)))
    base = ["--data", source, "--patch", "32", "--window", "5", "--steps", "3", "--device", "cpu"]
    runs = {}
    for name, extra in (("shown", []), ("quiet", ["--quiet"])):
        runs[name] = subprocess.run(cli_command([*base, "--output-dir", tmp_path / name, *extra], command="train"),
                                    cwd=str(ENGINE_ROOT), env=cli_env(), capture_output=True, text=True, timeout=300)
        assert runs[name].returncode == 0, runs[name].stderr
    shown = runs["shown"].stderr
    assert "\r" not in shown
    steps = [line for line in shown.splitlines() if line.startswith("[")]
    assert len(steps) == 3
    assert all(re.match(r"^\[\d\d:\d\d:\d\d\] train: \d+% \(\d/3 steps\) loss=", line) for line in steps), steps
    reports = [line for line in shown.splitlines() if not line.startswith("[")]
    quiet = runs["quiet"].stderr.replace(str(tmp_path / "quiet"), str(tmp_path / "shown")).splitlines()
    assert len(reports) == 2 and reports == quiet
