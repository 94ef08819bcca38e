"""The ``ct-slice-synthesis`` command: its parser, the dispatch to the subcommands (``synthesize``, ``train``,
``demo``, ``evaluate``) and the exit codes.

Every documented failure prints one line ``ct-slice-synthesis: error: …`` and exits non-zero, with the input
untouched and no partial output.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from typing import Optional, Sequence

from .. import __version__
from ..core.errors import CTSliceSynthesisError, SynthesisCancelled
from .arguments import PROGRAM
from .demo import add_demo_arguments, run_demo
from .evaluate import add_evaluate_arguments, run_evaluate
from .synthesize import add_synthesize_arguments, run_synthesize
from .train import add_train_arguments, run_train

EXIT_ERROR = 2
EXIT_INTERNAL = 1
EXIT_CANCELLED = 130


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a usage mistake on one line instead of usage + message."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_ERROR, f"{PROGRAM}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The full command-line interface."""
    parser = OneLineParser(prog=PROGRAM, description="Thick-slice CT → thin-slice CT (Fang et al., CVPR 2022).")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    add_synthesize_arguments(commands.add_parser("synthesize", help="synthesize thin slices of a NIfTI volume"))
    add_train_arguments(commands.add_parser("train", help="self-supervised training or fine-tuning"))
    add_demo_arguments(commands.add_parser("demo", help="simulate thick slices of a real CT and synthesize them back"))
    add_evaluate_arguments(commands.add_parser("evaluate", help="score synthesis and baselines on thin-slice CTs"))
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; returns the process exit code."""
    args = build_parser().parse_args(argv)
    warnings.filterwarnings("ignore", message=".*pkg_resources.*")
    try:
        run = {"synthesize": run_synthesize, "train": run_train, "demo": run_demo, "evaluate": run_evaluate}
        return run[args.command](args)
    except (SynthesisCancelled, KeyboardInterrupt):
        print(f"{PROGRAM}: cancelled; nothing was written", file=sys.stderr)
        return EXIT_CANCELLED
    except CTSliceSynthesisError as error:
        print(f"{PROGRAM}: error: {one_line(error)}", file=sys.stderr)
        return EXIT_ERROR
    except MemoryError:
        print(f"{PROGRAM}: error: out of memory", file=sys.stderr)
        return EXIT_ERROR
    except Exception as error:  # noqa: BLE001 - the last line of defence of a CLI
        if args.debug:
            raise
        print(f"{PROGRAM}: internal error: {type(error).__name__}: {one_line(error)} (rerun with --debug)", file=sys.stderr)
        return EXIT_INTERNAL


def one_line(error: BaseException) -> str:
    """The first line of an exception's message."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
