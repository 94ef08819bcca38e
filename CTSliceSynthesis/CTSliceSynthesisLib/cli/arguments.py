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
