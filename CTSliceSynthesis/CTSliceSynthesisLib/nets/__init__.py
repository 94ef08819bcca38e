"""The two interpolators of the method and their building blocks: SInt-A with its memory bank (``sint``,
``memory``), PInt (``pint``), the blocks they share (``blocks``), the cubic B-spline base the residual nets
correct (``cubic_base``), both networks of one factor (``synthesis``), and the views that training and
inference share (``views``: volumes ↔ axial pairs, coronal and sagittal images). Imports ``core`` only."""

from .cubic_base import cubic_between
from .memory import MemoryBank
from .pint import PixelInterpolator
from .sint import SliceInterpolator, SliceInterpolatorOutput
from .synthesis import SynthesisNetworks
from .views import (
    coronal_images,
    from_coronal,
    from_sagittal,
    insert_slices,
    interpolate_axial,
    interpolate_coronal,
    interpolate_sagittal,
    new_positions,
    sagittal_images,
)

__all__ = [
    "MemoryBank",
    "PixelInterpolator",
    "SliceInterpolator",
    "SliceInterpolatorOutput",
    "SynthesisNetworks",
    "coronal_images",
    "cubic_between",
    "from_coronal",
    "from_sagittal",
    "insert_slices",
    "interpolate_axial",
    "interpolate_coronal",
    "interpolate_sagittal",
    "new_positions",
    "sagittal_images",
]
