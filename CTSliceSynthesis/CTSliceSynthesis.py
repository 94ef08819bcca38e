"""CT Slice Synthesis: synthesize thin slices between the slices of a thick-slice CT (Fang et al., CVPR 2022).

The module is thin: decisions live in ``CTSliceSynthesisLib.slicer_support`` (plain Python, tested with pytest)
and the network runs in a background ``PythonSlicer`` process (``Scripts/synthesize_process.py``), so the GUI
never waits on it and Cancel ends it at once. The scene is changed only when a result is complete.
"""

import logging
import os
import pathlib
import shutil
import tempfile
import unittest
from dataclasses import dataclass
from typing import Annotated, Callable, Optional

import numpy as np
import qt
import vtk

import slicer
from slicer import vtkMRMLScalarVolumeNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from CTSliceSynthesisLib.core.config import DEFAULT_ADAPT_STEPS, DEFAULT_SEED, SUPPORTED_SCALES
from CTSliceSynthesisLib.core.errors import InputError
from CTSliceSynthesisLib.core.geometry import scale_for_target_spacing, voxel_spacing
from CTSliceSynthesisLib.slicer_support import dependencies, dicom_thickness, ijk_geometry, layout, naming
from CTSliceSynthesisLib.slicer_support import thickness_field
from CTSliceSynthesisLib.slicer_support.process_protocol import DEVICES, SynthesisRequest, build_command, one_line
from CTSliceSynthesisLib.slicer_support.process_runner import Outcome, SynthesisProcess, python_slicer_executable

MODULE_DIR = pathlib.Path(__file__).resolve().parent
MODEL_SOURCES = ("Bundled weights", "Checkpoint file")
POLL_INTERVAL_MS = 200
# "Adapt to this scan" starts as the engine's default budget says (on with it, or off).
ADAPT_DEFAULT_ON, ADAPT_DEFAULT_STEPS = thickness_field.adaptation_defaults(DEFAULT_ADAPT_STEPS)
CITATION = (
    "Chaowei Fang, Liang Wang, Dingwen Zhang, Jun Xu, Yixuan Yuan, Junwei Han. Incremental Cross-view Mutual "
    "Distillation for Self-supervised Medical CT Synthesis. CVPR 2022. arXiv:2112.10325"
)


#
# CTSliceSynthesis
#


class CTSliceSynthesis(ScriptedLoadableModule):
    """Module description shown in Slicer (title, category, help, acknowledgement)."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("CT Slice Synthesis")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Image Synthesis")]
        self.parent.dependencies = []  # the PyTorch extension is checked when it is needed, with a clear message
        self.parent.contributors = ["CTSliceSynthesis contributors"]
        self.parent.helpText = _(
            "Synthesizes thin slices between the slices of a thick-slice CT volume with a self-supervised network "
            "(the volume's own slices are kept bit-exact; ×2, ×3 or ×4). The result is <b>synthetic</b>: use it for "
            "viewing and research, not for primary diagnosis.<br>"
            "The input's <i>slice thickness</i> is filled from its DICOM header when it has one; type it if you "
            "know it, or leave it at 0 for the engine to estimate it from the voxels.<br>"
            "Processing runs in the background; <i>Cancel</i> stops it. The comparison shows the input and the "
            "result side by side in linked views (coronal by default); once linked, choosing another volume in one "
            "view's controller also changes the other.<br>"
            "Method: {citation}.<br>"
            'See the <a href="https://github.com/CTSliceSynthesis/SlicerCTSliceSynthesis#readme">documentation</a>.'
        ).format(citation=CITATION)
        self.parent.acknowledgementText = _(
            "The method is described in: {citation}. The module uses 3D Slicer, the PyTorch extension "
            "(SlicerPyTorch) and pytorch-wavelets."
        ).format(citation=CITATION)


#
# CTSliceSynthesisParameterNode
#


@parameterNodeWrapper
class CTSliceSynthesisParameterNode:
    """What the user chose in the module panel; saved with the scene.

    ``sliceThicknessMm`` (0 = unknown) belongs to the volume ``thicknessVolumeID``, whose DICOM Slice Thickness is
    ``dicomSliceThicknessMm`` (0 = none); those two are kept for ``thickness_field`` and have no widget.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    sliceThicknessMm: Annotated[float, WithinRange(0.0, thickness_field.MAX_THICKNESS_MM)] = 0.0
    thicknessVolumeID: str = ""
    dicomSliceThicknessMm: float = 0.0
    outputVolume: vtkMRMLScalarVolumeNode
    disagreementVolume: vtkMRMLScalarVolumeNode
    scale: Annotated[int, Choice(list(SUPPORTED_SCALES))] = 2
    useTargetSpacing: bool = False
    targetSpacingMm: Annotated[float, WithinRange(0.1, 20.0)] = 1.0
    thickAxis: Annotated[str, Choice(list(ijk_geometry.AXIS_CHOICES))] = "auto"
    modelSource: Annotated[str, Choice(list(MODEL_SOURCES))] = MODEL_SOURCES[0]
    checkpointPath: pathlib.Path
    device: Annotated[str, Choice(list(DEVICES))] = "auto"
    adaptToScan: bool = ADAPT_DEFAULT_ON
    adaptSteps: Annotated[int, WithinRange(*thickness_field.ADAPT_STEPS_RANGE)] = ADAPT_DEFAULT_STEPS
    outputDisagreement: bool = False
    showComparison: bool = True
    orientation: Annotated[str, Choice(list(layout.ORIENTATIONS))] = "Coronal"
    showDisagreementOverlay: bool = True


#
# CTSliceSynthesisWidget
#


class CTSliceSynthesisWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The module panel: wires the .ui to the parameter node and the logic; decides nothing itself."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._task = None

    def setup(self) -> None:
        """Load the .ui, create the logic, connect signals."""
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/CTSliceSynthesis.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = CTSliceSynthesisLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.showComparisonButton.connect("clicked(bool)", self.onShowComparison)
        self.ui.orientationComboBox.connect("currentIndexChanged(int)", self.onOrientationChanged)
        self.ui.overlayCheckBox.connect("toggled(bool)", self.onOverlayToggled)
        self.ui.progressBar.hide()
        self.initializeParameterNode()

    def cleanup(self) -> None:
        """Called when the application closes: stop observing and end a running synthesis."""
        self.removeObservers()
        if self._task is not None:
            self._task.cancel()

    def enter(self) -> None:
        """Called each time the user opens this module."""
        self.initializeParameterNode()

    def exit(self) -> None:
        """Called each time the user opens another module: stop updating the GUI from the parameter node."""
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event) -> None:
        """The scene is closing: a running synthesis has nowhere to put its result any more."""
        if self._task is not None:
            self._task.cancel()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        """Recreate the parameter node if the module is shown."""
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        """Use the scene's parameter node and pick a first input volume if none is selected."""
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            firstVolumeNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolumeNode:
                self._parameterNode.inputVolume = firstVolumeNode

    def setParameterNode(self, inputParameterNode: Optional[CTSliceSynthesisParameterNode]) -> None:
        """Bind the GUI to ``inputParameterNode`` (or unbind with ``None``)."""
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUIState)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUIState)
            self.updateGUIState()

    def updateGUIState(self, caller=None, event=None) -> None:
        """Enable what applies, describe the output grid, and say why Synthesize is unavailable if it is."""
        params = self._parameterNode
        if params is None:
            return
        self.updateThicknessField(params)
        self.ui.scaleComboBox.enabled = not params.useTargetSpacing
        self.ui.targetSpacingSpinBox.enabled = params.useTargetSpacing
        self.ui.checkpointPathLineEdit.enabled = params.modelSource == MODEL_SOURCES[1]
        self.ui.adaptStepsSpinBox.enabled = params.adaptToScan
        self.ui.disagreementSelector.enabled = params.outputDisagreement
        if self._task is not None:
            return
        problem = self.logic.checkParameters(params)
        self.ui.outputInfoLabel.text = problem or self.logic.describeOutput(params)
        self.ui.applyButton.enabled = problem is None
        self.ui.applyButton.toolTip = problem or _("Synthesize thin slices in the background")

    def updateThicknessField(self, params: CTSliceSynthesisParameterNode) -> None:
        """Fill the slice thickness from the DICOM header when another input volume is chosen (a value typed for
        the current volume stays), and say where the value shown came from."""
        volume = params.inputVolume
        field = self.logic.thicknessField(params)
        updated = thickness_field.for_input(field, volume.GetID() if volume else "",
                                            lambda: self.logic.dicomSliceThickness(volume))
        if updated is not field:
            with slicer.util.NodeModify(params.parameterNode):  # one Modified event for the three values
                params.thicknessVolumeID = updated.volume_id
                params.sliceThicknessMm = updated.value
                params.dicomSliceThicknessMm = updated.dicom_value
        source = thickness_field.thickness_source(updated.value, updated.dicom_value)
        if source == thickness_field.SOURCE_DICOM and self.dicomThicknessUnused(params):
            text = _("from the DICOM header, which describes slices along K: not used for another axis")
        elif source == thickness_field.SOURCE_DICOM:
            text = _("from the DICOM header")
        elif source == thickness_field.SOURCE_GIVEN and updated.dicom_value > 0:
            text = _("typed (DICOM header: {thickness:g} mm)").format(thickness=updated.dicom_value)
        elif source == thickness_field.SOURCE_GIVEN:
            text = _("typed")
        else:
            text = _("the engine estimates it from the voxels")
        self.ui.thicknessSourceLabel.text = text

    def dicomThicknessUnused(self, params: CTSliceSynthesisParameterNode) -> bool:
        """Whether the synthesis would leave out the DICOM thickness shown (another axis than K is synthesized)."""
        try:
            return self.logic.thicknessRequest(params)[0] is None
        except InputError:
            return False

    def onApplyButton(self) -> None:
        """Start the synthesis, or cancel the running one."""
        if self._task is not None:
            self.ui.applyButton.enabled = False
            self.ui.applyButton.text = _("Cancelling…")
            self._task.cancel()
            return
        params = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Failed to start the synthesis."), waitCursor=True):
            dependencies.ensure_dependencies(
                self.logic.requirementsPath(),
                confirm=lambda text: slicer.util.confirmOkCancelDisplay(text, windowTitle=_("Install dependencies")),
            )
            self.ui.logTextEdit.clear()
            self.ui.lastRunLabel.text = ""
            self._task = self.logic.processFromParameters(
                params,
                waitForCompletion=False,
                progressCallback=self.onProgress,
                logCallback=self.onLog,
                completedCallback=self.onCompleted,
            )
            self.setRunning(True)

    def setRunning(self, running: bool) -> None:
        """Turn the Apply button into Cancel while a synthesis runs, and show the progress bar."""
        self.ui.applyButton.text = _("Cancel") if running else _("Synthesize slices")
        self.ui.applyButton.enabled = True
        self.ui.progressBar.value = 0
        self.ui.progressBar.setVisible(running)
        for widget in (self.ui.inputsCollapsibleButton, self.ui.synthesisCollapsibleButton,
                       self.ui.outputsCollapsibleButton, self.ui.advancedCollapsibleButton):
            widget.enabled = not running
        if not running:
            self.updateGUIState()

    def onProgress(self, fraction: float, stage: str) -> None:
        """Progress from the background process (main thread, from the polling timer)."""
        self.ui.progressBar.value = int(round(100 * fraction))
        self.ui.progressBar.format = f"{stage}  %p%"

    def onLog(self, line: str) -> None:
        """A log line from the background process."""
        self.ui.logTextEdit.appendPlainText(line)

    def onCompleted(self, outcome: Outcome, outputs: Optional["SynthesisOutputs"]) -> None:
        """The background run ended: select the outputs and show the comparison, or report what went wrong."""
        self._task = None
        self.setRunning(False)
        self.onLog(outcome.message)
        if outcome.status == "failed":
            slicer.util.errorDisplay(_("Synthesis failed: {message}").format(message=outcome.message))
            return
        if outputs is None:
            return
        geometry = thickness_field.describe_result(outputs.info)
        self.onLog(geometry)
        self.ui.lastRunLabel.text = geometry
        params = self._parameterNode
        if params is not None:
            params.outputVolume = outputs.outputVolume
            if outputs.disagreementVolume is not None:
                params.disagreementVolume = outputs.disagreementVolume
            if params.showComparison:
                self.onShowComparison()

    def onShowComparison(self) -> None:
        """Show input and output side by side in linked views."""
        params = self._parameterNode
        if params is None or not params.inputVolume or not params.outputVolume:
            return
        overlay = params.disagreementVolume if params.showDisagreementOverlay else None
        layout.show_comparison(params.inputVolume, params.outputVolume, params.orientation, overlay)

    def onOrientationChanged(self, index: int) -> None:
        """Re-orient the comparison views, if they are shown."""
        params = self._parameterNode
        if params is not None and params.inputVolume and layout.is_comparison_shown():
            layout.set_orientation(layout.ORIENTATIONS[index], params.inputVolume)

    def onOverlayToggled(self, checked: bool) -> None:
        """Show or hide the disagreement overlay on the output view, if the comparison is shown."""
        params = self._parameterNode
        if params is not None and layout.is_comparison_shown():
            layout.set_overlay(params.disagreementVolume if checked else None)


#
# CTSliceSynthesisLogic
#


@dataclass
class SynthesisOutputs:
    """The volumes a completed synthesis created or filled, and what the background process reported."""

    outputVolume: vtkMRMLScalarVolumeNode
    disagreementVolume: Optional[vtkMRMLScalarVolumeNode]
    info: dict


@dataclass
class _Job:
    """One synthesis between its start and its result: node IDs (nodes may be deleted meanwhile) and files."""

    inputVolumeID: str
    outputVolumeID: Optional[str]
    disagreementVolumeID: Optional[str]
    grid: ijk_geometry.OutputGrid
    request: SynthesisRequest
    workDir: str


class SynthesisTask:
    """A synthesis running in the background, polled by a ``qt.QTimer`` on the main thread."""

    def __init__(self, logic: "CTSliceSynthesisLogic", job: _Job, process: SynthesisProcess,
                 completedCallback: Optional[Callable]) -> None:
        self._logic = logic
        self._job = job
        self._process = process
        self._completedCallback = completedCallback
        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_INTERVAL_MS)
        self._timer.timeout.connect(self._poll)
        self._timer.start()

    def cancel(self) -> None:
        """End the process tree; the completion callback follows with a ``cancelled`` outcome."""
        self._process.cancel()

    def _poll(self) -> None:
        outcome = self._process.poll()
        if outcome is None:
            return
        self._timer.stop()
        outcome, outputs = self._logic.finishJob(self._job, outcome)
        if self._completedCallback:
            self._completedCallback(outcome, outputs)


class CTSliceSynthesisLogic(ScriptedLoadableModuleLogic):
    """Everything the module does, usable without the GUI (batch, tests). No dialogs."""

    def getParameterNode(self) -> CTSliceSynthesisParameterNode:
        """The module's parameter node, typed."""
        return CTSliceSynthesisParameterNode(super().getParameterNode())

    @staticmethod
    def requirementsPath() -> pathlib.Path:
        """The non-torch Python requirements of the engine."""
        return MODULE_DIR / "Resources" / "requirements.txt"

    @staticmethod
    def inputGeometry(volumeNode: vtkMRMLScalarVolumeNode) -> tuple:
        """``(IJK dimensions, IJK-to-RAS as numpy)`` of a volume node; ``InputError`` if it has no voxels."""
        if volumeNode is None or volumeNode.GetImageData() is None:
            raise InputError(_("the input volume has no voxels"))
        ijkToRAS = vtk.vtkMatrix4x4()
        volumeNode.GetIJKToRASMatrix(ijkToRAS)
        return volumeNode.GetImageData().GetDimensions(), slicer.util.arrayFromVTKMatrix(ijkToRAS)

    @staticmethod
    def dicomSliceThickness(volumeNode) -> Optional[float]:
        """The DICOM Slice Thickness (mm) of a volume loaded from DICOM whose files are still in Slicer's DICOM
        database, else ``None``."""
        database = getattr(slicer, "dicomDatabase", None)  # set by the DICOM module; absent without it
        if volumeNode is None or database is None or not database.isOpen:
            return None
        return dicom_thickness.dicom_slice_thickness(
            volumeNode.GetAttribute("DICOM.instanceUIDs"), database.fileForInstance, database.fileValue)

    @staticmethod
    def thicknessField(params: CTSliceSynthesisParameterNode) -> thickness_field.ThicknessField:
        """The slice thickness state stored in ``params``."""
        return thickness_field.ThicknessField(
            params.thicknessVolumeID, params.sliceThicknessMm, params.dicomSliceThicknessMm)

    def thicknessRequest(self, params: CTSliceSynthesisParameterNode) -> tuple:
        """``(sliceThickness, thicknessSource)`` for synthesizing the input of ``params``: the thickness stored in
        ``params`` when it belongs to that volume (a DICOM value only for slices along K, the axis the DICOM
        loader stacks them on), else ``(None, "given")``: the engine estimates it. ``InputError`` as
        :meth:`planGrid`."""
        grid = self.planGrid(params.inputVolume, self.effectiveScale(params), params.thickAxis)
        return thickness_field.for_request(self.thicknessField(params), params.inputVolume.GetID(), grid.axis)

    def planGrid(self, inputVolume, scale: int, thickAxis: str = "auto") -> ijk_geometry.OutputGrid:
        """The output grid for ``inputVolume`` up-sampled ``scale`` times (raises ``InputError`` if impossible)."""
        dimensions, ijkToRAS = self.inputGeometry(inputVolume)
        return ijk_geometry.plan_output_grid(dimensions, ijkToRAS, scale, thickAxis)

    def effectiveScale(self, params: CTSliceSynthesisParameterNode) -> int:
        """The factor chosen directly, or the one that brings the slice spacing closest to the target."""
        if not params.useTargetSpacing:
            return params.scale
        dimensions, ijkToRAS = self.inputGeometry(params.inputVolume)
        spacing = voxel_spacing(ijkToRAS)
        axis = ijk_geometry.resolve_thick_axis(spacing, params.thickAxis)
        return scale_for_target_spacing(spacing[axis], params.targetSpacingMm)

    def checkParameters(self, params: CTSliceSynthesisParameterNode) -> Optional[str]:
        """``None`` if the synthesis can start, else a one-line reason for the user."""
        if not params.inputVolume:
            return _("Select an input volume.")
        if params.outputVolume and params.outputVolume == params.inputVolume:
            return _("The output volume must differ from the input volume.")
        if params.modelSource == MODEL_SOURCES[1] and not params.checkpointPath.is_file():
            return _("Select a checkpoint file, or use the bundled weights.")
        try:
            grid = self.planGrid(params.inputVolume, self.effectiveScale(params), params.thickAxis)
            self.transformWarning(params.inputVolume, grid.axis)
        except InputError as error:
            return str(error)
        return None

    def describeOutput(self, params: CTSliceSynthesisParameterNode) -> str:
        """A one-line summary of the synthesized grid, plus a warning for a non-linear parent transform."""
        scale = self.effectiveScale(params)
        grid = self.planGrid(params.inputVolume, scale, params.thickAxis)
        text = _("×{scale} along {axis}: {count} slices, {spacing:.3g} mm apart").format(
            scale=scale, axis=grid.axis_name, count=grid.dimensions[grid.axis], spacing=grid.spacing[grid.axis])
        warning = self.transformWarning(params.inputVolume, grid.axis)
        return f"{text}\n{warning}" if warning else text

    def transformWarning(self, inputVolume, axis: int) -> Optional[str]:
        """A warning if the volume is under a non-linear transform (e.g. DICOM acquisition geometry correction);
        ``InputError`` if, through that transform, its slices along IJK ``axis`` are not equally spaced."""
        transformNode = inputVolume.GetParentTransformNode()
        if transformNode is None or transformNode.IsTransformToWorldLinear():
            return None
        dimensions, ijkToRAS = self.inputGeometry(inputVolume)
        toWorld = vtk.vtkGeneralTransform()
        transformNode.GetTransformToWorld(toWorld)
        centres = ijk_geometry.slice_centres(dimensions, ijkToRAS, axis)
        worldCentres = [toWorld.TransformPoint(tuple(centre)) for centre in centres]
        ijk_geometry.check_equal_slice_spacing(worldCentres, inputVolume.GetName())
        return ijk_geometry.nonlinear_transform_warning(inputVolume.GetName(), transformNode.GetName())

    def processFromParameters(self, params: CTSliceSynthesisParameterNode, **kwargs):
        """:meth:`process` with the choices stored in ``params`` (the slice thickness from :meth:`thicknessRequest`)."""
        sliceThickness, thicknessSource = self.thicknessRequest(params)
        return self.process(
            params.inputVolume,
            outputVolume=params.outputVolume,
            scale=self.effectiveScale(params),
            thickAxis=params.thickAxis,
            sliceThickness=sliceThickness,
            thicknessSource=thicknessSource,
            checkpoint=str(params.checkpointPath) if params.modelSource == MODEL_SOURCES[1] else None,
            device=params.device,
            adaptSteps=int(params.adaptSteps) if params.adaptToScan else 0,
            withDisagreement=params.outputDisagreement,
            disagreementVolume=params.disagreementVolume,
            **kwargs,
        )

    def process(
        self,
        inputVolume: vtkMRMLScalarVolumeNode,
        outputVolume: Optional[vtkMRMLScalarVolumeNode] = None,
        scale: int = 2,
        thickAxis: str = "auto",
        checkpoint: Optional[str] = None,
        device: str = "auto",
        adaptSteps: int = DEFAULT_ADAPT_STEPS,
        adaptSeconds: Optional[float] = None,
        seed: int = DEFAULT_SEED,
        sliceThickness: Optional[float] = None,
        thicknessSource: str = "given",
        withDisagreement: bool = False,
        disagreementVolume: Optional[vtkMRMLScalarVolumeNode] = None,
        waitForCompletion: bool = True,
        progressCallback: Optional[Callable[[float, str], None]] = None,
        logCallback: Optional[Callable[[str], None]] = None,
        completedCallback: Optional[Callable[[Outcome, Optional[SynthesisOutputs]], None]] = None,
    ):
        """Synthesize thin slices of ``inputVolume`` in a background process.

        ``outputVolume``/``disagreementVolume`` ``None`` create new nodes next to the input when the result is
        complete. ``sliceThickness`` is the input's slice thickness in mm when known (``thicknessSource``:
        ``given`` or ``dicom``), else the background process estimates it; the voxel spacing always goes with
        the voxels, so that adaptation (``adaptSteps`` > 0 steps from ``seed``; ``adaptSeconds``, optional, caps it
        in wall time, which makes a run it cuts short not reproducible) can run. Blocking (``waitForCompletion=True``):
        returns :class:`SynthesisOutputs` or raises ``RuntimeError`` with a one-line message. Otherwise returns a
        :class:`SynthesisTask` at once and calls ``completedCallback(outcome, outputs)`` when done; ``outputs`` is
        ``None`` unless it completed.
        """
        grid = self.planGrid(inputVolume, scale, thickAxis)
        _dimensions, ijkToRAS = self.inputGeometry(inputVolume)
        warning = self.transformWarning(inputVolume, grid.axis)
        if warning:
            logging.warning(warning)
            if logCallback:  # the module's log box too, where the user looks during the run
                logCallback(f"warning: {warning}")
        workDir = tempfile.mkdtemp(prefix="CTSliceSynthesis-", dir=slicer.app.temporaryPath)
        request = SynthesisRequest(
            input_path=os.path.join(workDir, "input.npy"),
            output_path=os.path.join(workDir, "output.npy"),
            scale=scale,
            axis=grid.numpy_axis,
            checkpoint=checkpoint,
            device=device,
            adapt_steps=adaptSteps,
            adapt_seconds=adaptSeconds,
            seed=seed,
            disagreement_path=os.path.join(workDir, "disagreement.npy") if withDisagreement else None,
            spacing=ijk_geometry.numpy_spacing(ijkToRAS),
            slice_thickness=sliceThickness,
            thickness_source=thicknessSource,
        )
        job = _Job(
            inputVolumeID=inputVolume.GetID(),
            outputVolumeID=outputVolume.GetID() if outputVolume else None,
            disagreementVolumeID=disagreementVolume.GetID() if disagreementVolume else None,
            grid=grid,
            request=request,
            workDir=workDir,
        )
        try:
            np.save(request.input_path, slicer.util.arrayFromVolume(inputVolume), allow_pickle=False)
            command = build_command(python_slicer_executable(), str(MODULE_DIR / "Scripts" / "synthesize_process.py"),
                                    request)
            logging.info("CTSliceSynthesis: running %s", " ".join(command))
            process = SynthesisProcess(command, progressCallback or (lambda fraction, stage: None),
                                       logCallback or logging.info)
        except Exception:
            shutil.rmtree(workDir, ignore_errors=True)
            raise
        if not waitForCompletion:
            return SynthesisTask(self, job, process, completedCallback)
        outcome, outputs = self.finishJob(job, process.wait(idle=slicer.app.processEvents))
        if completedCallback:
            completedCallback(outcome, outputs)
        if outputs is None:
            raise RuntimeError(outcome.message)
        return outputs

    def finishJob(self, job: _Job, outcome: Outcome) -> tuple:
        """Turn a finished run into nodes (only if it completed) and delete its files: ``(outcome, outputs)``."""
        try:
            if outcome.status != "completed":
                return outcome, None
            return outcome, self._createOutputs(job, outcome.result)
        except Exception as error:  # a result that cannot be placed in the scene is a failure, not a crash
            logging.exception("CTSliceSynthesis: could not create the output volumes")
            return Outcome("failed", one_line(str(error)) or type(error).__name__), None
        finally:
            shutil.rmtree(job.workDir, ignore_errors=True)

    def _createOutputs(self, job: _Job, info: dict) -> SynthesisOutputs:
        inputVolume = slicer.mrmlScene.GetNodeByID(job.inputVolumeID)
        if inputVolume is None:
            raise RuntimeError(_("the input volume was removed from the scene during the synthesis"))
        scale = job.grid.scale
        outputVolume = self._existingNode(job.outputVolumeID) or slicer.modules.volumes.logic().CloneVolumeWithoutImageData(
            slicer.mrmlScene, inputVolume, naming.output_node_name(inputVolume.GetName(), scale))
        self._fillVolume(outputVolume, np.load(job.request.output_path), job.grid, inputVolume, info)
        disagreementVolume = None
        if job.request.disagreement_path:
            disagreementVolume = self._existingNode(job.disagreementVolumeID) or slicer.mrmlScene.AddNewNodeByClass(
                "vtkMRMLScalarVolumeNode",
                slicer.mrmlScene.GenerateUniqueName(naming.disagreement_node_name(inputVolume.GetName(), scale)))
            disagreement = np.load(job.request.disagreement_path)
            self._fillVolume(disagreementVolume, disagreement, job.grid, inputVolume, info)
            self._showAsHeatMap(disagreementVolume, disagreement)
        return SynthesisOutputs(outputVolume, disagreementVolume, info)

    @staticmethod
    def _existingNode(nodeID: Optional[str]):
        return slicer.mrmlScene.GetNodeByID(nodeID) if nodeID else None

    @staticmethod
    def _fillVolume(volumeNode, voxels: np.ndarray, grid: ijk_geometry.OutputGrid, inputVolume, info: dict) -> None:
        """Voxels, geometry, parent transform, subject-hierarchy place and provenance of a result volume."""
        volumeNode.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(grid.ijk_to_ras))
        slicer.util.updateVolumeFromArray(volumeNode, voxels)
        volumeNode.SetAndObserveTransformNodeID(inputVolume.GetTransformNodeID())
        if volumeNode.GetDisplayNode() is None:
            volumeNode.CreateDefaultDisplayNodes()
            inputDisplay = inputVolume.GetDisplayNode()
            if inputDisplay is not None:
                volumeNode.GetDisplayNode().SetAutoWindowLevel(False)
                volumeNode.GetDisplayNode().SetWindowLevel(inputDisplay.GetWindow(), inputDisplay.GetLevel())
        names = vtk.vtkStringArray()
        volumeNode.GetAttributeNames(names)
        for index in range(names.GetNumberOfValues()):
            if naming.is_source_attribute(names.GetValue(index)):
                volumeNode.RemoveAttribute(names.GetValue(index))
        attributes = naming.provenance_attributes(
            scale=grid.scale,
            axis_name=grid.axis_name,
            model_id=str(info.get("model_id", "")),
            model_sha256=info.get("sha256"),
            preset=str(info.get("preset", "")),
            device=str(info.get("device", "")),
            input_name=inputVolume.GetName(),
            adapt_steps=int(info.get("adapt_steps") or 0),
            adapted_steps=int(info.get("adapted_steps") or 0),
            adapt_seed=info.get("adapt_seed"),
            adapt_capped=bool(info.get("adapt_capped")),
            adapt_seconds=info.get("adapt_seconds"),
            slice_thickness=info.get("slice_thickness_mm"),
            thickness_source=info.get("thickness_source"),
        )
        for name, value in attributes.items():
            volumeNode.SetAttribute(name, value)
        shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
        shNode.SetItemParent(shNode.GetItemByDataNode(volumeNode),
                             shNode.GetItemParent(shNode.GetItemByDataNode(inputVolume)))

    @staticmethod
    def _showAsHeatMap(volumeNode, disagreement: np.ndarray) -> None:
        """Iron colour map from 0 to the 99th percentile of the synthesized voxels; agreement (0 HU) transparent."""
        displayNode = volumeNode.GetDisplayNode()
        displayNode.SetAndObserveColorNodeID("vtkMRMLColorTableNodeIron")
        positive = disagreement[disagreement > 0]
        top = float(np.percentile(positive, 99)) if positive.size else 1.0
        displayNode.SetAutoWindowLevel(False)
        displayNode.SetWindowLevelMinMax(0.0, max(top, 1e-3))
        displayNode.SetAutoThreshold(False)
        displayNode.SetLowerThreshold(1e-3)
        displayNode.SetApplyThreshold(True)


#
# CTSliceSynthesisTest
#


class CTSliceSynthesisTest(ScriptedLoadableModuleTest):
    """Self-test run by Slicer's ctest (``slicer_add_python_unittest``) or the Reload & Test button."""

    def setUp(self) -> None:
        """Start from an empty scene."""
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        """Run all tests (Reload and Test calls this directly, outside a unittest runner, so a skip is reported
        here instead of surfacing as an exception)."""
        for test in (self.test_outputVolumeGeometry, self.test_resultPlacedInScene,
                     self.test_unfinishedRunLeavesSceneUntouched, self.test_leftHandedInput,
                     self.test_nonLinearParentTransform, self.test_refillExistingOutput,
                     self.test_inputRemovedDuringRun, self.test_parameterNodeSavedAndReloaded,
                     self.test_comparisonLayout, self.test_synthesisBlocking):
            self.setUp()
            try:
                test()
            except unittest.SkipTest as reason:
                self.delayDisplay(f"{test.__name__} skipped: {reason}")

    @staticmethod
    def _obliqueVolume(name: str = "thick"):
        """A small int16 volume under a rotated, flipped IJK-to-RAS with 5 mm slices along K."""
        rotation = vtk.vtkTransform()
        rotation.RotateWXYZ(20.0, 1.0, 0.3, 0.1)
        matrix = slicer.util.arrayFromVTKMatrix(rotation.GetMatrix())
        matrix[:3, :3] = matrix[:3, :3] @ np.diag([-0.8, 0.8, 5.0])
        matrix[:3, 3] = [12.0, -30.0, 7.5]
        voxels = (np.arange(4 * 24 * 16, dtype=np.int16).reshape(4, 24, 16) % 400) - 200
        return slicer.util.addVolumeFromArray(voxels, matrix, name), matrix, voxels

    @staticmethod
    def _moveToStudy(volumeNode) -> int:
        """Put ``volumeNode`` in a new patient/study folder and return the study's subject-hierarchy item (a result
        must land there too: under the scene item it would sit next to any volume)."""
        shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
        patient = shNode.CreateSubjectItem(shNode.GetSceneItemID(), "patient")
        study = shNode.CreateStudyItem(patient, "study")
        shNode.SetItemParent(shNode.GetItemByDataNode(volumeNode), study)
        return study

    def assertInStudy(self, volumeNode, study: int) -> None:
        """``volumeNode`` sits in the subject-hierarchy folder ``study``."""
        shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
        self.assertEqual(shNode.GetItemParent(shNode.GetItemByDataNode(volumeNode)), study)

    def test_outputVolumeGeometry(self) -> None:
        """Output grid, pass-through slices, transform, hierarchy and provenance, without running the network."""
        self.delayDisplay("Output volume geometry")
        inputVolume, matrix, voxels = self._obliqueVolume()
        transform = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
        inputVolume.SetAndObserveTransformNodeID(transform.GetID())
        study = self._moveToStudy(inputVolume)
        logic = CTSliceSynthesisLogic()
        grid = logic.planGrid(inputVolume, 2)
        self.assertEqual(grid.axis_name, "K")
        self.assertEqual(grid.dimensions, (16, 24, 7))
        synthesized = np.repeat(voxels, 2, axis=0)[:7]
        output = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "out")
        info = {"model_id": "test", "sha256": "0" * 64, "preset": "lite", "device": "cpu", "adapt_steps": 12,
                "adapted_steps": 12, "adapt_seed": 0, "adapt_capped": False, "adapt_seconds": None,
                "slice_thickness_mm": 5.0, "thickness_source": "dicom"}
        logic._fillVolume(output, synthesized, grid, inputVolume, info)
        ijkToRAS = vtk.vtkMatrix4x4()
        output.GetIJKToRASMatrix(ijkToRAS)
        outMatrix = slicer.util.arrayFromVTKMatrix(ijkToRAS)
        for k in range(voxels.shape[0]):  # output slice 2k is where input slice k was
            np.testing.assert_allclose(outMatrix @ [3, 5, 2 * k, 1], matrix @ [3, 5, k, 1], atol=1e-6)
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(output)[::2], voxels)
        np.testing.assert_allclose(grid.spacing, output.GetSpacing())  # what the panel says is what Slicer has
        self.assertEqual(slicer.util.arrayFromVolume(output).dtype, np.int16)
        self.assertEqual(output.GetTransformNodeID(), transform.GetID())
        self.assertEqual(output.GetAttribute("CTSliceSynthesis.scale"), "2")
        self.assertEqual(output.GetAttribute("CTSliceSynthesis.adaptedSteps"), "12")
        self.assertEqual(output.GetAttribute("CTSliceSynthesis.adaptSeed"), "0")
        self.assertEqual(output.GetAttribute("CTSliceSynthesis.adaptReproducible"), "true")
        self.assertEqual(output.GetAttribute("CTSliceSynthesis.inputSliceThickness"), "5")
        self.assertEqual(output.GetAttribute("CTSliceSynthesis.inputSliceThicknessSource"), "dicom")
        self.assertIsNone(logic.dicomSliceThickness(inputVolume))  # not loaded from DICOM
        self.assertInStudy(output, study)

    def _completedJob(self, inputVolume, synthesized: np.ndarray, scale: int = 2, outputVolume=None) -> tuple:
        """A job whose background run "completed" with ``synthesized`` as its output file, and that outcome; the
        result goes into ``outputVolume`` if given, else into a new node."""
        grid = CTSliceSynthesisLogic().planGrid(inputVolume, scale)
        workDir = tempfile.mkdtemp(prefix="CTSliceSynthesisTest-", dir=slicer.app.temporaryPath)
        request = SynthesisRequest(os.path.join(workDir, "input.npy"), os.path.join(workDir, "output.npy"), scale,
                                   axis=grid.numpy_axis)
        np.save(request.output_path, synthesized, allow_pickle=False)
        job = _Job(inputVolume.GetID(), outputVolume.GetID() if outputVolume else None, None, grid, request, workDir)
        info = {"model_id": "test", "sha256": "0" * 64, "preset": "lite", "device": "cpu", "adapt_steps": 0}
        return job, Outcome("completed", "synthesis completed", info)

    def test_resultPlacedInScene(self) -> None:
        """A new output is a clone of the input: unique name, display settings, transform, no DICOM identity."""
        self.delayDisplay("Result placed in the scene")
        inputVolume, _matrix, voxels = self._obliqueVolume()
        inputVolume.GetDisplayNode().SetAutoWindowLevel(False)
        inputVolume.GetDisplayNode().SetWindowLevel(1400.0, -500.0)
        inputVolume.SetAttribute("DICOM.instanceUIDs", "1.2.3")
        transform = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
        inputVolume.SetAndObserveTransformNodeID(transform.GetID())
        study = self._moveToStudy(inputVolume)
        slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "thick synthesized ×2")  # name already taken
        job, outcome = self._completedJob(inputVolume, np.repeat(voxels, 2, axis=0)[:7])
        outcome, outputs = CTSliceSynthesisLogic().finishJob(job, outcome)
        self.assertEqual(outcome.status, "completed")
        output = outputs.outputVolume
        self.assertNotEqual(output.GetName(), "thick synthesized ×2")
        self.assertTrue(output.GetName().startswith("thick synthesized ×2"))
        self.assertEqual((output.GetDisplayNode().GetWindow(), output.GetDisplayNode().GetLevel()), (1400.0, -500.0))
        self.assertNotEqual(output.GetDisplayNode().GetID(), inputVolume.GetDisplayNode().GetID())
        self.assertIsNone(output.GetAttribute("DICOM.instanceUIDs"))
        self.assertEqual(output.GetAttribute("CTSliceSynthesis.modelSha256"), "0" * 64)
        self.assertEqual(output.GetTransformNodeID(), transform.GetID())
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(output)[::2], voxels)
        self.assertInStudy(output, study)
        self.assertFalse(os.path.exists(job.workDir))

    def test_unfinishedRunLeavesSceneUntouched(self) -> None:
        """A cancelled or failed run adds no node to the scene and deletes its files."""
        self.delayDisplay("Unfinished run")
        inputVolume, _matrix, voxels = self._obliqueVolume()
        for status in ("cancelled", "failed"):
            job, _outcome = self._completedJob(inputVolume, np.repeat(voxels, 2, axis=0)[:7])
            nodeCount = slicer.mrmlScene.GetNumberOfNodes()
            outcome, outputs = CTSliceSynthesisLogic().finishJob(job, Outcome(status, status))
            self.assertEqual(outcome.status, status)
            self.assertIsNone(outputs)
            self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodeCount)
            self.assertFalse(os.path.exists(job.workDir))

    def assertSlicesInPlace(self, outputVolume, inputVolume, scale: int) -> None:
        """Output slice ``k·scale`` holds input slice ``k``, voxel for voxel, at the same place in RAS."""
        _dimensions, inputMatrix = CTSliceSynthesisLogic.inputGeometry(inputVolume)
        _dimensions, outputMatrix = CTSliceSynthesisLogic.inputGeometry(outputVolume)
        inputVoxels = slicer.util.arrayFromVolume(inputVolume)
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(outputVolume)[::scale], inputVoxels)
        for k in range(inputVoxels.shape[0]):
            np.testing.assert_allclose(outputMatrix @ [3, 5, scale * k, 1], inputMatrix @ [3, 5, k, 1], atol=1e-4)

    def test_leftHandedInput(self) -> None:
        """A left-handed volume in the scene keeps its handedness in the result; Slicer's reader makes the same
        voxels right-handed (K reversed, same place in RAS), and that result is right-handed too."""
        self.delayDisplay("Left-handed input")
        created, matrix, voxels = self._obliqueVolume()
        self.assertLess(np.linalg.det(matrix[:3, :3]), 0)
        volumeFile = os.path.join(slicer.app.temporaryPath, "CTSliceSynthesisTest-left-handed.nrrd")
        self.assertTrue(slicer.util.saveNode(created, volumeFile))
        try:
            loaded = slicer.util.loadVolume(volumeFile, {"name": "loaded", "show": False})
        finally:
            os.remove(volumeFile)
        _dimensions, loadedMatrix = CTSliceSynthesisLogic.inputGeometry(loaded)
        self.assertGreater(np.linalg.det(loadedMatrix[:3, :3]), 0)
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(loaded), voxels[::-1])
        last = voxels.shape[0] - 1
        for k in range(voxels.shape[0]):  # loaded slice last - k is where slice k was
            np.testing.assert_allclose(loadedMatrix @ [3, 5, last - k, 1], matrix @ [3, 5, k, 1], atol=1e-4)
        for volume, handedness in ((created, -1), (loaded, 1)):
            job, outcome = self._completedJob(volume, np.repeat(slicer.util.arrayFromVolume(volume), 2, axis=0)[:7])
            _outcome, outputs = CTSliceSynthesisLogic().finishJob(job, outcome)
            _dimensions, outputMatrix = CTSliceSynthesisLogic.inputGeometry(outputs.outputVolume)
            self.assertEqual(np.sign(np.linalg.det(outputMatrix[:3, :3])), handedness)
            self.assertSlicesInPlace(outputs.outputVolume, volume, 2)

    @staticmethod
    def _gridTransform(displacement: Callable[[np.ndarray], np.ndarray], name: str):
        """A grid transform node over a 200 mm cube whose displacement at each RAS point ``p`` (rows of an
        ``(n, 3)`` array) is ``displacement(p)``."""
        from vtk.util.numpy_support import numpy_to_vtk

        grid = vtk.vtkImageData()
        grid.SetOrigin(-100.0, -100.0, -100.0)
        grid.SetSpacing(10.0, 10.0, 10.0)
        grid.SetDimensions(21, 21, 21)
        k, j, i = np.mgrid[0:21, 0:21, 0:21]
        points = np.stack([i, j, k], axis=-1).reshape(-1, 3) * 10.0 - 100.0
        vectors = numpy_to_vtk(displacement(points).astype(np.float64), deep=True)
        vectors.SetNumberOfComponents(3)
        grid.GetPointData().SetScalars(vectors)
        transform = slicer.vtkOrientedGridTransform()
        transform.SetDisplacementGridData(grid)
        transformNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLGridTransformNode", name)
        transformNode.SetAndObserveTransformToParent(transform)
        return transformNode

    def test_nonLinearParentTransform(self) -> None:
        """Under a non-linear transform that keeps the slices evenly spaced the synthesis runs with a warning and
        the result goes under the same transform; one that spaces them unevenly is refused before it starts."""
        self.delayDisplay("Non-linear parent transform")
        voxels = (np.arange(5 * 20 * 20, dtype=np.int16).reshape(5, 20, 20) % 300) - 100
        inputVolume = slicer.util.addVolumeFromArray(voxels, np.diag([2.0, 2.0, 6.0, 1.0]), "thick")
        inPlane = self._gridTransform(lambda p: np.stack([3.0 * np.sin(p[:, 1] / 15.0), 0 * p[:, 1], 0 * p[:, 1]], 1),
                                      "in-plane warp")
        stretch = self._gridTransform(lambda p: np.stack([0 * p[:, 2], 0 * p[:, 2], 0.004 * p[:, 2] ** 2], 1),
                                      "slice stretch")
        params = CTSliceSynthesisLogic().getParameterNode()
        params.inputVolume = inputVolume
        params.scale = 2
        inputVolume.SetAndObserveTransformNodeID(inPlane.GetID())
        logic = CTSliceSynthesisLogic()
        self.assertIsNone(logic.checkParameters(params))
        self.assertIn("in-plane warp", logic.describeOutput(params))
        job, outcome = self._completedJob(inputVolume, np.repeat(voxels, 2, axis=0)[:9])
        _outcome, outputs = logic.finishJob(job, outcome)
        self.assertEqual(outputs.outputVolume.GetTransformNodeID(), inPlane.GetID())
        self.assertFalse(outputs.outputVolume.GetParentTransformNode().IsTransformToWorldLinear())
        self.assertSlicesInPlace(outputs.outputVolume, inputVolume, 2)
        inputVolume.SetAndObserveTransformNodeID(stretch.GetID())
        self.assertIn("not equally spaced", logic.checkParameters(params))
        with self.assertRaises(InputError):
            logic.process(inputVolume, scale=2, device="cpu", adaptSteps=0)

    def test_refillExistingOutput(self) -> None:
        """Synthesizing into an existing volume fills it in place: the user's window/level stays, no new node is
        added, and the DICOM identity that cloning copied from the input is dropped."""
        self.delayDisplay("Refill an existing output")
        inputVolume, _matrix, voxels = self._obliqueVolume()
        inputVolume.SetAttribute("DICOM.instanceUIDs", "1.2.3")
        study = self._moveToStudy(inputVolume)
        existing = slicer.modules.volumes.logic().CloneVolumeWithoutImageData(slicer.mrmlScene, inputVolume, "mine")
        self.assertEqual(existing.GetAttribute("DICOM.instanceUIDs"), "1.2.3")  # what cloning leaves behind
        existing.CreateDefaultDisplayNodes()
        existing.GetDisplayNode().SetAutoWindowLevel(False)
        existing.GetDisplayNode().SetWindowLevel(80.0, 40.0)
        nodeCount = slicer.mrmlScene.GetNumberOfNodes()
        job, outcome = self._completedJob(inputVolume, np.repeat(voxels, 2, axis=0)[:7], outputVolume=existing)
        outcome, outputs = CTSliceSynthesisLogic().finishJob(job, outcome)
        self.assertEqual(outcome.status, "completed")
        self.assertIs(outputs.outputVolume, existing)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodeCount)
        self.assertEqual((existing.GetDisplayNode().GetWindow(), existing.GetDisplayNode().GetLevel()), (80.0, 40.0))
        self.assertIsNone(existing.GetAttribute("DICOM.instanceUIDs"))
        self.assertEqual(existing.GetAttribute("CTSliceSynthesis.scale"), "2")
        self.assertSlicesInPlace(existing, inputVolume, 2)
        self.assertInStudy(existing, study)

    def test_inputRemovedDuringRun(self) -> None:
        """If the input leaves the scene while the process runs, the run fails with a message and adds nothing."""
        self.delayDisplay("Input removed during a run")
        inputVolume, _matrix, voxels = self._obliqueVolume()
        job, outcome = self._completedJob(inputVolume, np.repeat(voxels, 2, axis=0)[:7])
        slicer.mrmlScene.RemoveNode(inputVolume)
        nodeCount = slicer.mrmlScene.GetNumberOfNodes()
        outcome, outputs = CTSliceSynthesisLogic().finishJob(job, outcome)
        self.assertEqual(outcome.status, "failed")
        self.assertIn("removed", outcome.message)
        self.assertIsNone(outputs)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodeCount)
        self.assertFalse(os.path.exists(job.workDir))

    def test_parameterNodeSavedAndReloaded(self) -> None:
        """The module's choices survive saving the scene to a .mrml file and loading it again."""
        self.delayDisplay("Parameter node in a saved scene")
        inputVolume, _matrix, voxels = self._obliqueVolume()
        sceneDir = tempfile.mkdtemp(prefix="CTSliceSynthesisTest-", dir=slicer.app.temporaryPath)
        try:
            self.assertTrue(slicer.util.saveNode(inputVolume, os.path.join(sceneDir, "thick.nrrd")))
            params = CTSliceSynthesisLogic().getParameterNode()
            params.inputVolume = inputVolume
            params.scale = 3
            params.thickAxis = "K"
            params.sliceThicknessMm = 6.5
            params.adaptToScan = False
            params.orientation = "Axial"
            params.checkpointPath = pathlib.Path(sceneDir) / "weights.pt"
            sceneFile = os.path.join(sceneDir, "scene.mrml")
            slicer.mrmlScene.SetURL(sceneFile)
            self.assertTrue(slicer.mrmlScene.Commit(sceneFile))
            slicer.mrmlScene.Clear(0)
            self.assertIsNone(slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode"))
            slicer.mrmlScene.SetURL(sceneFile)
            self.assertTrue(slicer.mrmlScene.Import())
            reloaded = CTSliceSynthesisLogic().getParameterNode()
            self.assertEqual(reloaded.inputVolume.GetName(), "thick")
            np.testing.assert_array_equal(slicer.util.arrayFromVolume(reloaded.inputVolume), voxels[::-1])
            self.assertEqual((reloaded.scale, reloaded.thickAxis, reloaded.sliceThicknessMm, reloaded.adaptToScan,
                              reloaded.orientation), (3, "K", 6.5, False, "Axial"))
            self.assertEqual(reloaded.checkpointPath, pathlib.Path(sceneDir) / "weights.pt")
            self.assertIsNone(CTSliceSynthesisLogic().checkParameters(reloaded))
        finally:
            shutil.rmtree(sceneDir, ignore_errors=True)

    def test_comparisonLayout(self) -> None:
        """Linked side-by-side views with a main window; nothing (and no error) without one."""
        self.delayDisplay("Comparison layout")
        inputVolume, _matrix, _voxels = self._obliqueVolume("input")
        outputVolume, _matrix, _voxels = self._obliqueVolume("output")
        shown = layout.show_comparison(inputVolume, outputVolume, "Coronal")
        if slicer.app.layoutManager() is None:
            self.assertFalse(shown)
            return
        self.assertTrue(shown)
        manager = slicer.app.layoutManager()
        self.assertEqual(manager.layout, layout.SIDE_BY_SIDE_LAYOUT)
        for viewName, volume in ((layout.INPUT_VIEW, inputVolume), (layout.OUTPUT_VIEW, outputVolume)):
            composite = manager.sliceWidget(viewName).mrmlSliceCompositeNode()
            self.assertEqual(composite.GetBackgroundVolumeID(), volume.GetID())
            self.assertTrue(composite.GetLinkedControl())

    def test_synthesisBlocking(self) -> None:
        """The whole pipeline through the background process, with a small untrained model on the CPU."""
        torchNeeded, packages = dependencies.missing_dependencies(CTSliceSynthesisLogic.requirementsPath())
        if torchNeeded or packages:
            self.skipTest("torch or the engine's Python packages are not installed")
        self.delayDisplay("Synthesis in a background process")
        from CTSliceSynthesisLib.inference.model_store import create_model, save_model

        workDir = tempfile.mkdtemp(prefix="CTSliceSynthesisTest-", dir=slicer.app.temporaryPath)
        try:
            checkpoint = os.path.join(workDir, "lite_x2.pt")
            save_model(create_model("lite", 2), checkpoint)
            volumeFile = os.path.join(workDir, "thick.nrrd")
            created, _matrix, _voxels = self._obliqueVolume()
            self.assertTrue(slicer.util.saveNode(created, volumeFile))
            slicer.mrmlScene.RemoveNode(created)
            # Slicer's reader makes the left-handed IJK axes right-handed (K reversed): compare with what it loaded.
            inputVolume = slicer.util.loadVolume(volumeFile, {"name": "thick", "show": False})
            voxels = slicer.util.arrayFromVolume(inputVolume).copy()
            outputs = CTSliceSynthesisLogic().process(
                inputVolume, scale=2, checkpoint=checkpoint, device="cpu", adaptSteps=0, sliceThickness=6.0,
                withDisagreement=True)
        finally:
            shutil.rmtree(workDir, ignore_errors=True)
        result = slicer.util.arrayFromVolume(outputs.outputVolume)
        self.assertEqual(result.shape, (7, 24, 16))
        self.assertEqual(result.dtype, np.int16)
        np.testing.assert_array_equal(result[::2], voxels)
        _dimensions, inputMatrix = CTSliceSynthesisLogic.inputGeometry(inputVolume)
        _dimensions, outputMatrix = CTSliceSynthesisLogic.inputGeometry(outputs.outputVolume)
        for k in range(voxels.shape[0]):  # output slice 2k is where input slice k was
            np.testing.assert_allclose(outputMatrix @ [3, 5, 2 * k, 1], inputMatrix @ [3, 5, k, 1], atol=1e-4)
        self.assertEqual(outputs.outputVolume.GetName(), "thick synthesized ×2")
        self.assertEqual(slicer.util.arrayFromVolume(outputs.disagreementVolume).shape, (7, 24, 16))
        self.assertEqual((outputs.info["slice_thickness_mm"], outputs.info["thickness_source"]), (6.0, "given"))
        self.assertEqual(outputs.outputVolume.GetAttribute("CTSliceSynthesis.inputSliceThickness"), "6")
        self.delayDisplay("Test passed")
