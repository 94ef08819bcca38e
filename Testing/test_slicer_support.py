"""Naming, provenance, dependency installation and the comparison layout, with stand-ins for Slicer's modules."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from CTSliceSynthesisLib import __version__
from CTSliceSynthesisLib.slicer_support import dependencies, layout, naming
from CTSliceSynthesisLib.slicer_support.dependencies import DependencyError

REQUIREMENTS = Path(__file__).resolve().parents[1] / "CTSliceSynthesis" / "Resources" / "requirements.txt"


# --- naming and provenance ----------------------------------------------------------------------------------


def test_output_names() -> None:
    assert naming.output_node_name("CT chest", 3) == "CT chest synthesized ×3"
    assert naming.disagreement_node_name("CT", 2) == "CT synthesized ×2 disagreement"
    assert naming.output_node_name("", 2) == "Volume synthesized ×2"
    assert naming.output_file_name(Path("/d/case 1.nii.gz"), 4, ".nrrd") == "case 1_synthesized_x4.nrrd"
    assert naming.output_file_name(Path("ct.mha"), 2, ".nii.gz") == "ct_synthesized_x2.nii.gz"


def test_provenance_attributes_are_strings_that_say_synthetic() -> None:
    attributes = naming.provenance_attributes(scale=2, axis_name="K", model_id="bundled-lite-x2", model_sha256=None,
                                              preset="lite", device="cuda:0", adapt_steps=120, input_name="CT")
    assert all(isinstance(value, str) for value in attributes.values())
    assert all(name.startswith(naming.ATTRIBUTE_PREFIX) for name in attributes)
    assert attributes["CTSliceSynthesis.synthetic"] == "true"
    assert attributes["CTSliceSynthesis.scale"] == "2"
    assert attributes["CTSliceSynthesis.modelSha256"] == ""
    assert attributes["CTSliceSynthesis.adaptBudgetSteps"] == "120"
    assert attributes["CTSliceSynthesis.adaptCapSeconds"] == ""
    assert attributes["CTSliceSynthesis.adaptCapped"] == "false"
    assert attributes["CTSliceSynthesis.engineVersion"] == __version__


def test_series_attributes_are_not_carried_over() -> None:
    assert naming.is_source_attribute("DICOM.instanceUIDs")
    assert not naming.is_source_attribute("CTSliceSynthesis.scale")


# --- dependencies -------------------------------------------------------------------------------------------


def test_requirements_file_has_lower_bounds_only_and_leaves_slicer_packages_alone() -> None:
    requirements = dependencies.read_requirements(REQUIREMENTS)
    assert requirements and all(">=" in line and "==" not in line for line in requirements)
    names = {line.split(">=")[0].strip().lower() for line in requirements}
    assert not names & {"torch", "numpy", "simpleitk", "requests", "setuptools"}


@pytest.mark.parametrize(
    ("requirement", "installed", "satisfied"),
    [("nibabel>=5.0", "5.4.2", True), ("nibabel>=5.0", "4.0.1", False), ("nibabel>=5.0", None, False),
     ("torch>=2.2", "2.13.0+cpu", True), ("torch>=2.2", "2.2.2", True), ("torch>=2.2", "2.1.0+cu121", False),
     ("tqdm>=4.60", "not-a-version", False)],
)
def test_requirements_are_checked_against_metadata(requirement: str, installed: Optional[str], satisfied: bool) -> None:
    assert dependencies.is_satisfied(requirement, lambda name: installed) is satisfied


def test_the_question_lists_what_will_be_installed() -> None:
    text = dependencies.install_prompt(True, ["nibabel>=5.0"])
    assert "PyTorch" in text and "torch>=2.2" in text and "nibabel>=5.0" in text and "minutes" in text


class FakeEnvironment:
    """Installed versions that change when the fake installers run."""

    def __init__(self, versions: Dict[str, Optional[str]]) -> None:
        self.versions = dict(versions)
        self.calls: List[tuple] = []

    def version_of(self, name: str) -> Optional[str]:
        return self.versions.get(name.lower().replace("_", "-"))

    def install(self, monkeypatch, torch_available: bool = True) -> None:
        """Put stand-ins for ``slicer`` and ``PyTorchUtils`` into ``sys.modules``."""
        environment = self

        class PyTorchUtilsLogic:
            def installTorch(self, askConfirmation=False, forceComputationBackend=None,
                             torchVersionRequirement=None, torchvisionVersionRequirement=None):
                environment.calls.append(("installTorch", askConfirmation, torchVersionRequirement))
                environment.versions["torch"] = "2.5.0"
                return types.SimpleNamespace(__version__="2.5.0")

        def pip_install(requirements):
            environment.calls.append(("pip_install", list(requirements)))
            for requirement in requirements:
                environment.versions[requirement.split(">=")[0].lower()] = "99.0"

        slicer = types.ModuleType("slicer")
        slicer.util = types.SimpleNamespace(pip_install=pip_install)
        monkeypatch.setitem(sys.modules, "slicer", slicer)
        if torch_available:
            monkeypatch.setitem(sys.modules, "PyTorchUtils", types.SimpleNamespace(PyTorchUtilsLogic=PyTorchUtilsLogic))
        else:
            monkeypatch.setitem(sys.modules, "PyTorchUtils", None)  # import fails with ModuleNotFoundError


ALL_MISSING = {"torch": None, "nibabel": None, "pywavelets": "1.9.0", "pytorch-wavelets": None, "tqdm": "4.66.0"}


def test_nothing_happens_when_everything_is_installed(monkeypatch) -> None:
    environment = FakeEnvironment({"torch": "2.4.0", "nibabel": "5.2.0", "pywavelets": "1.9.0",
                                   "pytorch-wavelets": "1.3.0", "tqdm": "4.66.0"})
    environment.install(monkeypatch)
    dependencies.ensure_dependencies(REQUIREMENTS, confirm=lambda q: pytest.fail("nothing to ask"),
                                     version_of=environment.version_of)
    assert environment.calls == []


def test_batch_without_permission_fails_fast_and_names_the_flag(monkeypatch) -> None:
    environment = FakeEnvironment(ALL_MISSING)
    environment.install(monkeypatch)
    with pytest.raises(DependencyError) as raised:
        dependencies.ensure_dependencies(REQUIREMENTS, confirm=None, version_of=environment.version_of)
    assert "--install-dependencies" in str(raised.value) and "torch>=2.2" in str(raised.value)
    assert environment.calls == []


def test_declining_installs_nothing(monkeypatch) -> None:
    environment = FakeEnvironment(ALL_MISSING)
    environment.install(monkeypatch)
    with pytest.raises(DependencyError, match="declined"):
        dependencies.ensure_dependencies(REQUIREMENTS, confirm=lambda q: False, version_of=environment.version_of)
    assert environment.calls == []


def test_accepting_installs_torch_with_pytorchutils_and_the_rest_with_pip(monkeypatch) -> None:
    environment = FakeEnvironment(ALL_MISSING)
    environment.install(monkeypatch)
    questions = []
    dependencies.ensure_dependencies(REQUIREMENTS, confirm=lambda q: questions.append(q) or True,
                                     version_of=environment.version_of)
    assert len(questions) == 1
    assert environment.calls == [("installTorch", False, ">=2.2"),
                                 ("pip_install", ["nibabel>=5.0", "pytorch-wavelets>=1.3"])]


def test_pip_gets_slicers_numpy_and_simpleitk_pinned(monkeypatch) -> None:
    environment = FakeEnvironment({**ALL_MISSING, "torch": "2.4.0", "numpy": "2.0.2", "simpleitk": "2.4.1-local"})
    environment.install(monkeypatch)
    dependencies.ensure_dependencies(REQUIREMENTS, confirm=lambda q: True, version_of=environment.version_of)
    # numpy is pinned to what Slicer has; a version pip could not parse is left alone rather than break the install
    assert environment.calls == [("pip_install", ["nibabel>=5.0", "pytorch-wavelets>=1.3", "numpy==2.0.2"])]


@pytest.mark.parametrize(
    ("error", "words"),
    [(ModuleNotFoundError("No module named 'torch'", name="torch"), "PyTorch Utils"),
     (OSError("[WinError 126] The specified module could not be found: fbgemm.dll"), "PyTorch Utils"),
     (ModuleNotFoundError("No module named 'pytorch_wavelets'", name="pytorch_wavelets"), "--install-dependencies")],
)
def test_import_failures_say_what_to_do(error: BaseException, words: str) -> None:
    message = dependencies.import_failure_message(error)
    assert words in message and str(error).split(":")[0] in message and "\n" not in message


def test_pip_failure_is_one_line(monkeypatch) -> None:
    environment = FakeEnvironment({**ALL_MISSING, "torch": "2.4.0"})
    environment.install(monkeypatch)

    def failing_pip_install(requirements):
        raise subprocess.CalledProcessError(1, ["PythonSlicer", "-m", "pip", "install", *requirements])

    monkeypatch.setattr(sys.modules["slicer"].util, "pip_install", failing_pip_install)
    with pytest.raises(DependencyError) as raised:
        dependencies.ensure_dependencies(REQUIREMENTS, confirm=lambda q: True, version_of=environment.version_of)
    assert "nibabel>=5.0" in str(raised.value) and "CalledProcessError" in str(raised.value)
    assert "\n" not in str(raised.value)


def test_batch_installs_without_a_progress_dialog_where_slicer_offers_one(monkeypatch) -> None:
    def pip_install_5_12(requirements, constraints=None, blocking=True, show_progress=True, requester=None):
        calls.append(show_progress)

    calls: List[bool] = []
    environment = FakeEnvironment({**ALL_MISSING, "torch": "2.4.0"})
    environment.install(monkeypatch)
    monkeypatch.setattr(sys.modules["slicer"].util, "pip_install", pip_install_5_12)
    with pytest.raises(DependencyError, match="still missing"):  # the stand-in installs nothing
        dependencies.ensure_dependencies(REQUIREMENTS, confirm=lambda q: True, version_of=environment.version_of,
                                         show_progress=False)
    assert calls == [False]


@pytest.mark.parametrize(
    ("signature", "show_progress", "expected"),
    [("requirements", False, {}), ("requirements, show_progress=True", False, {"show_progress": False}),
     ("requirements, **kwargs", False, {"show_progress": False}), ("requirements, show_progress=True", True, {})],
)
def test_pip_install_options_follow_the_slicer_version(signature: str, show_progress: bool, expected: dict) -> None:
    namespace: dict = {}
    exec(f"def pip_install({signature}): pass", namespace)
    assert dependencies.pip_install_options(namespace["pip_install"], show_progress) == expected


def test_missing_pytorch_extension_says_where_to_get_it(monkeypatch) -> None:
    environment = FakeEnvironment(ALL_MISSING)
    environment.install(monkeypatch, torch_available=False)
    with pytest.raises(DependencyError, match="Extensions Manager"):
        dependencies.ensure_dependencies(REQUIREMENTS, confirm=lambda q: True, version_of=environment.version_of)


def test_still_missing_after_installing_asks_for_a_restart(monkeypatch) -> None:
    environment = FakeEnvironment({**ALL_MISSING, "torch": "2.4.0"})
    environment.install(monkeypatch)
    monkeypatch.setattr(sys.modules["slicer"].util, "pip_install", lambda requirements: None)  # installs nothing
    with pytest.raises(DependencyError, match="restart Slicer"):
        dependencies.ensure_dependencies(REQUIREMENTS, confirm=lambda q: True, version_of=environment.version_of)


# --- the comparison layout ----------------------------------------------------------------------------------


class Recorder:
    """Stand-in for a VTK/Qt object that records method calls."""

    def __init__(self, log: list, name: str) -> None:
        self._log, self._name = log, name

    def __getattr__(self, method: str):
        return lambda *args: self._log.append((self._name, method) + args)


class FakeSliceWidget:
    def __init__(self, log: list, name: str) -> None:
        self.composite = Recorder(log, f"{name}.composite")
        self.node = Recorder(log, f"{name}.sliceNode")
        self.logic = Recorder(log, f"{name}.sliceLogic")

    def mrmlSliceCompositeNode(self):
        return self.composite

    def mrmlSliceNode(self):
        return self.node

    def sliceLogic(self):
        return self.logic


class FakeLayoutManager:
    def __init__(self, log: list) -> None:
        self.log = log
        self.layout = 2
        self.widgets = {name: FakeSliceWidget(log, name) for name in ("Red", "Yellow")}

    def setLayout(self, layout_id: int) -> None:
        self.layout = layout_id
        self.log.append(("manager", "setLayout", layout_id))

    def sliceWidget(self, name: str):
        return self.widgets[name]


class FakeVolume:
    def __init__(self, node_id: str) -> None:
        self.node_id = node_id

    def GetID(self) -> str:
        return self.node_id


def fake_slicer(monkeypatch, manager) -> None:
    slicer = types.ModuleType("slicer")
    slicer.app = types.SimpleNamespace(layoutManager=lambda: manager)
    monkeypatch.setitem(sys.modules, "slicer", slicer)


def test_without_a_main_window_the_layout_functions_do_nothing(monkeypatch) -> None:
    fake_slicer(monkeypatch, None)
    assert layout.show_comparison(FakeVolume("in"), FakeVolume("out")) is False
    assert layout.set_orientation("Sagittal", FakeVolume("in")) is False
    assert layout.set_overlay(None) is False
    assert layout.is_comparison_shown() is False


def test_comparison_puts_input_left_output_right_linked_and_coronal(monkeypatch) -> None:
    log: list = []
    manager = FakeLayoutManager(log)
    fake_slicer(monkeypatch, manager)
    source, result, spread = FakeVolume("vtkMRMLScalarVolumeNode1"), FakeVolume("out"), FakeVolume("spread")
    assert layout.show_comparison(source, result, "Coronal", overlay_volume=spread, overlay_opacity=0.4)
    assert layout.is_comparison_shown()
    assert ("manager", "setLayout", layout.SIDE_BY_SIDE_LAYOUT) in log
    assert ("Red.composite", "SetBackgroundVolumeID", "vtkMRMLScalarVolumeNode1") in log
    assert ("Yellow.composite", "SetBackgroundVolumeID", "out") in log
    for view in ("Red", "Yellow"):
        assert (f"{view}.composite", "SetLinkedControl", True) in log
        assert (f"{view}.composite", "SetHotLinkedControl", True) in log
        assert (f"{view}.sliceNode", "SetOrientation", "Coronal") in log
        assert (f"{view}.sliceNode", "RotateToVolumePlane", source) in log
        assert (f"{view}.sliceLogic", "FitSliceToAll") in log
    # The overlay goes on the output view only, after the layers were reset.
    assert log.index(("Yellow.composite", "SetForegroundVolumeID", "spread")) > log.index(
        ("Yellow.composite", "SetForegroundVolumeID", None))
    assert ("Yellow.composite", "SetForegroundOpacity", 0.4) in log
    assert ("Red.composite", "SetForegroundVolumeID", "spread") not in log


def test_orientation_switch_and_bad_orientation(monkeypatch) -> None:
    log: list = []
    fake_slicer(monkeypatch, FakeLayoutManager(log))
    assert layout.set_orientation("Sagittal", FakeVolume("in"))
    assert ("Red.sliceNode", "SetOrientation", "Sagittal") in log and ("Yellow.sliceNode", "SetOrientation", "Sagittal") in log
    with pytest.raises(ValueError):
        layout.set_orientation("Oblique", FakeVolume("in"))


# --- import hygiene -----------------------------------------------------------------------------------------


def test_support_modules_import_without_slicer_and_without_torch() -> None:
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['slicer'] = None; sys.modules['qt'] = None\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parents[1] / 'CTSliceSynthesis')!r})\n"
        "from CTSliceSynthesisLib.slicer_support import (batch_args, batch_runner, dependencies, dicom_thickness,\n"
        "    ijk_geometry, layout, naming, process_protocol, process_runner, thickness_field)\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
