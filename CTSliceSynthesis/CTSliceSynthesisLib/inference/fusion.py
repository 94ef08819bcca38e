"""How the three views and the classical interpolations are mixed at synthesized slices.

Eq. 7 of the paper averages SInt-A, PInt-C and PInt-S. The product can also weigh them per volume, with linear
and cubic B-spline interpolation along z as two more candidates (see ``calibration.py``): a view that the
volume's own evidence does not support gets a small weight, and a volume where no net helps falls back to the
better classical interpolation instead of being made worse.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, Optional, Sequence

from ..core.errors import InputError

VIEWS = ("axial", "coronal", "sagittal")
CANDIDATES = VIEWS + ("linear", "cubic")


@dataclass(frozen=True)
class FusionWeights:
    """Non-negative weights of SInt-A, PInt-C, PInt-S, linear and cubic interpolation that sum to 1."""

    axial: float = 1.0 / 3.0
    coronal: float = 1.0 / 3.0
    sagittal: float = 1.0 / 3.0
    linear: float = 0.0
    cubic: float = 0.0

    def __post_init__(self) -> None:
        values = self.as_dict()
        if min(values.values()) < -1e-9 or abs(sum(values.values()) - 1.0) > 1e-6:
            raise InputError(f"fusion weights must be non-negative and sum to 1, got {values}")

    def as_dict(self) -> Dict[str, float]:
        """``{candidate: weight}`` in :data:`CANDIDATES` order."""
        return {name: float(value) for name, value in asdict(self).items()}

    @property
    def view_total(self) -> float:
        """Total weight of the three networks' views."""
        return self.axial + self.coronal + self.sagittal

    @staticmethod
    def equal_views(views: Sequence[str] = VIEWS) -> "FusionWeights":
        """The mean of the chosen views: eq. 7 for all three, an ablation for a subset."""
        chosen = [view for view in VIEWS if view in views]
        if not chosen or len(chosen) != len(set(views)):
            raise InputError(f"views must be a non-empty subset of {', '.join(VIEWS)}, got {', '.join(views)}")
        share = 1.0 / len(chosen)
        return FusionWeights(**{view: (share if view in chosen else 0.0) for view in VIEWS})


# The fixed fusions of ``core.config.FUSIONS`` (``calibrated`` is fitted per volume, in ``calibration.py``).
PINT_VIEWS = ("coronal", "sagittal")


def fusion_weights(name: str) -> Optional[FusionWeights]:
    """The weights of a fusion named in ``core.config.FUSIONS``: ``pint`` → the mean of PInt's coronal and
    sagittal views; ``equal`` → eq. 7 (the mean of all three views); ``calibrated`` → ``None`` (fitted per volume
    by the caller)."""
    if name == "pint":
        return FusionWeights.equal_views(PINT_VIEWS)
    if name == "equal":
        return FusionWeights.equal_views(VIEWS)
    if name == "calibrated":
        return None
    raise InputError(f"unknown fusion {name!r}")
