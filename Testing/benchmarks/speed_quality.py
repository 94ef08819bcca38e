"""Quality guard for the synthesis speed levers: each lever on its own against the engine with every lever off,
on the thin evaluation volumes (not part of the test suite).

    python Testing/benchmarks/speed_quality.py [--levers run_cropping] [--scales 2 4]

For each evaluation volume in ``../shared/data/ct`` and scale: thick slices simulated as ``evaluate`` does by
default (``direct``: every r-th slice), the default synthesis without adaptation (``pint`` fusion, default
precision), PSNR against the thin truth (``evaluation.metrics.psnr``, all slices, HU) with the lever off and on,
the change (held to :data:`TOLERANCE_DB`), the largest and the mean absolute change inside the body
(``synthesis.body_mask``) and the synthesis seconds of both. Writes ``speed_quality.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "CTSliceSynthesis"))
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402

from CTSliceSynthesisLib.cli.evaluate import spacing_and_axis  # noqa: E402
from CTSliceSynthesisLib.evaluation.metrics import psnr  # noqa: E402
from CTSliceSynthesisLib.evaluation.scoring import simulate_thick  # noqa: E402
from CTSliceSynthesisLib.inference import synthesis  # noqa: E402
from CTSliceSynthesisLib.inference.fusion import fusion_weights  # noqa: E402
from CTSliceSynthesisLib.inference.model_store import load_model  # noqa: E402
from CTSliceSynthesisLib.io.nifti import read_nifti  # noqa: E402
from run_benchmarks import markdown_table  # noqa: E402

DATA_DIR = HERE.parents[2] / "shared" / "data" / "ct"
VOLUMES = ("chest_lungfcp_1p0mm", "head_phantom_1p0mm", "head_invesalius_1p5mm", "thorax_cta_crop_1p5mm")
TOLERANCE_DB = 0.05
# Each lever: the module attributes that switch it (value off, value on).
LEVERS: Dict[str, List[tuple]] = {
    "run_cropping": [(synthesis, "RUN_CROPPING", False, True)],
}


def set_levers(on: Sequence[str]) -> None:
    """Every known lever off, then those in ``on`` on."""
    for name, switches in LEVERS.items():
        for module, attribute, off_value, on_value in switches:
            if hasattr(module, attribute):
                setattr(module, attribute, on_value if name in on else off_value)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=Path("benchmark_results"))
    parser.add_argument("--levers", nargs="+", default=list(LEVERS), choices=list(LEVERS))
    parser.add_argument("--scales", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--volumes", nargs="+", default=list(VOLUMES))
    args = parser.parse_args(argv)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.volumes:
        path = DATA_DIR / f"{name}.nii.gz"
        if not path.is_file():
            continue
        volume = read_nifti(path)
        _, axis = spacing_and_axis(volume.affine, path.name, None)
        for scale in args.scales:
            model = load_model(None, scale, "cpu")
            truth, thick = simulate_thick(volume.data, scale, axis, "direct", 0)
            body = synthesis.body_mask(np.moveaxis(thick, axis, 0).astype(np.float32))
            outputs, seconds = {}, {}
            for lever in ["none"] + list(args.levers):
                set_levers([] if lever == "none" else [lever])
                started = time.perf_counter()
                outputs[lever] = synthesize(thick, scale, model, axis)
                seconds[lever] = time.perf_counter() - started
            set_levers(list(LEVERS))
            reference = psnr(outputs["none"], truth)
            for lever in args.levers:
                change = np.abs(np.moveaxis(outputs[lever], axis, 0).astype(np.float32)
                                - np.moveaxis(outputs["none"], axis, 0).astype(np.float32))[:, body]
                score = psnr(outputs[lever], truth)
                row = {"volume": name, "scale": scale, "lever": lever, "psnr_off": round(reference, 3),
                       "psnr_on": round(score, 3), "delta_db": round(score - reference, 4),
                       "within_tolerance": abs(score - reference) <= TOLERANCE_DB,
                       "body_max_abs_hu": round(float(change.max()), 3),
                       "body_mean_abs_hu": round(float(change.mean()), 4),
                       "seconds_off": round(seconds["none"], 2), "seconds_on": round(seconds[lever], 2)}
                print(json.dumps(row), flush=True)
                rows.append(row)
    (args.output_dir / "speed_quality.json").write_text(json.dumps(rows, indent=2))
    (args.output_dir / "speed_quality.md").write_text(
        f"Each lever alone against every lever off; thick = every r-th slice, no adaptation, `pint` fusion. "
        f"Tolerance {TOLERANCE_DB} dB.\n\n" + markdown_table(rows))
    print(markdown_table(rows))
    return 0 if all(row["within_tolerance"] for row in rows) else 1


def synthesize(thick: np.ndarray, scale: int, model, axis: int) -> np.ndarray:
    return synthesis.synthesize_volume(thick, scale, model, axis=axis, fusion=fusion_weights("pint")).volume


if __name__ == "__main__":
    sys.exit(main())
