"""The module's comparison in Slicer's own slice views (real ``vtkMRMLSliceLogic``, slice and composite nodes,
``vtkMRMLSliceLinkLogic``; the Qt layout manager stood in by ``slicer_core_harness.ComparisonLayoutManager``), and
the script that renders it for the README."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slicer_core

RENDER_SCRIPT = Path(__file__).resolve().parents[1] / "Resources" / "Screenshots" / "render_slicer_comparison.py"


@pytest.fixture(scope="module")
def layout_manager(slicer_core):
    """The side-by-side views of a main window, for this module's scene; ``layoutManager()`` is ``None`` after."""
    from slicer_core_harness import ComparisonLayoutManager

    slicer_core.app.layout_manager = ComparisonLayoutManager(slicer_core.mrmlScene,
                                                             slicer_core.app.applicationLogic(), (200, 160))
    yield slicer_core.app.layout_manager
    slicer_core.app.layout_manager = None


@pytest.fixture
def views(slicer_scene, layout_manager):
    """``slicer`` with an empty scene and the views of a main window."""
    return slicer_scene


def thick_and_thin(slicer):
    """A 5 mm input and a ×2 "result" on its grid (input slices repeated), LPS-oriented like DICOM."""
    rng = np.random.default_rng(3)
    voxels = rng.integers(-1000, 400, size=(6, 30, 40)).astype(np.int16)
    thick = slicer.util.addVolumeFromArray(voxels, np.diag([-0.8, -0.8, 5.0, 1.0]), "thick")
    thin = slicer.util.addVolumeFromArray(np.repeat(voxels, 2, axis=0)[:11], np.diag([-0.8, -0.8, 2.5, 1.0]), "thin")
    return thick, thin


def scroll(slicer, view_name: str, millimetres: float) -> None:
    """Scroll a slice view as the mouse wheel does: an offset interaction on its slice logic."""
    logic = slicer.app.layoutManager().sliceWidget(view_name).sliceLogic()
    logic.StartSliceOffsetInteraction()
    logic.SetSliceOffset(logic.GetSliceOffset() + millimetres)
    logic.EndSliceOffsetInteraction()


def offset(slicer, view_name: str) -> float:
    return slicer.app.layoutManager().sliceWidget(view_name).sliceLogic().GetSliceOffset()


def test_comparison_shows_input_red_and_result_yellow_coronal(views):
    """The module's layout code: side-by-side layout, input in Red, result in Yellow, both coronal, both fitted."""
    from CTSliceSynthesisLib.slicer_support import layout

    thick, thin = thick_and_thin(views)
    assert layout.show_comparison(thick, thin, "Coronal")
    manager = views.app.layoutManager()
    assert manager.layout == layout.SIDE_BY_SIDE_LAYOUT and layout.is_comparison_shown()
    for view_name, volume in (("Red", thick), ("Yellow", thin)):
        widget = manager.sliceWidget(view_name)
        assert widget.mrmlSliceNode().GetOrientationString() == "Coronal"
        assert widget.mrmlSliceCompositeNode().GetBackgroundVolumeID() == volume.GetID()
    assert offset(views, "Red") == pytest.approx(offset(views, "Yellow"))  # the same coronal plane


def test_scrolling_red_moves_yellow(views):
    """Linked views: scrolling the input moves the result to the same plane, and back; unlinked, it does not."""
    from CTSliceSynthesisLib.slicer_support import layout

    thick, thin = thick_and_thin(views)
    layout.show_comparison(thick, thin, "Coronal")
    start = offset(views, "Yellow")
    scroll(views, "Red", 4.0)
    assert offset(views, "Red") == pytest.approx(start + 4.0)
    assert offset(views, "Yellow") == pytest.approx(offset(views, "Red"))
    scroll(views, "Yellow", -6.0)
    assert offset(views, "Red") == pytest.approx(start - 2.0)
    for name in ("Red", "Yellow"):
        views.app.layoutManager().sliceWidget(name).mrmlSliceCompositeNode().SetLinkedControl(False)
    scroll(views, "Red", 4.0)
    assert offset(views, "Yellow") == pytest.approx(start - 2.0)


def test_overlay_on_the_result_only_and_orientation_change(views):
    """The disagreement overlay goes on Yellow only; a new orientation turns both views."""
    from CTSliceSynthesisLib.slicer_support import layout

    thick, thin = thick_and_thin(views)
    disagreement = views.util.addVolumeFromArray(np.ones((11, 30, 40), np.float32), np.diag([-0.8, -0.8, 2.5, 1]))
    layout.show_comparison(thick, thin, "Coronal", disagreement)
    manager = views.app.layoutManager()
    yellow = manager.sliceWidget("Yellow").mrmlSliceCompositeNode()
    assert yellow.GetForegroundVolumeID() == disagreement.GetID() and yellow.GetForegroundOpacity() == 0.5
    assert manager.sliceWidget("Red").mrmlSliceCompositeNode().GetForegroundVolumeID() is None
    assert layout.set_orientation("Sagittal", thick)
    assert {manager.sliceWidget(n).mrmlSliceNode().GetOrientationString() for n in ("Red", "Yellow")} == {"Sagittal"}
    assert layout.set_overlay(None) and yellow.GetForegroundVolumeID() is None


def test_self_test_comparison_layout_with_views(views):
    """The self-test's layout case takes its main-window branch when there are views."""
    import unittest

    import CTSliceSynthesis

    result = unittest.TestResult()
    CTSliceSynthesis.CTSliceSynthesisTest("test_comparisonLayout").run(result)
    assert result.wasSuccessful() and not result.skipped, result.failures + result.errors
    assert views.app.layoutManager().layout == 29


def test_render_script_draws_both_views(slicer_core, tmp_path):
    """The README's rendering script draws Red (input) and Yellow (result), and the overlay in a second picture."""
    import nibabel as nib

    spec = importlib.util.spec_from_file_location("render_slicer_comparison", RENDER_SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    rng = np.random.default_rng(0)
    thick = rng.integers(-1000, 400, size=(40, 30, 6)).astype(np.int16)
    thin = np.repeat(thick, 2, axis=2)[:, :, :11]
    paths = {name: tmp_path / f"{name}.nii.gz" for name in ("thick", "thin", "disagreement")}
    nib.save(nib.Nifti1Image(thick, np.diag([-0.8, -0.8, 5.0, 1.0])), paths["thick"])
    nib.save(nib.Nifti1Image(thin, np.diag([-0.8, -0.8, 2.5, 1.0])), paths["thin"])
    nib.save(nib.Nifti1Image(np.full(thin.shape, 30.0, np.float32), np.diag([-0.8, -0.8, 2.5, 1.0])),
             paths["disagreement"])
    plain, overlaid = script.render(paths["thick"], paths["thin"], paths["disagreement"], tmp_path, 2, (100, 80))
    assert (plain.name, overlaid.name) == ("slicer_comparison_x2.png", "slicer_comparison_x2_disagreement.png")
    import vtk
    from vtk.util.numpy_support import vtk_to_numpy

    pictures = []
    for path in (plain, overlaid):
        reader = vtk.vtkPNGReader()
        reader.SetFileName(str(path))
        reader.Update()
        width, height, _ = reader.GetOutput().GetDimensions()
        assert (width, height) == (2 * 100 + script.GAP, 2 * (80 + script.BAR_HEIGHT) + script.GAP)
        rows = vtk_to_numpy(reader.GetOutput().GetPointData().GetScalars()).reshape(height, width, -1)
        pictures.append(rows[::-1, :, :3])  # VTK images are bottom-up
    assert tuple(pictures[0][0, 10]) == script.VIEW_COLORS["Red"]
    assert tuple(pictures[0][0, width - 10]) == script.VIEW_COLORS["Yellow"]
    left, right, view = slice(0, 100), slice(100 + script.GAP, width), slice(script.BAR_HEIGHT, script.BAR_HEIGHT + 80)
    np.testing.assert_array_equal(pictures[1][:, left], pictures[0][:, left])  # the input view has no overlay
    grey, coloured = pictures[0][view, right], pictures[1][view, right]
    assert grey.std() > 0 and np.array_equal(grey[..., 0], grey[..., 2])  # the result in grey...
    assert not np.array_equal(coloured[..., 0], coloured[..., 2])  # ...and in Iron under the overlay
