"""The callbacks that long operations take: progress reports and cancellation checks.

``progress(fraction, stage)`` is called with the fraction done (0 to 1) and a short description of the current
stage; ``cancel()`` is polled between units of work and returning True stops the work with
:class:`~CTSliceSynthesisLib.core.errors.SynthesisCancelled`.
"""

from __future__ import annotations

from typing import Callable

ProgressCallback = Callable[[float, str], None]
CancelCheck = Callable[[], bool]


def sub_range(report: ProgressCallback, start: float, end: float) -> ProgressCallback:
    """A progress callback for one stage that maps its own 0..1 onto ``start``..``end`` of ``report``."""

    def forward(fraction: float, stage: str) -> None:
        report(start + (end - start) * min(max(float(fraction), 0.0), 1.0), stage)

    return forward
