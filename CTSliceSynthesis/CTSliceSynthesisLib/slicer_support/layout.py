"""The comparison views: input and synthesized volume side by side, same reformat, scrolling together.

Slicer's side-by-side layout has two slice views, Red and Yellow. The input goes in Red, the output in Yellow,
both in the same orientation (coronal by default, where the gain across slices shows), rotated to the input's
acquisition planes, and linked so that scrolling one scrolls the other. The disagreement map can be overlaid on
the output. Every function returns ``False`` and does nothing when there is no layout manager, which is the case
with ``--no-main-window``; ``slicer`` is imported only when a function is called.
"""

from __future__ import annotations

from typing import Any, Optional

SIDE_BY_SIDE_LAYOUT = 29  # vtkMRMLLayoutNode::SlicerLayoutSideBySideView: Red | Yellow
INPUT_VIEW = "Red"
OUTPUT_VIEW = "Yellow"
ORIENTATIONS = ("Coronal", "Sagittal", "Axial")
DEFAULT_OVERLAY_OPACITY = 0.5


def check_orientation(orientation: str) -> str:
    """Return ``orientation`` if it is one of :data:`ORIENTATIONS`, else raise ``ValueError``."""
    if orientation not in ORIENTATIONS:
        raise ValueError(f"orientation must be one of {', '.join(ORIENTATIONS)}, got {orientation!r}")
    return orientation


def _layout_manager() -> Optional[Any]:
    import slicer

    return slicer.app.layoutManager()


def is_comparison_shown() -> bool:
    """Whether the side-by-side comparison layout is the current layout."""
    manager = _layout_manager()
    return manager is not None and manager.layout == SIDE_BY_SIDE_LAYOUT


def show_comparison(
    input_volume: Any,
    output_volume: Any,
    orientation: str = "Coronal",
    overlay_volume: Optional[Any] = None,
    overlay_opacity: float = DEFAULT_OVERLAY_OPACITY,
) -> bool:
    """Switch to the side-by-side layout with ``input_volume`` left and ``output_volume`` right, linked."""
    check_orientation(orientation)
    manager = _layout_manager()
    if manager is None:
        return False
    manager.setLayout(SIDE_BY_SIDE_LAYOUT)
    for view_name, volume in ((INPUT_VIEW, input_volume), (OUTPUT_VIEW, output_volume)):
        composite = manager.sliceWidget(view_name).mrmlSliceCompositeNode()
        composite.SetBackgroundVolumeID(volume.GetID())
        composite.SetForegroundVolumeID(None)
        composite.SetLabelVolumeID(None)
        composite.SetLinkedControl(True)
        composite.SetHotLinkedControl(True)
    set_overlay(overlay_volume, overlay_opacity)
    return set_orientation(orientation, input_volume)


def set_orientation(orientation: str, reference_volume: Any) -> bool:
    """Show both comparison views in ``orientation``, aligned with ``reference_volume``'s planes, and fit them."""
    check_orientation(orientation)
    manager = _layout_manager()
    if manager is None:
        return False
    for view_name in (INPUT_VIEW, OUTPUT_VIEW):
        widget = manager.sliceWidget(view_name)
        slice_node = widget.mrmlSliceNode()
        slice_node.SetOrientation(orientation)
        slice_node.RotateToVolumePlane(reference_volume)
        widget.sliceLogic().FitSliceToAll()
    return True


def set_overlay(overlay_volume: Optional[Any], opacity: float = DEFAULT_OVERLAY_OPACITY) -> bool:
    """Overlay ``overlay_volume`` (e.g. the disagreement map) on the output view, or remove it with ``None``."""
    manager = _layout_manager()
    if manager is None:
        return False
    composite = manager.sliceWidget(OUTPUT_VIEW).mrmlSliceCompositeNode()
    composite.SetForegroundVolumeID(overlay_volume.GetID() if overlay_volume is not None else None)
    composite.SetForegroundOpacity(float(opacity))
    return True
