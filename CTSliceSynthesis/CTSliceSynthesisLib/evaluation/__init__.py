"""Scoring synthesis against thin-slice truth (``scoring``: simulated thick slices, the classical baselines,
ablations), the image metrics (``metrics``), reports (``report``) and figures (``figures``). Imports every
package but ``cli``."""

from .figures import ReformatCrops, comparison_figure, save_evaluation_figure
from .metrics import psnr, saint_psnr, ssim_views
from .report import markdown_report, summarise, write_report
from .scoring import (
    ABLATIONS,
    BASELINES,
    METRICS,
    evaluate_volume,
    psnr_after_downsampling,
    score_volume,
    simulate_thick,
)

__all__ = [
    "ABLATIONS",
    "BASELINES",
    "METRICS",
    "ReformatCrops",
    "comparison_figure",
    "evaluate_volume",
    "markdown_report",
    "psnr",
    "psnr_after_downsampling",
    "saint_psnr",
    "score_volume",
    "simulate_thick",
    "ssim_views",
    "summarise",
    "write_report",
]
