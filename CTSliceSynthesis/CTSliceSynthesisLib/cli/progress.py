"""Progress of a long command on stderr, readable both on a terminal and in a log file.

On a terminal (``stream.isatty()``) a :class:`ProgressReporter` draws a tqdm bar. Anywhere else — a CI log, a
``nohup`` file, Slicer's batch log, a pipe — a bar would write hundreds of carriage-return updates, so the reporter
prints plain lines instead: one when the stage changes and at most one per 10 % of progress otherwise, each with a
time stamp and never a carriage return::

    [12:03:04] synthesize: 40% coronal view (PInt)
    [12:05:10] train: 50% (1000/2000 steps) loss=0.01234, lr=1e-05

Disabled (``--quiet``), it prints nothing.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Callable, Optional, TextIO

LINE_STEP = 0.1  # without a stage change, at most one line per this fraction of the work


def clock_stamp() -> str:
    """The local time as ``HH:MM:SS``."""
    return time.strftime("%H:%M:%S")


class ProgressReporter:
    """``update(fraction, stage)`` as the work goes on, ``close()`` at the end (or use it as a context manager).

    ``label`` names the command in lines (``synthesize``, ``train``). The bar counts ``total`` ``unit`` (100 %
    by default; ``total=steps, unit="step"`` for training) from ``initial``; ``bar_options`` go to tqdm as they
    are. ``stage`` is the bar's description and ``detail`` (optional) its postfix.
    """

    def __init__(
        self,
        label: str,
        stream: Optional[TextIO] = None,
        *,
        enabled: bool = True,
        total: int = 100,
        unit: str = "%",
        initial: int = 0,
        clock: Callable[[], str] = clock_stamp,
        **bar_options: Any,
    ) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.total = total
        self.unit = unit
        self.clock = clock
        self._bar = None
        self._stage: Optional[str] = None
        self._step = -1
        if enabled and _is_terminal(self.stream):
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, unit=unit, file=self.stream, **bar_options)

    def update(self, fraction: float, stage: str, detail: str = "") -> None:
        """Report that ``fraction`` (0 to 1) of the work is done, now at ``stage``."""
        if not self.enabled:
            return
        fraction = min(max(float(fraction), 0.0), 1.0)
        count = round(fraction * self.total)
        if self._bar is not None:
            if stage:
                self._bar.set_description(stage)
            if detail:
                self._bar.set_postfix_str(detail)
            self._bar.update(count - self._bar.n)
            return
        step = int(fraction / LINE_STEP + 1e-9)
        if stage == self._stage and step <= self._step:
            return
        self._stage, self._step = stage, step
        self.stream.write(self.line(fraction, count, stage, detail) + "\n")
        self.stream.flush()

    def line(self, fraction: float, count: int, stage: str, detail: str) -> str:
        """The plain-text form of one report."""
        text = f"[{self.clock()}] {self.label}: {round(100 * fraction)}%"
        if self.unit != "%":
            text += f" ({count}/{self.total} {self.unit}s)"
        return " ".join(part for part in (text, stage, detail) if part)

    def close(self) -> None:
        """End the bar (a line break on a terminal); nothing to do for lines."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> "ProgressReporter":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (ValueError, OSError):  # a closed stream
        return False
