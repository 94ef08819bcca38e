"""What every other package builds on, in numpy and the standard library only (no torch, nothing else of the
engine): model presets and settings (``config``), one-line errors (``errors``), voxel geometry (``geometry``),
Hounsfield units ↔ the networks' range (``intensity``), the classical z-only interpolations (``interpolation``),
the thick-slice simulation (``degradation``) and the progress and cancel callbacks of long work (``callbacks``).

This file imports nothing, so that importing ``core.errors`` (as ``slicer_support`` and the Slicer module do)
loads nothing heavy.
"""
