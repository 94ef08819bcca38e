"""What the subcommands share: the program's name in messages and the ``--axis`` value."""

from __future__ import annotations

from typing import Optional

from ..core.errors import InputError

PROGRAM = "ct-slice-synthesis"


def parse_axis(text: str) -> Optional[int]:
    """``auto`` → None, else 0, 1 or 2."""
    if text == "auto":
        return None
    if text not in ("0", "1", "2"):
        raise InputError(f"--axis must be auto, 0, 1 or 2, got {text!r}")
    return int(text)


def add_adaptation_arguments(parser, seed_help: str = "") -> None:
    """``--adapt-steps``, ``--adapt-seconds`` and ``--seed``: adaptation to the scan, as ``synthesize`` does it
    (``evaluate`` adds to ``--seed``'s help what else the seed draws, with ``seed_help``)."""
    from ..core.config import DEFAULT_ADAPT_STEPS, DEFAULT_SEED

    parser.add_argument(
        "--adapt-steps",
        type=int,
        default=DEFAULT_ADAPT_STEPS,
        metavar="N",
        help="first fine-tune the model on this volume itself for N steps (self-supervised, from its own axial "
        f"images at its own geometry; default {DEFAULT_ADAPT_STEPS}; 0: off). A budget in steps: the same input "
        "gives the same bytes, however busy the machine",
    )
    parser.add_argument(
        "--adapt-seconds",
        type=float,
        metavar="S",
        help="optional wall-time cap on adaptation (no default; 0: adaptation off). A run the cap stops before "
        "its steps is not reproducible: the log and the output's provenance say so",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        help=f"seed of adaptation's random pairs{seed_help} (default {DEFAULT_SEED}; recorded in the provenance)",
    )


def check_adaptation_arguments(args) -> None:
    """Refuse a negative adaptation budget in one line."""
    if args.adapt_steps < 0:
        raise InputError("--adapt-steps must not be negative (0: no adaptation)")
    if args.adapt_seconds is not None and not args.adapt_seconds >= 0:
        raise InputError("--adapt-seconds must not be negative")
