"""Run the Slicer module, its self-test and ``Scripts/batch.py`` in Slicer's own core (the ``slicer-core`` wheel).

``slicer-core`` ships Slicer's C++ core without Qt: a real ``vtkMRMLScene``, volume nodes, transforms, subject
hierarchy, ``vtkSlicerVolumesLogic``, the storage nodes with Slicer's NRRD/NIfTI/MHA readers and writers, and
``slicer.util``. It does not ship the Qt application. Every MRML, VTK, transform, subject-hierarchy, storage and
volumes-logic call the module makes is therefore the real one; only the application plumbing that Slicer's Qt
layer would provide is stood in here, each for the reason given:

``qt``, ``ctk``
    Dummy modules. Qt is not part of slicer-core. The module imports ``qt`` only for ``qt.QTimer`` (the polling
    of a non-blocking run, which the tests do not start) and the widget, which the tests do not build.
``slicer.ScriptedLoadableModule``
    The scripted-module base classes are Python in Slicer's application layer (``Base/Python``), not in the core.
    The stand-ins keep what the module uses: ``parent`` attributes, ``getParameterNode`` (a singleton
    ``vtkMRMLScriptedModuleNode`` in the real scene, created the way Slicer's base class creates it) and a
    ``unittest.TestCase`` with ``delayDisplay``.
``slicer.parameterNodeWrapper``
    Also application-layer Python. The stand-in stores each field in the real parameter node as Slicer's
    serializers do: a node as a node reference named after the field, anything else as a string parameter; so
    saving the scene to ``.mrml`` and reading it back goes through real MRML.
``slicer.i18n``
    Translation lookups need Qt's translator; the stand-ins return the text unchanged.
``slicer.app``
    The Qt application object. The stand-in has ``temporaryPath``, ``processEvents`` (nothing to process),
    ``applicationLogic()`` (a real ``vtkSlicerApplicationLogic``), ``layoutManager()`` (``None``, as
    ``--no-main-window`` gives, unless a test installs :class:`ComparisonLayoutManager`) and ``coreIOManager()``.
``app.coreIOManager()``
    ``slicer.util.loadVolume``/``saveNode`` call Qt's ``qSlicerCoreIOManager``. The stand-in does what its
    volume reader and node writer do, with the real classes: reading through
    ``vtkSlicerVolumesLogic.AddArchetypeVolume`` (Slicer's storage nodes, which make the IJK axes right-handed),
    writing through the node's storage node. ``slicer.util`` itself runs unchanged.
``slicer.mrmlScene``, ``slicer.modules``
    The application creates the scene and registers each module's logic. Here the scene is a real
    ``vtkMRMLScene`` and the logics are the real ``vtkSlicerVolumesLogic``, ``vtkSlicerColorLogic`` (the colour
    tables, Iron among them) and ``vtkSlicerSubjectHierarchyModuleLogic``, set on that scene as Slicer sets
    them at start-up.
:class:`SubjectHierarchyPluginLogic`
    Slicer's Qt ``qSlicerSubjectHierarchyPluginLogic`` gives each data node added to the scene a
    subject-hierarchy item under the scene item. The stand-in does that with the real subject-hierarchy node.
:class:`ComparisonLayoutManager`
    The layout manager and slice widgets are Qt. The stand-in has the two slice views of Slicer's side-by-side
    layout as real ``vtkMRMLSliceLogic`` objects (with their slice and composite nodes) in a real
    ``vtkMRMLLayoutNode``; linking is the application logic's real ``vtkMRMLSliceLinkLogic``. What a view draws
    is its slice logic's blended image, the picture Slicer's slice view shows.

Not stood in: ``PythonSlicer``. Outside Slicer the module's own fallback starts the background process with this
interpreter. ``vtkSlicerColorLogic`` logs that it found no colour files (there is no Slicer installation folder);
its built-in tables are all the module uses.

:func:`installed` sets these up and takes them away again; run as a script, this file is a minimal
``Slicer --python-script``: ``python slicer_core_harness.py SCRIPT [ARGS...]``.
"""

from __future__ import annotations

import contextlib
import pathlib
import runpy
import sys
import tempfile
import types
import unittest
from typing import Any, Dict, Iterator, Optional

ENGINE_ROOT = pathlib.Path(__file__).resolve().parents[1] / "CTSliceSynthesis"
STAND_IN_MODULES = ("qt", "ctk", "slicer.ScriptedLoadableModule", "slicer.parameterNodeWrapper", "slicer.i18n")
VOLUME_FILE = "VolumeFile"

# vtkSlicerVolumesLogic::AddArchetypeVolume loading options (bit-coded, as qSlicerVolumesReader passes them).
_LOAD_LABELMAP, _LOAD_CENTERED, _LOAD_SINGLE_FILE, _LOAD_AUTO_WINDOW_LEVEL, _LOAD_DISCARD_ORIENTATION = 1, 2, 4, 8, 16


def slicer_core_available() -> Optional[str]:
    """``None`` if ``slicer-core`` imports, else why not."""
    try:
        import slicer  # noqa: F401

        slicer.vtkMRMLScene  # noqa: B018 (the meta-package imports without the wheel's modules)
    except (ImportError, AttributeError) as error:
        return f"{type(error).__name__}: {error}"
    return None


#
# Stand-ins for the application layer
#


def _dummy_module(name: str) -> types.ModuleType:
    """A module whose every attribute is ``None`` (names the module only mentions)."""
    module = types.ModuleType(name)
    module.__getattr__ = lambda attribute: None  # type: ignore[attr-defined]
    return module


def _scripted_loadable_module() -> types.ModuleType:
    """Stand-ins for Slicer's scripted-module base classes (``Base/Python/slicer/ScriptedLoadableModule.py``)."""
    import logging

    import slicer

    module = types.ModuleType("slicer.ScriptedLoadableModule")

    class ScriptedLoadableModule:
        def __init__(self, parent: Any) -> None:
            self.parent = parent

    class ScriptedLoadableModuleWidget:
        def __init__(self, parent: Any = None) -> None:
            self.parent = parent

    class ScriptedLoadableModuleLogic:
        def __init__(self, parent: Any = None) -> None:
            self.moduleName = type(self).__name__.removesuffix("Logic")

        def getParameterNode(self) -> Any:
            """The module's singleton ``vtkMRMLScriptedModuleNode``, created in the scene on first use."""
            scene = slicer.mrmlScene
            node = scene.GetSingletonNode(self.moduleName, "vtkMRMLScriptedModuleNode")
            if node:
                return node
            node = scene.CreateNodeByClass("vtkMRMLScriptedModuleNode")
            node.UnRegister(None)
            node.SetName(scene.GenerateUniqueName(self.moduleName))
            node.SetSingletonTag(self.moduleName)
            node.SetModuleName(self.moduleName)
            return scene.AddNode(node)

    class ScriptedLoadableModuleTest(unittest.TestCase):
        def delayDisplay(self, message: str, msec: int = 0) -> None:
            logging.info(message)

    for cls in (ScriptedLoadableModule, ScriptedLoadableModuleWidget, ScriptedLoadableModuleLogic,
                ScriptedLoadableModuleTest):
        setattr(module, cls.__name__, cls)
    return module


def _parameter_node_wrapper() -> types.ModuleType:
    """A stand-in for ``slicer.parameterNodeWrapper`` storing fields as Slicer's serializers do."""
    import typing

    import slicer

    module = types.ModuleType("slicer.parameterNodeWrapper")
    module.Choice = lambda choices: ("choice", tuple(choices))
    module.WithinRange = lambda minimum, maximum: ("range", minimum, maximum)

    def field(name: str, annotation: Any, default: Any) -> property:
        kind = annotation
        if typing.get_origin(annotation) is typing.Annotated:
            kind = typing.get_args(annotation)[0]
        if isinstance(kind, type) and issubclass(kind, slicer.vtkMRMLNode):
            def set_node(self: Any, node: Any) -> None:
                self.parameterNode.SetNodeReferenceID(name, node.GetID() if node else None)

            return property(lambda self: self.parameterNode.GetNodeReference(name), set_node)

        def get(self: Any) -> Any:
            if not self.parameterNode.GetParameterNames() or name not in self.parameterNode.GetParameterNames():
                return default if default is not None else kind()
            text = self.parameterNode.GetParameter(name)
            return text == "True" if kind is bool else kind(text)

        return property(get, lambda self, value: self.parameterNode.SetParameter(name, str(value)))

    def parameterNodeWrapper(cls: type) -> type:
        annotations = typing.get_type_hints(cls, include_extras=True)
        fields = {name: field(name, annotation, cls.__dict__.get(name)) for name, annotation in annotations.items()}

        def __init__(self: Any, parameterNode: Any) -> None:
            self.parameterNode = parameterNode

        return type(cls.__name__, (), {"__doc__": cls.__doc__, "__init__": __init__, **fields})

    module.parameterNodeWrapper = parameterNodeWrapper
    return module


def _i18n() -> types.ModuleType:
    module = types.ModuleType("slicer.i18n")
    module.tr = lambda text: text
    module.translate = lambda context, text: text
    return module


class CoreIOManager:
    """What ``qSlicerCoreIOManager`` does for volumes, with the real volumes logic and storage nodes."""

    def __init__(self, scene: Any, volumes_logic: Any) -> None:
        self._scene = scene
        self._volumes_logic = volumes_logic

    @staticmethod
    def fileType(filename: str) -> str:
        return VOLUME_FILE

    @staticmethod
    def fileWriterFileType(node: Any) -> str:
        return VOLUME_FILE

    def loadNodes(self, filetype: str, properties: Dict[str, Any], loaded: Any, messages: Any) -> bool:
        """``qSlicerVolumesReader::load``: ``vtkSlicerVolumesLogic.AddArchetypeVolume`` with the options given."""
        import vtk

        if filetype != VOLUME_FILE:
            raise NotImplementedError(f"the harness reads volumes only, not {filetype}")
        filename = properties["fileName"]
        name = properties.get("name") or pathlib.Path(filename).name.split(".")[0]
        options = (_LOAD_LABELMAP * bool(properties.get("labelmap", False))
                   | _LOAD_CENTERED * bool(properties.get("center", False))
                   | _LOAD_SINGLE_FILE * bool(properties.get("singleFile", False))
                   | _LOAD_AUTO_WINDOW_LEVEL * bool(properties.get("autoWindowLevel", True))
                   | _LOAD_DISCARD_ORIENTATION * bool(properties.get("discardOrientation", False)))
        node = self._volumes_logic.AddArchetypeVolume(filename, name, options, vtk.vtkStringArray(), messages)
        if node is None:
            return False
        loaded.AddItem(node)
        return True

    def saveNodes(self, filetype: str, properties: Dict[str, Any], messages: Any) -> bool:
        """``qSlicerNodeWriter::write``: the node's storage node (its default one if it has none) writes the file."""
        if filetype != VOLUME_FILE:
            raise NotImplementedError(f"the harness writes volumes only, not {filetype}")
        node = self._scene.GetNodeByID(properties["nodeID"])
        storage = node.GetStorageNode()
        if storage is None:
            node.AddDefaultStorageNode()
            storage = node.GetStorageNode()
        storage.SetFileName(properties["fileName"])
        if "useCompression" in properties:
            storage.SetUseCompression(int(properties["useCompression"]))
        return bool(storage.WriteData(node))


class SliceWidget:
    """One slice view of :class:`ComparisonLayoutManager`: its real slice logic, slice node and composite node."""

    def __init__(self, logic: Any) -> None:
        self._logic = logic

    def sliceLogic(self) -> Any:
        return self._logic

    def mrmlSliceNode(self) -> Any:
        return self._logic.GetSliceNode()

    def mrmlSliceCompositeNode(self) -> Any:
        return self._logic.GetSliceCompositeNode()


class ComparisonLayoutManager:
    """The layout manager of a main window, reduced to the Red and Yellow slice views of the side-by-side layout.

    Like the application's, it lives as long as the scene: its slice and composite nodes are singletons, which
    ``vtkMRMLScene.Clear(0)`` keeps.
    """

    VIEWS = (("Red", "Axial"), ("Yellow", "Sagittal"))  # Slicer's default view names and orientations

    def __init__(self, scene: Any, application_logic: Any, view_size: tuple = (512, 512)) -> None:
        import slicer
        import vtk

        self._layout_node = scene.AddNewNodeByClass("vtkMRMLLayoutNode")
        self._widgets = {}
        for name, orientation in self.VIEWS:
            logic = slicer.vtkMRMLSliceLogic()
            logic.SetMRMLApplicationLogic(application_logic)
            logic.SetMRMLScene(scene)
            logic.AddSliceNode(name)
            logic.GetSliceNode().SetOrientation(orientation)
            logic.GetSliceNode().SetDimensions(view_size[0], view_size[1], 1)
            self._widgets[name] = SliceWidget(logic)
        slice_logics = vtk.vtkCollection()
        for widget in self._widgets.values():
            slice_logics.AddItem(widget.sliceLogic())
        application_logic.SetSliceLogics(slice_logics)
    @property
    def layout(self) -> int:
        return self._layout_node.GetViewArrangement()

    def setLayout(self, arrangement: int) -> None:
        self._layout_node.SetViewArrangement(arrangement)

    def sliceWidget(self, name: str) -> SliceWidget:
        return self._widgets[name]


class SubjectHierarchyPluginLogic:
    """``qSlicerSubjectHierarchyPluginLogic::onNodeAdded``: a subject-hierarchy item for each data node added."""

    def __init__(self, scene: Any) -> None:
        import slicer
        import vtk

        self._scene = scene
        on_node_added = vtk.calldata_type(vtk.VTK_OBJECT)(self._add_item)  # the node comes as call data
        self._tag = scene.AddObserver(slicer.vtkMRMLScene.NodeAddedEvent, on_node_added)

    @staticmethod
    def _add_item(scene: Any, event: str, node: Any = None) -> None:
        import slicer

        if node is None or node.GetHideFromEditors() or scene.IsImporting():
            return
        if not isinstance(node, (slicer.vtkMRMLDisplayableNode, slicer.vtkMRMLTransformNode)):
            return
        shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
        if not shNode.GetItemByDataNode(node):
            shNode.CreateItem(shNode.GetSceneItemID(), node)

    def remove(self) -> None:
        """Stop observing the scene."""
        self._scene.RemoveObserver(self._tag)


class Application:
    """``slicer.app``, as far as the module and ``slicer.util`` use it."""

    def __init__(self, scene: Any, volumes_logic: Any, application_logic: Any, temporary_path: str) -> None:
        self.temporaryPath = temporary_path
        self._io = CoreIOManager(scene, volumes_logic)
        self._application_logic = application_logic
        self.layout_manager: Optional[ComparisonLayoutManager] = None

    def processEvents(self) -> None:
        """No Qt event loop: nothing to process."""

    def applicationLogic(self) -> Any:
        return self._application_logic

    def layoutManager(self) -> Optional[ComparisonLayoutManager]:
        return self.layout_manager

    def coreIOManager(self) -> CoreIOManager:
        return self._io


@contextlib.contextmanager
def installed(temporary_path: Optional[str] = None) -> Iterator[Any]:
    """Set up the stand-ins around a real scene and the real module logics; yield ``slicer``; remove them again."""
    import slicer

    saved_modules = {name: sys.modules.get(name) for name in STAND_IN_MODULES + ("CTSliceSynthesis",)}
    saved_attributes = {name: getattr(slicer, name, None) for name in ("app", "mrmlScene", "modules")}
    engine_on_path = str(ENGINE_ROOT) in sys.path
    with contextlib.ExitStack() as stack:
        if temporary_path is None:
            temporary_path = stack.enter_context(tempfile.TemporaryDirectory(prefix="slicer-core-"))
        scene = slicer.vtkMRMLScene()
        application_logic = slicer.vtkSlicerApplicationLogic()
        application_logic.SetMRMLScene(scene)
        logics = {}
        for name, module_name, cls in (
            ("colors", "Colors", slicer.vtkSlicerColorLogic),
            ("volumes", "Volumes", slicer.vtkSlicerVolumesLogic),
            ("subjecthierarchy", "SubjectHierarchy", slicer.vtkSlicerSubjectHierarchyModuleLogic),
        ):
            logic = cls()
            logic.SetMRMLApplicationLogic(application_logic)
            logic.SetMRMLScene(scene)
            application_logic.SetModuleLogic(module_name, logic)  # as the module manager registers them
            logics[name] = logic
        application_logic.SetColorLogic(logics["colors"])
        plugin_logic = SubjectHierarchyPluginLogic(scene)
        stack.callback(plugin_logic.remove)
        slicer.mrmlScene = scene
        slicer.app = Application(scene, logics["volumes"], application_logic, temporary_path)
        slicer.modules = types.SimpleNamespace(**{
            name: types.SimpleNamespace(logic=(lambda logic=logic: logic)) for name, logic in logics.items()})
        for name in ("qt", "ctk"):
            sys.modules[name] = _dummy_module(name)
        sys.modules["slicer.ScriptedLoadableModule"] = _scripted_loadable_module()
        sys.modules["slicer.parameterNodeWrapper"] = _parameter_node_wrapper()
        sys.modules["slicer.i18n"] = _i18n()
        sys.modules.pop("CTSliceSynthesis", None)
        if not engine_on_path:
            sys.path.insert(0, str(ENGINE_ROOT))
        try:
            yield slicer
        finally:
            scene.Clear(1)
            for name, module in saved_modules.items():
                if module is None:
                    sys.modules.pop(name, None)
                else:
                    sys.modules[name] = module
            for name, value in saved_attributes.items():
                if value is None:
                    if hasattr(slicer, name):
                        delattr(slicer, name)
                else:
                    setattr(slicer, name, value)
            if not engine_on_path:
                sys.path.remove(str(ENGINE_ROOT))


def main(argv: list) -> int:
    """``Slicer --no-main-window --python-script SCRIPT ARGS``: run ``SCRIPT`` as ``__main__`` with ``ARGS``."""
    script, arguments = argv[0], argv[1:]
    with installed():
        sys.argv = [script, *arguments]
        try:
            runpy.run_path(script, run_name="__main__")
        except SystemExit as exit:
            return exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
