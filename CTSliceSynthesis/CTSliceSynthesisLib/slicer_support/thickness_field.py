"""The module panel's input slice thickness: which value it holds, where that value came from, and the
adaptation defaults that follow the engine's.

The panel keeps three values in the scene's parameter node: the thickness shown (mm, ``0`` = unknown), the
volume it belongs to, and the DICOM Slice Thickness (0018,0050) found for that volume (``0`` = none). Where the
shown value came from follows from them alone (:func:`thickness_source`), so no widget signal has to tell a
typed value from one the panel set, and a value typed for a volume survives everything but choosing another
volume: saving and reloading the scene, leaving and re-entering the module, or any other parameter change.
:func:`describe_result` words the slice geometry a finished run reports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Tuple

# The panel's spin box range; a DICOM value outside it is treated as absent (no CT slice is 100 mm thick).
MAX_THICKNESS_MM = 100.0
# The spin box shows 3 decimals (0.625 mm is a common thickness); values closer than this are the same value.
TOLERANCE_MM = 5e-4
# Where a thickness in the panel came from: the DICOM header of the input, or the user.
SOURCE_DICOM = "dicom"
SOURCE_GIVEN = "given"
# Slicer's DICOM scalar-volume loader stacks the instances along K (IJK axis 2): Slice Thickness describes that
# axis only, so a DICOM value is not used when another axis is synthesized.
DICOM_SLICE_AXIS = 2
# The panel's "Adapt to this scan" steps spin box range (a budget in steps: the same input gives the same result).
ADAPT_STEPS_RANGE = (10, 5000)
ADAPT_STEPS_WHEN_OFF = 100


@dataclass(frozen=True)
class ThicknessField:
    """The thickness state of the panel: ``value`` (mm, 0 = unknown) for the volume ``volume_id`` (``""``: none),
    whose DICOM Slice Thickness is ``dicom_value`` (mm, 0 = none)."""

    volume_id: str = ""
    value: float = 0.0
    dicom_value: float = 0.0


def usable_thickness(value: Optional[float]) -> float:
    """``value`` when it is a thickness the panel can hold (0 < value ≤ :data:`MAX_THICKNESS_MM`), else 0."""
    try:
        number = float(value) if value is not None else 0.0
    except (TypeError, ValueError):
        return 0.0
    return number if 0.0 < number <= MAX_THICKNESS_MM else 0.0


def for_input(field: ThicknessField, volume_id: str, dicom_lookup: Callable[[], Optional[float]]) -> ThicknessField:
    """The state once ``volume_id`` is the input: ``field`` itself when it already belongs to that volume (a typed
    value is kept), else the new volume's DICOM thickness, or 0 (unknown) without one. ``dicom_lookup`` is called
    only for a new, non-empty ``volume_id``."""
    volume_id = volume_id or ""
    if volume_id == field.volume_id:
        return field
    dicom = usable_thickness(dicom_lookup()) if volume_id else 0.0
    return ThicknessField(volume_id, dicom, dicom)


def thickness_source(value: float, dicom_value: float) -> Optional[str]:
    """Where ``value`` came from: :data:`SOURCE_DICOM` when it is the volume's DICOM thickness, :data:`SOURCE_GIVEN`
    for any other positive value (typed by the user), ``None`` for 0 (unknown: the engine estimates it)."""
    if not value > 0:
        return None
    if dicom_value > 0 and abs(value - dicom_value) <= TOLERANCE_MM:
        return SOURCE_DICOM
    return SOURCE_GIVEN


def request_thickness(value: float, dicom_value: float) -> Tuple[Optional[float], str]:
    """``(slice_thickness, thickness_source)`` for a synthesis request: ``(None, "given")`` when unknown."""
    source = thickness_source(value, dicom_value)
    if source is None:
        return None, SOURCE_GIVEN
    return float(value), source


def for_request(field: ThicknessField, volume_id: str, ijk_axis: int) -> Tuple[Optional[float], str]:
    """:func:`request_thickness` for synthesizing ``volume_id`` along IJK ``ijk_axis``: unknown (the engine estimates
    it) when ``field`` belongs to another volume, or when its value is the DICOM one and ``ijk_axis`` is not the
    axis the DICOM slices are stacked along (:data:`DICOM_SLICE_AXIS`)."""
    if not volume_id or field.volume_id != volume_id:
        return None, SOURCE_GIVEN
    thickness, source = request_thickness(field.value, field.dicom_value)
    if source == SOURCE_DICOM and ijk_axis != DICOM_SLICE_AXIS:
        return None, SOURCE_GIVEN
    return thickness, source


def adaptation_defaults(default_steps: int) -> Tuple[bool, int]:
    """``(adapt to the scan, steps)`` the panel starts with, following the engine's default budget: on with that
    budget (clamped into the spin box range) when it is positive, else off with :data:`ADAPT_STEPS_WHEN_OFF`
    ready in the spin box."""
    if not default_steps > 0:
        return False, ADAPT_STEPS_WHEN_OFF
    low, high = ADAPT_STEPS_RANGE
    return True, int(min(max(int(default_steps), low), high))


# How the RESULT line's ``thickness_source`` reads in the panel (``core.geometry.THICKNESS_SOURCES``).
RESULT_SOURCE_WORDS = {
    "dicom": "from the DICOM header",
    "given": "as typed",
    "estimated": "estimated by the engine",
    "spacing": "assumed equal to the spacing",
}


def describe_result(info: Mapping[str, Any]) -> str:
    """One line on the input's slice geometry and the adaptation, from what the background process reported
    (``slice_spacing_mm``, ``slice_thickness_mm``, ``thickness_source``, ``adapt_steps``, ``adapted_steps``,
    ``adapt_seed``, ``adapt_capped``, ``adapt_seconds``: the optional cap)."""
    spacing, thickness = _number(info.get("slice_spacing_mm")), _number(info.get("slice_thickness_mm"))
    if thickness is None:
        text = "Input slice geometry unknown (no voxel spacing)"
    else:
        source = str(info.get("thickness_source") or "")
        words = RESULT_SOURCE_WORDS.get(source, source)
        text = f"Input slices {thickness:.3g} mm thick" + (f" ({words})" if words else "")
        if spacing is not None:
            text += f", {spacing:.3g} mm apart"
    steps = int(_number(info.get("adapted_steps")) or 0)
    planned = int(_number(info.get("adapt_steps")) or 0)
    cap = _number(info.get("adapt_seconds"))
    if steps > 0:
        seed = _number(info.get("adapt_seed"))
        text += f"; adapted to this scan in {steps} steps" + ("" if seed is None else f" (seed {int(seed)})")
        if info.get("adapt_capped"):
            text += (f", cut short of {planned} by the {cap:g} s cap: not reproducible" if cap is not None
                     else ", cut short: not reproducible")
    elif planned > 0 and (cap is None or cap > 0):
        text += "; not adapted to this scan"
    return text + "."


def _number(value: Any) -> Optional[float]:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
