"""Scoring synthesis against thin-slice truth: simulate thick slices, synthesize, compare (spec §9.5)."""

from __future__ import annotations

from typing import Dict

import numpy as np
import torch

from .degradation import direct_sampling, trim_to_multiple
from .inference import synthesize_volume
from .metrics import psnr
from .model_store import SynthesisModel
from .nets import SynthesisNetworks
from .views import new_positions


def psnr_after_downsampling(
    networks: SynthesisNetworks, thin: np.ndarray, axis: int, scale: int, device: torch.device
) -> Dict[str, float]:
    """Trim ``thin`` so ``(L − 1) mod r = 0``, keep every r-th slice, synthesize, and return PSNR over all output
    slices and over the synthesized ones only. The networks' mode (train/eval) is restored afterwards."""
    truth = np.moveaxis(trim_to_multiple(thin, scale, axis), axis, 0)
    thick = direct_sampling(truth, scale, 0)
    was_training = networks.training
    networks.eval()
    try:
        model = SynthesisModel(networks=networks, model_id="validation", sha256=None, device=device)
        output = synthesize_volume(thick, scale, model, axis=0).volume
    finally:
        networks.train(was_training)
    synthesized = np.zeros(truth.shape[0], dtype=bool)
    synthesized[new_positions(truth.shape[0], scale).numpy()] = True
    return {
        "psnr_all": psnr(output, truth),
        "psnr_synthesized": psnr(output[synthesized], truth[synthesized]),
    }
