"""Issue 18's speed targets, in one run next to z-only cubic on the same machine (not part of the test suite).

    python Testing/benchmarks/speed_targets.py [--output-dir benchmark_results] [--baseline-engine DIR]

Each row is a fresh process (``ct-slice-synthesis synthesize``, or ``cubic_child.py`` for z-only cubic B-spline
interpolation with the same reading and writing), timed end to end with its peak RSS from ``wait4``:

1. ×2 of the first 100 slices of the real chest CT ``chest_4dct_2p0mm`` (512×512×100, ``.nii.gz`` in and out):
   z-only cubic; the default command (its default adaptation budget); the default command without adaptation.
   Targets: at most 8× and 5× cubic.
2. Peak memory of a 512×512×400 ×4 run without adaptation (the volume: the real chest's slices concatenated
   along z, written to a temporary file), with this engine and, given ``--baseline-engine`` (the
   ``CTSliceSynthesis`` folder of an earlier version), with that one: it must not grow.

Cubic and the synthesis rows alternate (cubic is run before and after, and the mean is the reference), and the
load average is recorded: other work on the machine inflates every number. Writes ``speed_targets.json`` and
``speed_targets.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence

HERE = Path(__file__).resolve().parent
ENGINE_ROOT = HERE.parents[1] / "CTSliceSynthesis"
sys.path.insert(0, str(ENGINE_ROOT))
sys.path.insert(0, str(HERE))

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402

from CTSliceSynthesisLib.core.config import DEFAULT_ADAPT_STEPS  # noqa: E402
from run_benchmarks import markdown_table, report_header, run_child  # noqa: E402

DATA_DIR = HERE.parents[2] / "shared" / "data" / "ct"
REAL_CT = "chest_4dct_2p0mm.nii.gz"
TARGET_WITH_ADAPTATION, TARGET_WITHOUT = 8.0, 5.0


def synthesize_command(source: Path, output: Path, scale: int, extra: Sequence[str]) -> List[str]:
    return [sys.executable, "-m", "CTSliceSynthesisLib.cli", "synthesize", "--input", str(source), "--output",
            str(output), "--scale", str(scale), "--overwrite", *extra]


def timed(command: Sequence[str], engine: Path) -> Dict[str, object]:
    """``run_benchmarks.run_child`` with ``engine`` on the path."""
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(engine)
    try:
        result = run_child(command)
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old
    result["load_average"] = round(os.getloadavg()[0], 2)
    return result


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=Path("benchmark_results"))
    parser.add_argument("--baseline-engine", type=Path, help="CTSliceSynthesis folder of the version to compare")
    parser.add_argument("--skip-memory", action="store_true", help="skip the 512×512×400 ×4 memory rows")
    parser.add_argument("--precision", default="auto",
                        help="passed to synthesize (fp32 shows a CPU without native bf16 where auto picks bf16)")
    args = parser.parse_args(argv)
    precision = ["--precision", args.precision]
    path = DATA_DIR / REAL_CT
    if not path.is_file():
        print(f"{path} not found")
        return 1
    args.output_dir.mkdir(parents=True, exist_ok=True)
    report = report_header()
    adapt_label = f"default adaptation ({DEFAULT_ADAPT_STEPS} steps)"
    rows: List[Dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="ctss-targets-") as scratch:
        work = Path(scratch)
        image = nib.load(str(path))
        chest = np.asarray(image.dataobj).astype(np.int16)
        source = work / "chest_100.nii.gz"
        nib.save(nib.Nifti1Image(chest[:, :, :100], image.affine, image.header), str(source))
        output = work / "out.nii.gz"
        cubic = [sys.executable, str(HERE / "cubic_child.py"), str(source), str(output), "2"]
        runs = [("z-only cubic", cubic), (adapt_label, synthesize_command(source, output, 2, precision)),
                ("z-only cubic", cubic),
                ("without adaptation", synthesize_command(source, output, 2, ["--adapt-seconds", "0", *precision])),
                ("z-only cubic", cubic)]
        results = []
        for label, command in runs:
            result = timed(command, ENGINE_ROOT)
            results.append((label, result))
            print(label, round(float(result["wall_s"]), 2), "s", flush=True)
        cubic_s = float(np.mean([float(r["wall_s"]) for label, r in results if label == "z-only cubic"]))
        for label, result in results:
            if label == "z-only cubic":
                continue
            target = TARGET_WITH_ADAPTATION if label.startswith("default") else TARGET_WITHOUT
            rows.append({"run": f"×2 512×512×100 chest, {label}", "precision": args.precision,
                         "wall_s": round(float(result["wall_s"]), 2),
                         "z_only_cubic_s": round(cubic_s, 2), "times_cubic": round(float(result["wall_s"]) / cubic_s, 2),
                         "target_times_cubic": target, "met": float(result["wall_s"]) / cubic_s <= target,
                         "peak_rss_gib": round(float(result["peak_rss_gib"]), 3), "load_average": result["load_average"]})
        report["cubic_runs_s"] = [round(float(r["wall_s"]), 2) for label, r in results if label == "z-only cubic"]
        memory_rows: List[Dict[str, object]] = []
        if not args.skip_memory:
            repeats = -(-400 // chest.shape[2])
            big = np.concatenate([chest] * repeats, axis=2)[:, :, :400]
            big_source = work / "chest_400.nii"
            nib.save(nib.Nifti1Image(big, image.affine, image.header), str(big_source))
            del big, chest
            engines = [("this version", ENGINE_ROOT)]
            if args.baseline_engine is not None:
                engines.insert(0, ("baseline", args.baseline_engine.resolve()))
            for label, engine in engines:
                flags = ["--adapt-seconds", "0", "--quiet", *precision]
                command = synthesize_command(big_source, work / "big.nii", 4, flags)
                result = timed(command, engine)
                memory_rows.append({"run": f"×4 512×512×400 without adaptation, {label}", "engine": str(engine),
                                    "wall_s": round(float(result["wall_s"]), 2),
                                    "peak_rss_gib": round(float(result["peak_rss_gib"]), 3),
                                    "load_average": result["load_average"]})
                print(json.dumps(memory_rows[-1], ensure_ascii=False), flush=True)
    report["targets"] = rows
    report["memory"] = memory_rows
    report["load_average_end"] = os.getloadavg()
    (args.output_dir / "speed_targets.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    text = (f"Machine: {json.dumps(report['machine'], ensure_ascii=False)}, {report['date']}; load average at start "
            f"{report['load_average_start']}, at end {report['load_average_end']}\n\n" + markdown_table(rows)
            + f"\nz-only cubic runs (s): {report['cubic_runs_s']} (their mean is the reference).\n\n"
            + markdown_table(memory_rows))
    (args.output_dir / "speed_targets.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
