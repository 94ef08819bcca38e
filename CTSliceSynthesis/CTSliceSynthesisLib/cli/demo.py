"""``ct-slice-synthesis demo``: simulate thick slices from a real thin-slice CT, synthesize them back, compare.

Writes the synthesized NIfTI and a comparison PNG (thick input, cubic, ours, truth, disagreement) and prints
PSNR against the truth for ours, cubic B-spline and linear interpolation.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Dict

import numpy as np

from ..core.config import PRECISION_HELP, PRECISIONS


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``demo``."""
    parser.add_argument("--input", type=Path, help="thin-slice CT (default: the InVesalius head CT, fetched once)")
    parser.add_argument("--scale", type=int, default=4, help="thick-slice factor to simulate (default 4)")
    parser.add_argument("--model", type=Path, help="checkpoint (default: the bundled model for --scale)")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or mps")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto", help=PRECISION_HELP)
    parser.add_argument("--output-dir", type=Path, default=Path("demo_output"), help="default ./demo_output")


def run_demo(args: argparse.Namespace) -> int:
    """Run the demo; returns 0."""
    from ..core.degradation import direct_sampling, trim_to_multiple
    from ..core.geometry import thick_axis, upsampled_affine, voxel_spacing
    from ..core.interpolation import upsample_cubic, upsample_linear
    from ..evaluation.figures import comparison_figure
    from ..inference.model_store import load_model
    from ..inference.synthesis import synthesize_volume
    from ..io.nifti import read_nifti, write_nifti
    from ..io.sample_data import cranium_path

    source = args.input if args.input is not None else cranium_path()
    thin = read_nifti(source)
    axis = thick_axis(voxel_spacing(thin.affine))
    truth = trim_to_multiple(thin.data, args.scale, axis).astype(np.float32)
    thick = direct_sampling(truth, args.scale, axis)
    model = load_model(args.model, args.scale, args.device, precision=args.precision)
    print(f"{source.name}: {truth.shape}, thick axis {axis}; simulated ×{args.scale} input {thick.shape}", file=sys.stderr)

    started = time.perf_counter()
    result = synthesize_volume(thick, args.scale, model, axis=axis, with_disagreement=True)
    seconds = time.perf_counter() - started
    outputs = {
        "ours": result.volume,
        "cubic": upsample_cubic(thick, args.scale, axis),
        "linear": upsample_linear(thick, args.scale, axis),
    }
    scores = score_all(outputs, truth, args.scale, axis)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    thick_affine = thin.affine.copy()
    thick_affine[:3, axis] *= args.scale
    out_path = args.output_dir / f"synthesized_x{args.scale}.nii.gz"
    write_nifti(out_path, result.volume, upsampled_affine(thick_affine, axis, args.scale), thin.header)
    figure = args.output_dir / f"comparison_x{args.scale}.png"
    comparison_figure(figure, thick, outputs, truth, result.disagreement, args.scale, axis, voxel_spacing(thin.affine))
    print(f"model {model.model_id} ({model.preset}) on {model.device}: {seconds:.1f} s", file=sys.stderr)
    print(f"{'method':8s} {'PSNR all':>9s} {'PSNR new':>9s}   (dB, [-1024, 3072] HU → [0, 1])")
    for name, score in scores.items():
        print(f"{name:8s} {score['psnr_all']:9.2f} {score['psnr_synthesized']:9.2f}")
    print(f"wrote {out_path} and {figure}")
    return 0


def score_all(outputs: Dict[str, np.ndarray], truth: np.ndarray, scale: int, axis: int) -> Dict[str, Dict[str, float]]:
    """PSNR over all slices and over synthesized slices for each method."""
    from ..evaluation.metrics import psnr
    from ..nets.views import new_positions

    synthesized = np.zeros(truth.shape[axis], dtype=bool)
    synthesized[new_positions(truth.shape[axis], scale).numpy()] = True
    scores = {}
    for name, output in outputs.items():
        new_output = np.compress(synthesized, output, axis=axis)
        new_truth = np.compress(synthesized, truth, axis=axis)
        scores[name] = {"psnr_all": psnr(output, truth), "psnr_synthesized": psnr(new_output, new_truth)}
    return scores
