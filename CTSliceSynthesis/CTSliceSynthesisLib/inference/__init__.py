"""Whole-volume synthesis (``synthesis``), the fusion of the views (``fusion``) and its per-volume calibration
(``calibration``), models ready for inference with their devices and bundled weights (``model_store``),
arithmetic precision (``precision``), and the file-to-file run that the command line and the Slicer module's
background process share (``pipeline``). Imports ``core``, ``nets``, ``io`` and ``training``."""

from .calibration import Calibration, calibrate_fusion, calibrated_weights, describe
from .fusion import CANDIDATES, VIEWS, FusionWeights
from .model_store import SynthesisModel, create_model, load_model, prepare_model, resolve_device, save_model
from .pipeline import PipelineOptions, PipelineResult, RunInfo, run_pipeline
from .precision import resolve_precision
from .synthesis import SynthesisResult, synthesize_volume

__all__ = [
    "CANDIDATES",
    "Calibration",
    "FusionWeights",
    "PipelineOptions",
    "PipelineResult",
    "RunInfo",
    "SynthesisModel",
    "SynthesisResult",
    "VIEWS",
    "calibrate_fusion",
    "calibrated_weights",
    "create_model",
    "describe",
    "load_model",
    "prepare_model",
    "resolve_device",
    "resolve_precision",
    "run_pipeline",
    "save_model",
    "synthesize_volume",
]
