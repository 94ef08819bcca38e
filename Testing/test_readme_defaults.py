"""The README tells the truth about ``synthesize``: every default it states matches the real parser.

The README has a short list under "### Defaults of `synthesize`", one item per line, in a fixed phrasing that
the regular expressions below read (keep the wording when you edit it):

    - Factors: `--scale` 2, 3, 4, 5, 6
    - Target spacing: `--target-spacing MM` instead of `--scale`
    - Fusion: `--fusion pint` (choices: pint, equal, calibrated)
    - Adaptation: `--adapt-steps 100` (0 = off)
    - Wall-time cap: `--adapt-seconds` none
    - Seed: `--seed 0`
    - Precision: `--precision auto` (choices: auto, fp32, bf16, fp16)

Each stated value is compared with the ``synthesize`` sub-parser that ``cli.main.build_parser`` builds (its
defaults and choices) and with the constants of ``core/config.py``. The README must also stay a guide (at most
25,000 bytes) and keep its two one-line commands verbatim: the demo, and the test command that ``.ci/run`` runs.
It also checks the worked examples of ``--target-spacing`` against ``core.geometry.scale_for_target_spacing``.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from CTSliceSynthesisLib import cli
from CTSliceSynthesisLib.cli.main import build_parser
from CTSliceSynthesisLib.core import config
from CTSliceSynthesisLib.core.geometry import scale_for_target_spacing

REPO_ROOT = Path(__file__).resolve().parents[1]
README = REPO_ROOT / "README.md"
CI_RUN = REPO_ROOT / ".ci" / "run"
MAX_README_BYTES = 25_000
DEMO_COMMAND = (
    "python3 -m venv .venv && .venv/bin/pip install -q torch==2.13.0 -e . && .venv/bin/ct-slice-synthesis demo"
)
DEFAULTS_HEADING = "### Defaults of `synthesize`"


def readme_text() -> str:
    return README.read_text(encoding="utf-8")


def defaults_section() -> str:
    """The README's defaults list: from its heading to the next blank line after the list."""
    text = readme_text()
    assert DEFAULTS_HEADING in text, f"README.md has no section {DEFAULTS_HEADING!r} (see this test's docstring)"
    section = text.split(DEFAULTS_HEADING, 1)[1]
    items = re.search(r"((?:^- .*\n)+)", section, re.MULTILINE)
    assert items, f"no '- Name: value' list under {DEFAULTS_HEADING!r} in README.md"
    return items.group(1)


def stated(pattern: str, what: str) -> re.Match:
    """The README's line for ``what``; fails with the expected phrasing when it is missing."""
    match = re.search(pattern, defaults_section(), re.MULTILINE)
    assert match, f"README.md's defaults list has no line for {what} matching /{pattern}/"
    return match


def words(text: str) -> List[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def synthesize_actions() -> Dict[str, argparse.Action]:
    """The ``synthesize`` sub-parser's actions by option string (``--scale`` → its action)."""
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    synthesize = subparsers.choices["synthesize"]
    return {option: action for action in synthesize._actions for option in action.option_strings}


def option(name: str) -> argparse.Action:
    actions = synthesize_actions()
    if name not in actions:
        pytest.fail(
            f"`ct-slice-synthesis synthesize` has no {name} option, but README.md documents it "
            f"(expected once the branch that adds it is merged)",
            pytrace=False,
        )
    return actions[name]


def choices(action: argparse.Action) -> Optional[List[str]]:
    return None if action.choices is None else [str(choice) for choice in action.choices]


# -- the README as a whole -------------------------------------------------------------------------------------------


def test_readme_is_a_guide_of_at_most_25_kB():
    size = README.stat().st_size
    assert size <= MAX_README_BYTES, (
        f"README.md is {size:,} bytes, over {MAX_README_BYTES:,}: move measurements to Testing/benchmarks/results/"
    )


def test_readme_keeps_the_demo_command_verbatim():
    assert f"```bash\n{DEMO_COMMAND}\n```" in readme_text(), "README.md lost the demo command block, verbatim"


def test_readme_keeps_the_test_command_that_ci_runs_verbatim():
    lines = [line.strip() for line in CI_RUN.read_text(encoding="utf-8").splitlines()]
    commands = [line for line in lines if line.startswith("python3 -m venv")]
    assert len(commands) == 1, f".ci/run should run one set-up-and-test command line, found {commands}"
    assert f"```bash\n{commands[0]}\n```" in readme_text(), (
        f"README.md must show the command .ci/run runs, verbatim, as its own bash block: {commands[0]}"
    )


# -- each stated default against the parser and the configuration --------------------------------------------------


def parse_synthesize(*extra: str) -> argparse.Namespace:
    return build_parser().parse_args(["synthesize", "--input", "in.nii.gz", "--output", "out.nii.gz", *extra])


def test_supported_factors(capsys):
    readme = [int(r) for r in words(stated(r"^- Factors: `--scale` ([\d, ]+)$", "the factors").group(1))]
    assert readme == list(config.SUPPORTED_SCALES), (
        f"README.md states factors {readme}; core/config.py SUPPORTED_SCALES is {list(config.SUPPORTED_SCALES)}"
    )
    action = option("--scale")
    if action.choices is not None:
        assert choices(action) == [str(r) for r in readme], (
            f"README.md states factors {readme}; `synthesize --scale` choices are {choices(action)}"
        )
    for factor in readme:
        assert parse_synthesize("--scale", str(factor)).scale == factor
    for outside in (1, readme[-1] + 1):
        code = cli.main(["synthesize", "--input", "thick.nii.gz", "--output", "thin.nii.gz", "--scale", str(outside)])
        errors = [line for line in capsys.readouterr().err.splitlines() if line]
        assert code == 2 and len(errors) == 1 and f"unsupported scale {outside}" in errors[0], (
            f"README.md states factors {readme}; `synthesize --scale {outside}` gave exit {code}: {errors}"
        )


def test_target_spacing_option():
    stated(r"^- Target spacing: `--target-spacing MM` instead of `--scale`$", "--target-spacing")
    action = option("--target-spacing")
    assert action.default is None, f"--target-spacing should have no default, has {action.default!r}"
    scale = option("--scale")
    assert not scale.required, "--scale must not be required when --target-spacing can choose the factor"


@pytest.mark.parametrize("spacing, target, factor", [(5.0, 1.0, 5), (2.5, 1.0, 3), (3.0, 1.0, 3)])
def test_target_spacing_examples_in_the_readme(spacing, target, factor):
    text = readme_text()
    example = f"{spacing:g} mm → {target:g} mm is ×{factor}"
    assert example in text, f"README.md lost the worked example '{example}'"
    assert scale_for_target_spacing(spacing, target) == factor


def test_fusion():
    match = stated(r"^- Fusion: `--fusion (\w+)` \(choices: ([\w, ]+)\)$", "the fusion")
    default, readme_choices = match.group(1), words(match.group(2))
    assert default == config.DEFAULT_FUSION, (
        f"README.md states --fusion {default}; core/config.py DEFAULT_FUSION is {config.DEFAULT_FUSION}"
    )
    assert readme_choices == list(config.FUSIONS), f"README.md states fusions {readme_choices}, config {config.FUSIONS}"
    action = option("--fusion")
    assert action.default == default, f"README.md states --fusion {default}; the parser's default is {action.default}"
    assert choices(action) == readme_choices, f"README.md states {readme_choices}; the parser has {choices(action)}"


def test_adaptation_budget_in_steps():
    steps = int(stated(r"^- Adaptation: `--adapt-steps (\d+)` \(0 = off\)$", "the adaptation budget").group(1))
    assert steps == config.DEFAULT_ADAPT_STEPS, (
        f"README.md states --adapt-steps {steps}; core/config.py DEFAULT_ADAPT_STEPS is {config.DEFAULT_ADAPT_STEPS}"
    )
    default = option("--adapt-steps").default
    assert default == steps, (
        f"README.md states --adapt-steps {steps} by default; the parser's default is {default!r} "
        f"(expected {steps} once the reproducible-adaptation branch is merged)"
    )


def test_wall_time_cap_is_off_by_default():
    stated(r"^- Wall-time cap: `--adapt-seconds` none$", "the wall-time cap")
    default = option("--adapt-seconds").default
    assert default in (None, 0, 0.0), (
        f"README.md states no wall-time cap by default; `synthesize --adapt-seconds` defaults to {default!r} "
        f"(expected none once the reproducible-adaptation branch is merged)"
    )


def test_seed():
    seed = int(stated(r"^- Seed: `--seed (\d+)`$", "the seed").group(1))
    assert seed == config.DEFAULT_SEED, f"README.md states --seed {seed}; DEFAULT_SEED is {config.DEFAULT_SEED}"
    default = option("--seed").default
    assert default == seed, f"README.md states --seed {seed}; the parser's default is {default!r}"


def test_precision():
    match = stated(r"^- Precision: `--precision (\w+)` \(choices: ([\w, ]+)\)$", "the precision")
    default, readme_choices = match.group(1), words(match.group(2))
    assert readme_choices == list(config.PRECISIONS), (
        f"README.md states precisions {readme_choices}; core/config.py PRECISIONS is {list(config.PRECISIONS)}"
    )
    action = option("--precision")
    assert action.default == default, f"README.md states --precision {default}; the parser's is {action.default}"
    assert choices(action) == readme_choices, f"README.md states {readme_choices}; the parser has {choices(action)}"
