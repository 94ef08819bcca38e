"""Names of the nodes and files the module creates, and the provenance it records on them."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

from .. import __version__

ATTRIBUTE_PREFIX = "CTSliceSynthesis."
METHOD = "Incremental cross-view mutual distillation (Fang et al., CVPR 2022)"


def output_node_name(input_name: str, scale: int) -> str:
    """Base name of the synthesized volume node, e.g. ``CT chest synthesized ×2`` (the scene makes it unique)."""
    return f"{input_name or 'Volume'} synthesized ×{scale}"


def disagreement_node_name(input_name: str, scale: int) -> str:
    """Base name of the disagreement-map volume node that goes with :func:`output_node_name`."""
    return f"{output_node_name(input_name, scale)} disagreement"


def output_file_name(input_path: Path, scale: int, extension: str) -> str:
    """File name of a batch output: the input's stem, ``_synthesized_x<r>``, then ``extension`` (e.g. ``.nrrd``)."""
    name = input_path.name
    stem = name[: -len(".nii.gz")] if name.lower().endswith(".nii.gz") else input_path.stem
    return f"{stem}_synthesized_x{scale}{extension}"


def is_source_attribute(name: str) -> bool:
    """Whether an attribute cloned from the input describes the acquired series (e.g. ``DICOM.instanceUIDs``) and
    must not be carried over to a synthetic volume."""
    return name.startswith("DICOM.")


def provenance_attributes(
    *,
    scale: int,
    axis_name: str,
    model_id: str,
    model_sha256: Optional[str],
    preset: str,
    device: str,
    input_name: str,
    adapt_steps: int = 0,
    adapted_steps: int = 0,
    adapt_seed: Optional[int] = None,
    adapt_capped: bool = False,
    adapt_seconds: Optional[float] = None,
    slice_thickness: Optional[float] = None,
    thickness_source: Optional[str] = None,
) -> Dict[str, str]:
    """Node attributes saying how a synthesized volume was made (all values are strings, as MRML stores them):
    the weights, the adaptation (steps asked for and taken, seed, the optional wall-time cap and whether it cut
    the run short: then ``adaptReproducible`` is ``false``), and the input's slice thickness with its source."""
    return {
        ATTRIBUTE_PREFIX + "synthetic": "true",
        ATTRIBUTE_PREFIX + "method": METHOD,
        ATTRIBUTE_PREFIX + "engineVersion": __version__,
        ATTRIBUTE_PREFIX + "scale": str(int(scale)),
        ATTRIBUTE_PREFIX + "thickAxis": axis_name,
        ATTRIBUTE_PREFIX + "modelId": model_id,
        ATTRIBUTE_PREFIX + "modelSha256": model_sha256 or "",
        ATTRIBUTE_PREFIX + "modelPreset": preset,
        ATTRIBUTE_PREFIX + "device": device,
        ATTRIBUTE_PREFIX + "adaptBudgetSteps": str(int(adapt_steps)),
        ATTRIBUTE_PREFIX + "adaptedSteps": str(int(adapted_steps)),
        ATTRIBUTE_PREFIX + "adaptSeed": "" if adapt_seed is None else str(int(adapt_seed)),
        ATTRIBUTE_PREFIX + "adaptCapSeconds": "" if adapt_seconds is None else f"{float(adapt_seconds):g}",
        ATTRIBUTE_PREFIX + "adaptCapped": "true" if adapt_capped else "false",
        ATTRIBUTE_PREFIX + "adaptReproducible": "false" if adapt_capped else "true",
        ATTRIBUTE_PREFIX + "inputSliceThickness": "" if slice_thickness is None else f"{float(slice_thickness):.4g}",
        ATTRIBUTE_PREFIX + "inputSliceThicknessSource": thickness_source or "",
        ATTRIBUTE_PREFIX + "inputVolume": input_name,
    }
