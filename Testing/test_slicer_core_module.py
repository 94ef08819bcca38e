"""The module file, its Logic and its self-test, unchanged, in Slicer's own core (see ``slicer_core_harness``)."""

from __future__ import annotations

import dataclasses
import types
import unittest

import numpy as np
import pytest

pytestmark = pytest.mark.slicer_core

SELF_TEST_CASES = (
    "test_outputVolumeGeometry",
    "test_resultPlacedInScene",
    "test_unfinishedRunLeavesSceneUntouched",
    "test_leftHandedInput",
    "test_nonLinearParentTransform",
    "test_refillExistingOutput",
    "test_inputRemovedDuringRun",
    "test_parameterNodeSavedAndReloaded",
    "test_comparisonLayout",
    "test_synthesisBlocking",
)


@pytest.fixture(scope="module")
def module(slicer_core):
    """``CTSliceSynthesis.py`` imported in Slicer's core."""
    import CTSliceSynthesis

    return CTSliceSynthesis


def run_case(module, name: str) -> unittest.TestResult:
    """Run one self-test method as Slicer's test runner does; the result."""
    result = unittest.TestResult()
    module.CTSliceSynthesisTest(name).run(result)
    return result


@pytest.mark.parametrize("name", SELF_TEST_CASES)
def test_self_test_case_passes(module, name):
    """Each case of the module's self-test passes against a real scene (none skipped: torch is here)."""
    result = run_case(module, name)
    problems = [text for _test, text in result.errors + result.failures]
    assert not problems, "\n".join(problems)
    assert not result.skipped, result.skipped
    assert result.testsRun == 1


def test_run_test_runs_every_case(module, monkeypatch):
    """*Reload and Test* (``runTest``) runs every ``test_`` method of the self-test, each on an empty scene."""
    cases = sorted(name for name in dir(module.CTSliceSynthesisTest) if name.startswith("test_"))
    assert cases == sorted(SELF_TEST_CASES)
    ran = []
    for name in cases:
        monkeypatch.setattr(module.CTSliceSynthesisTest, name, lambda self, name=name: ran.append(name))
    module.slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
    module.CTSliceSynthesisTest().runTest()
    assert sorted(ran) == cases
    assert module.slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode") is None


def test_module_description(module):
    """The module registers under *Image Synthesis* with help that says the result is synthetic."""
    parent = types.SimpleNamespace()
    module.CTSliceSynthesis(parent)
    assert parent.title == "CT Slice Synthesis"
    assert parent.categories == ["Image Synthesis"]
    assert "synthetic" in parent.helpText


def test_cloning_copies_dicom_attributes(slicer_scene, module):
    """Why the module removes ``DICOM.*`` from its results: Slicer's ``CloneVolumeWithoutImageData`` copies them,
    and a new output is such a clone."""
    slicer = slicer_scene
    source = slicer.util.addVolumeFromArray(np.zeros((3, 4, 5), np.int16), np.diag([1.0, 1.0, 4.0, 1.0]), "ct")
    source.SetAttribute("DICOM.instanceUIDs", "1.2.3 1.2.4 1.2.5")
    clone = slicer.modules.volumes.logic().CloneVolumeWithoutImageData(slicer.mrmlScene, source, "clone")
    assert clone.GetAttribute("DICOM.instanceUIDs") == "1.2.3 1.2.4 1.2.5"
    job, outcome = module.CTSliceSynthesisTest()._completedJob(source, np.zeros((5, 4, 5), np.int16))
    _outcome, outputs = module.CTSliceSynthesisLogic().finishJob(job, outcome)
    assert outputs.outputVolume.GetAttribute("DICOM.instanceUIDs") is None
    assert outputs.outputVolume.GetAttribute("CTSliceSynthesis.scale") == "2"


def test_disagreement_map_shown_in_iron(slicer_scene, module, tmp_path):
    """The disagreement map is a real volume drawn with Slicer's Iron colour table, agreement transparent."""
    slicer = slicer_scene
    inputVolume = slicer.util.addVolumeFromArray(np.zeros((3, 6, 6), np.int16), np.diag([1.0, 1.0, 4.0, 1.0]), "ct")
    job, outcome = module.CTSliceSynthesisTest()._completedJob(inputVolume, np.zeros((5, 6, 6), np.int16))
    disagreement = np.linspace(0.0, 50.0, 5 * 6 * 6, dtype=np.float32).reshape(5, 6, 6)
    job.request = dataclasses.replace(job.request, disagreement_path=str(tmp_path / "disagreement.npy"))
    np.save(job.request.disagreement_path, disagreement)
    _outcome, outputs = module.CTSliceSynthesisLogic().finishJob(job, outcome)
    display = outputs.disagreementVolume.GetDisplayNode()
    assert display.GetColorNode().GetName() == "Iron"
    assert display.GetApplyThreshold() and display.GetLowerThreshold() > 0
    assert display.GetWindowLevelMax() == pytest.approx(np.percentile(disagreement[disagreement > 0], 99))
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(outputs.disagreementVolume), disagreement)
