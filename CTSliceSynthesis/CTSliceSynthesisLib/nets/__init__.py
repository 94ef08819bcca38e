"""The two interpolators of the method and their building blocks."""

from .memory import MemoryBank
from .pint import PixelInterpolator
from .sint import SliceInterpolator, SliceInterpolatorOutput
from .synthesis import SynthesisNetworks

__all__ = ["MemoryBank", "PixelInterpolator", "SliceInterpolator", "SliceInterpolatorOutput", "SynthesisNetworks"]
