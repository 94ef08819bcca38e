"""The Slicer-core harness itself: real core classes, stand-ins only where its docstring says, and Slicer's own
readers and writers behind ``slicer.util.loadVolume``/``saveNode``."""

from __future__ import annotations

import sys

import numpy as np
import pytest

pytestmark = pytest.mark.slicer_core


def test_core_is_real_and_stand_ins_are_plumbing(slicer_core):
    """Scene, module logics and subject hierarchy are Slicer's C++ classes; only the listed modules are stood in,
    and they are gone again once the harness is left."""
    import slicer_core_harness

    slicer = slicer_core
    assert type(slicer.mrmlScene).__name__ == "vtkMRMLScene"
    assert slicer.modules.volumes.logic().GetClassName() == "vtkSlicerVolumesLogic"
    assert slicer.modules.subjecthierarchy.logic().GetClassName() == "vtkSlicerSubjectHierarchyModuleLogic"
    assert slicer.app.applicationLogic().GetModuleLogic("Colors").GetClassName() == "vtkSlicerColorLogic"
    assert slicer.util.__file__.endswith("slicer/util.py") and "site-packages" in slicer.util.__file__
    assert slicer.app.layoutManager() is None  # as --no-main-window gives
    for name in slicer_core_harness.STAND_IN_MODULES:
        assert sys.modules[name].__spec__ is None, name  # made here, not imported from a package
    with slicer_core_harness.installed():
        pass
    assert sys.modules["qt"] is not None  # the outer harness is intact after an inner one


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz", ".mha"])
def test_save_and_load_go_through_slicer_storage(slicer_scene, tmp_path, suffix):
    """``saveNode``/``loadVolume`` write and read with Slicer's storage nodes: a right-handed oblique volume comes
    back voxel for voxel at the same place."""
    import vtk

    slicer = slicer_scene
    matrix = np.array([[0.0, 0.7, 0.0, 4.0], [0.7, 0.0, 0.0, -3.0], [0.0, 0.0, -2.5, 10.0], [0, 0, 0, 1]])
    voxels = np.arange(3 * 5 * 7, dtype=np.int16).reshape(3, 5, 7) - 50
    node = slicer.util.addVolumeFromArray(voxels, matrix, "volume")
    path = tmp_path / f"volume{suffix}"
    assert slicer.util.saveNode(node, str(path))
    assert node.GetStorageNode().IsA("vtkMRMLVolumeArchetypeStorageNode")
    loaded = slicer.util.loadVolume(str(path), {"show": False})
    assert loaded.GetName() == "volume_1" and loaded is not node  # a unique name, as Slicer gives
    ijkToRAS = vtk.vtkMatrix4x4()
    loaded.GetIJKToRASMatrix(ijkToRAS)
    np.testing.assert_allclose(slicer.util.arrayFromVTKMatrix(ijkToRAS), matrix, atol=1e-5)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(loaded), voxels)


def test_unreadable_file_raises_as_in_slicer(slicer_scene, tmp_path):
    """A file Slicer's readers cannot read makes ``loadVolume`` raise ``RuntimeError`` and adds no volume."""
    slicer = slicer_scene
    path = tmp_path / "broken.nrrd"
    path.write_bytes(b"not a volume")
    with pytest.raises(RuntimeError, match="Failed to load"):
        slicer.util.loadVolume(str(path), {"show": False})
    assert slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode") is None
