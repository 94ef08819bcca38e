"""Quality guard for the speed-ups: PSNR of the default (fast) settings against the float32 reference on the
evaluation volumes, which must agree within 0.05 dB."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import numpy as np

from CTSliceSynthesisLib.cli.evaluate import spacing_and_axis
from CTSliceSynthesisLib.core.degradation import direct_sampling, trim_to_multiple
from CTSliceSynthesisLib.evaluation.metrics import psnr
from CTSliceSynthesisLib.inference.model_store import load_model
from CTSliceSynthesisLib.inference.synthesis import synthesize_volume
from CTSliceSynthesisLib.io.nifti import read_nifti

EVALUATION_VOLUMES = ("head_invesalius_1p5mm", "thorax_cta_crop_1p5mm", "chest_lungfcp_1p0mm")
TOLERANCE_DB = 0.05


def quality_rows(data_dir: Path, scales: List[int], device: str) -> List[Dict[str, object]]:
    """For each evaluation volume and scale: PSNR (all slices, HU) of the default precision and of float32."""
    rows = []
    for name in EVALUATION_VOLUMES:
        path = data_dir / f"{name}.nii.gz"
        if not path.is_file():
            continue
        volume = read_nifti(path)
        _, axis = spacing_and_axis(volume.affine, path.name, None)
        for scale in scales:
            truth = np.moveaxis(trim_to_multiple(volume.data, scale, axis), axis, 0)
            thick = direct_sampling(truth, scale, 0)
            scores = {}
            for precision in ("auto", "fp32"):
                model = load_model(None, scale, device, precision=precision)
                output = synthesize_volume(thick, scale, model, axis=0).volume
                scores[precision] = (model.precision_name, psnr(output, truth))
            (fast_name, fast), (_, reference) = scores["auto"], scores["fp32"]
            rows.append({
                "volume": name,
                "scale": scale,
                "default_precision": fast_name,
                "psnr_default": fast,
                "psnr_fp32": reference,
                "delta_db": fast - reference,
                "within_tolerance": abs(fast - reference) <= TOLERANCE_DB,
            })
    return rows
