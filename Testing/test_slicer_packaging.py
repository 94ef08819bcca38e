"""What a Slicer build packages: CMake file lists, the .ui bindings, the icon and the module's structure.

A file missing from the module's CMake lists is silently missing from the Extensions Manager package, and a
widget bound to a parameter that does not exist only fails inside Slicer; both are checked here.
"""

from __future__ import annotations

import ast
import re
import struct
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict, List

import pytest

REPO = Path(__file__).resolve().parents[1]
MODULE = REPO / "CTSliceSynthesis"
MODULE_SOURCE = (MODULE / "CTSliceSynthesis.py").read_text(encoding="utf-8")


def cmake_list(text: str, variable: str) -> List[str]:
    match = re.search(rf"set\({variable}\s+(.*?)\)", text, re.S)
    assert match, f"{variable} is not set"
    return [item.replace("${MODULE_NAME}", "CTSliceSynthesis") for item in match.group(1).split()]


def files_under(folder: Path) -> List[str]:
    return sorted(p.relative_to(MODULE).as_posix() for p in folder.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")


def test_module_cmake_lists_every_python_file_and_resource() -> None:
    text = (MODULE / "CMakeLists.txt").read_text()
    scripts = cmake_list(text, "MODULE_PYTHON_SCRIPTS")
    resources = cmake_list(text, "MODULE_PYTHON_RESOURCES")
    lib = [p for p in files_under(MODULE / "CTSliceSynthesisLib") if p.endswith(".py")]
    assert sorted(scripts) == sorted(["CTSliceSynthesis.py"] + lib)
    assert sorted(resources) == files_under(MODULE / "Resources") + files_under(MODULE / "Scripts")
    assert "WITH_GENERIC_TESTS" in text and "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in text


def test_extension_cmake_declares_the_pytorch_dependency_and_category() -> None:
    text = (REPO / "CMakeLists.txt").read_text()
    assert "project(CTSliceSynthesis)" in text
    assert re.search(r'set\(EXTENSION_DEPENDS "PyTorch"\)', text)
    assert re.search(r'set\(EXTENSION_CATEGORY "Image Synthesis"\)', text)
    assert "add_subdirectory(CTSliceSynthesis)" in text


def parameter_annotations() -> Dict[str, str]:
    tree = ast.parse(MODULE_SOURCE)
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "CTSliceSynthesisParameterNode")
    return {item.target.id: ast.unparse(item.annotation) for item in node.body if isinstance(item, ast.AnnAssign)}


def ui_tree() -> ET.ElementTree:
    return ET.parse(MODULE / "Resources" / "UI" / "CTSliceSynthesis.ui")


def bound_widgets() -> Dict[str, str]:
    bound = {}
    for widget in ui_tree().iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bound[prop.find("string").text] = widget.get("class")
    return bound


def expected_widget(annotation: str) -> str:
    if annotation == "bool":
        return "QCheckBox"
    if annotation == "vtkMRMLScalarVolumeNode":
        return "qMRMLNodeComboBox"
    if annotation == "pathlib.Path":
        return "ctkPathLineEdit"
    if "Choice(" in annotation:
        return "QComboBox"
    if annotation.startswith("Annotated[int"):
        return "QSpinBox"
    if annotation.startswith("Annotated[float"):
        return "QDoubleSpinBox"
    raise AssertionError(f"no widget rule for {annotation}")


# Parameters the panel keeps without showing them: the volume the slice thickness belongs to and its DICOM value.
STATE_WITHOUT_WIDGET = {"thicknessVolumeID": "str", "dicomSliceThicknessMm": "float"}


def test_every_parameter_has_a_widget_of_a_type_the_wrapper_can_connect() -> None:
    annotations = parameter_annotations()
    bound = bound_widgets()
    assert {name: annotations.get(name) for name in STATE_WITHOUT_WIDGET} == STATE_WITHOUT_WIDGET
    assert sorted(bound) == sorted(set(annotations) - set(STATE_WITHOUT_WIDGET))
    for name, annotation in annotations.items():
        if name not in STATE_WITHOUT_WIDGET:
            assert bound[name] == expected_widget(annotation), name


def test_every_widget_the_code_uses_exists_in_the_ui() -> None:
    names = {widget.get("name") for widget in ui_tree().iter("widget")}
    used = set(re.findall(r"self\.ui\.(\w+)", MODULE_SOURCE))
    assert used and used <= names, used - names


def test_node_selectors_receive_the_scene() -> None:
    root = ui_tree().getroot()
    assert root.find("widget").get("class") == "qMRMLWidget"
    selectors = {w.get("name") for w in root.iter("widget") if w.get("class") == "qMRMLNodeComboBox"}
    receivers = {c.findtext("receiver") for c in root.iter("connection")
                 if c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"
                 and c.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"}
    assert selectors and selectors == receivers


def test_module_file_has_the_slicer_classes_and_no_heavy_imports() -> None:
    tree = ast.parse(MODULE_SOURCE)
    classes = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    assert {"CTSliceSynthesis", "CTSliceSynthesisParameterNode", "CTSliceSynthesisWidget", "CTSliceSynthesisLogic",
            "CTSliceSynthesisTest"} <= classes
    top_level = {alias.name.split(".")[0] for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))
                 for alias in n.names} | {n.module.split(".")[0] for n in tree.body
                                          if isinstance(n, ast.ImportFrom) and n.module}
    assert not top_level & {"torch", "nibabel", "pytorch_wavelets", "PyTorchUtils"}


@pytest.mark.parametrize("icon", [MODULE / "Resources" / "Icons" / "CTSliceSynthesis.png"])
def test_icon_is_a_128_pixel_png(icon: Path) -> None:
    data = icon.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    assert struct.unpack(">II", data[16:24]) == (128, 128)
