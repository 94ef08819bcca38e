"""The performance benchmark: one command, one run, one table (not part of the test suite).

    python Testing/benchmarks/run_benchmarks.py [--output-dir benchmark_results]

Measures on the current machine:
1. ``ct-slice-synthesis synthesize`` end to end (a fresh process: start-up, reading, synthesis, writing) for
   512 × 512 × {36, 100, 400} phantoms at ×2 and ×4 with the bundled ``lite`` weights, the ``paper`` preset
   where it fits in time, and z-only cubic B-spline interpolation with the same reading and writing: wall time
   and peak resident memory (of that process alone, from ``wait4``). Without adaptation (``--adapt-steps 0``):
   the speed targets are for the synthesis; adapting to the scan, on by default, adds its own steps;
2. the engine's convolution throughput (network FLOPs / synthesis time) against a plain 3×3 conv stack of the
   same shapes, precision and layout measured in the same run (the efficiency), for the default precision and
   for float32;
3. training steps per second for ``lite`` and ``paper`` at the default patch and batch;
4. PSNR of the default settings against float32 on the evaluation volumes (``../shared/data/ct``);
and, when torch sees a CUDA GPU, the synthesis rows again on it. Writes ``results.json`` and ``results.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
ENGINE_ROOT = REPO_ROOT / "CTSliceSynthesis"
sys.path.insert(0, str(ENGINE_ROOT))
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from CTSliceSynthesisLib.core.config import DEFAULT_ADAPT_STEPS  # noqa: E402
from CTSliceSynthesisLib.inference.model_store import create_model, load_model, save_model  # noqa: E402
from CTSliceSynthesisLib.inference.precision import cpu_has_native_bf16  # noqa: E402
from CTSliceSynthesisLib.inference.synthesis import synthesize_volume  # noqa: E402
from phantom import phantom_volume, write_phantom  # noqa: E402
from quality import quality_rows  # noqa: E402
from throughput import engine_flops, reference_throughput, synchronize  # noqa: E402

DATA_DIR = REPO_ROOT.parent / "shared" / "data" / "ct"
GIB = 1024.0**3


def run_child(command: Sequence[str]) -> Dict[str, object]:
    """Run ``command`` as a fresh process: its wall time, peak RSS (GiB, that process alone) and stdout."""
    environment = dict(os.environ, PYTHONPATH=str(ENGINE_ROOT))
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        child = subprocess.Popen(list(command), stdout=out, stderr=err, env=environment)
        _, status, usage = os.wait4(child.pid, 0)  # reaped here, so the rusage is this child's own
        wall = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if child.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, command[:5]))} ... exited {child.returncode}: {stderr.strip()[-400:]}")
    unit = 1.0 if sys.platform == "darwin" else 1024.0  # ru_maxrss: bytes on macOS, KiB on Linux
    return {"wall_s": wall, "peak_rss_gib": usage.ru_maxrss * unit / GIB, "stdout": stdout}


def report_header(**extra: object) -> Dict[str, object]:
    """The start of a CPU benchmark report: the machine, the date, ``extra`` and the load average now."""
    return {"machine": machine_description(torch.device("cpu")), "date": time.strftime("%Y-%m-%d"), **extra,
            "load_average_start": os.getloadavg()}


def machine_description(device: torch.device) -> Dict[str, object]:
    """CPU model, cores, torch build and threads, native bf16, and the GPU if one is used."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info: Dict[str, object] = {
        "cpu": model,
        "cores": cores,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB, 1),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_native_bf16": cpu_has_native_bf16(),
        "python": platform.python_version(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def synthesis_rows(
    work: Path, sizes: Sequence[int], scales: Sequence[int], paper_sizes: Sequence[int], device: str, say
) -> List[Dict[str, object]]:
    """End-to-end ``synthesize`` without adaptation (lite, paper where asked) and z-only cubic for each size and
    scale."""
    paper_checkpoint = work / "paper_untrained_x{scale}.pt"
    rows = []
    for slices in sizes:
        source = write_phantom(work / f"phantom_{slices}.nii", slices)
        for scale in scales:
            output = work / "output.nii"
            output_gib = 512 * 512 * ((slices - 1) * scale + 1) * 4 / GIB
            cubic = run_child([sys.executable, str(HERE / "cubic_child.py"), str(source), str(output), str(scale)])
            output.unlink()
            rows.append(_row("z-only cubic", slices, scale, device, cubic, output_gib, cubic["wall_s"]))
            say(rows[-1])
            presets = ["lite"] + (["paper"] if slices in paper_sizes else [])
            for preset in presets:
                command = [sys.executable, "-m", "CTSliceSynthesisLib.cli", "synthesize", "--input", str(source),
                           "--output", str(output), "--scale", str(scale), "--device", device, "--quiet",
                           "--adapt-steps", "0"]  # the speed targets are without adaptation
                if preset == "paper":
                    checkpoint = Path(str(paper_checkpoint).format(scale=scale))
                    if not checkpoint.exists():  # speed does not depend on the weights: untrained paper nets
                        save_model(create_model("paper", scale), checkpoint)
                    command += ["--model", str(checkpoint)]
                result = run_child(command)
                output.unlink()
                rows.append(_row(preset, slices, scale, device, result, output_gib, cubic["wall_s"]))
                say(rows[-1])
        source.unlink()
    return rows


REAL_CT = "chest_4dct_2p0mm.nii.gz"  # a real 512² chest CT; its first REAL_CT_SLICES slices are benchmarked
REAL_CT_SLICES = 100


def real_ct_rows(work: Path, scales: Sequence[int], device: str, say) -> List[Dict[str, object]]:
    """End-to-end ``synthesize`` on the first 100 slices of a real chest CT from ``../shared/data/ct``: z-only
    cubic, the default command without adaptation with ``.nii`` and ``.nii.gz`` output, and the default command
    (adaptation included) at ×2. Empty without ``../shared``."""
    import nibabel as nib

    path = DATA_DIR / REAL_CT
    if not path.is_file():
        return []
    image = nib.load(str(path))
    data = np.asarray(image.dataobj[:, :, :REAL_CT_SLICES]).astype(np.int16)
    source = work / "real_ct_100.nii"
    nib.save(nib.Nifti1Image(data, image.affine, image.header), str(source))
    rows: List[Dict[str, object]] = []
    label = f"{REAL_CT} (first {REAL_CT_SLICES} slices)"
    for scale in scales:
        output_gib = 512 * 512 * ((REAL_CT_SLICES - 1) * scale + 1) * 4 / GIB
        output = work / "output.nii"
        cubic = run_child([sys.executable, str(HERE / "cubic_child.py"), str(source), str(output), str(scale)])
        output.unlink()
        rows.append({**_row("z-only cubic", REAL_CT_SLICES, scale, device, cubic, output_gib, cubic["wall_s"]),
                     "volume": label})
        say(rows[-1])
        runs = [(".nii", "0"), (".nii.gz", "0")] + ([(".nii.gz", None)] if scale == 2 else [])
        for suffix, adapt in runs:
            output = work / f"output{suffix}"
            command = [sys.executable, "-m", "CTSliceSynthesisLib.cli", "synthesize", "--input", str(source),
                       "--output", str(output), "--scale", str(scale), "--device", device, "--quiet"]
            command += ["--adapt-steps", adapt] if adapt is not None else []
            result = run_child(command)
            output.unlink()
            default = f", default (adapts {DEFAULT_ADAPT_STEPS} steps)"
            method = f"lite → {suffix}" + (", no adaptation" if adapt is not None else default)
            rows.append({**_row(method, REAL_CT_SLICES, scale, device, result, output_gib, cubic["wall_s"]),
                         "volume": label})
            say(rows[-1])
    source.unlink()
    return rows


def _row(method: str, slices: int, scale: int, device: str, result: Dict[str, object], output_gib: float,
         cubic_wall: float) -> Dict[str, object]:
    return {
        "method": method,
        "volume": f"512×512×{slices}",
        "scale": scale,
        "device": device,
        "wall_s": round(float(result["wall_s"]), 2),
        "times_cubic": round(float(result["wall_s"]) / cubic_wall, 2),
        "peak_rss_gib": round(float(result["peak_rss_gib"]), 2),
        "rss_over_output_f32": round(float(result["peak_rss_gib"]) / output_gib, 2),
    }


def throughput_rows(device: str, slices: int = 100, scale: int = 2) -> List[Dict[str, object]]:
    """Engine FLOP/s on a 512 × 512 × ``slices`` volume (in process, synthesis only) against plain conv stacks,
    for the default precision and for float32."""
    volume = phantom_volume(slices)
    rows = []
    for precision in ("auto", "fp32"):
        model = load_model(None, scale, device, precision=precision)
        synthesize_volume(volume[:64, :64, :8], scale, model)  # warm-up: kernels and the cubic matrices
        started = time.perf_counter()
        synthesize_volume(volume, scale, model)
        synchronize(model.device)
        seconds = time.perf_counter() - started
        flops = engine_flops(model, slices)
        reference = reference_throughput(model, slices, cpu_has_native_bf16() or model.device.type == "cuda")
        wide = reference.wide_bf16 if model.precision is not None and reference.wide_bf16 else reference.wide_fp32
        rows.append({
            "precision": model.precision_name,
            "volume": f"512×512×{slices} ×{scale}",
            "synthesis_s": round(seconds, 2),
            "network_gflop": round(flops.total / 1e9, 1),
            "sint_gflop": round(flops.sint / 1e9, 1),
            "pint_gflop": round(flops.pint / 1e9, 1),
            "engine_gflops": round(flops.total / seconds / 1e9, 1),
            "stack_gflops_sint_shape": round(reference.sint_shape / 1e9, 1),
            "stack_gflops_pint_shape": round(reference.pint_shape / 1e9, 1),
            "efficiency_same_shapes": round(reference.time_for(flops) / seconds, 3),
            "stack_gflops_wide": round(wide / 1e9, 1),
            "efficiency_vs_wide": round(flops.total / seconds / wide, 3),
        })
    return rows


TRAINING_STAGES = ("pint", "sint", "joint")


def training_rows(device: str, paper_steps: int, lite_steps: int) -> List[Dict[str, object]]:
    """Training throughput (steps/s, steps/h, patches/s) and peak RSS of each preset and stage at the default
    settings: PInt alone on in-plane pairs, SInt-A alone, and the joint cross-view objective."""
    rows = []
    for preset, steps in (("lite", lite_steps), ("paper", paper_steps)):
        if steps <= 0:
            continue
        for stage in TRAINING_STAGES:
            command = [sys.executable, str(HERE / "training_child.py"), preset, str(steps), device, stage]
            result = run_child(command)
            row = json.loads(str(result["stdout"]).strip().splitlines()[-1])
            row.update(device=device, peak_rss_gib=round(float(result["peak_rss_gib"]), 2))
            row["steps_per_h"] = round(row["steps_per_s"] * 3600)
            row["patches_per_s"] = round(row["steps_per_s"] * row["patches_per_step"], 2)
            row["steps_per_s"] = round(row["steps_per_s"], 4)
            rows.append(row)
    return rows


def markdown_table(rows: List[Dict[str, object]]) -> str:
    """Rows of dicts with the same keys as a Markdown table."""
    if not rows:
        return "(none)\n"
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(_cell(row.get(key)) for key in keys) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1 else f"{value:.4g}"
    return str(value)


def build_parser() -> argparse.ArgumentParser:
    """Command-line options; the defaults are the issue's benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=Path("benchmark_results"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[36, 100, 400], help="slices of the 512² volumes")
    parser.add_argument("--scales", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--paper-sizes", type=int, nargs="*", default=[36], help="sizes also run with paper")
    parser.add_argument("--paper-train-steps", type=int, default=2)
    parser.add_argument("--lite-train-steps", type=int, default=5)
    parser.add_argument("--skip-quality", action="store_true", help="skip the PSNR check (needs ../shared)")
    parser.add_argument("--gpu", choices=("auto", "off"), default="auto", help="also run on CUDA if present")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run every section and write ``results.json`` and ``results.md``."""
    args = build_parser().parse_args(argv)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    devices = ["cpu"] + (["cuda"] if args.gpu == "auto" and torch.cuda.is_available() else [])
    report: Dict[str, object] = {"machine": machine_description(torch.device(devices[-1])), "date": time.strftime("%Y-%m-%d")}
    say = lambda row: print(json.dumps(row, ensure_ascii=False), flush=True)  # noqa: E731
    say(report["machine"])
    with tempfile.TemporaryDirectory(prefix="ctss-bench-") as scratch:
        report["synthesis"] = []
        for device in devices:
            paper_sizes = args.paper_sizes if device == "cpu" else args.sizes
            report["synthesis"] += synthesis_rows(Path(scratch), args.sizes, args.scales, paper_sizes, device, say)
        report["real CT"] = real_ct_rows(Path(scratch), args.scales, "cpu", say)
    report["throughput"] = [row for device in devices for row in throughput_rows(device)]
    for row in report["throughput"]:
        say(row)
    report["training"] = [
        row for device in devices for row in training_rows(device, args.paper_train_steps, args.lite_train_steps)
    ]
    for row in report["training"]:
        say(row)
    report["quality"] = [] if args.skip_quality or not DATA_DIR.is_dir() else quality_rows(DATA_DIR, args.scales, "cpu")
    for row in report["quality"]:
        say(row)
    (args.output_dir / "results.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    markdown = [f"Machine: {json.dumps(report['machine'], ensure_ascii=False)}, {report['date']}\n"]
    for section in ("synthesis", "real CT", "throughput", "training", "quality"):
        markdown += [f"\n### {section}\n\n", markdown_table(report[section])]  # type: ignore[arg-type]
        if section in ("synthesis", "real CT"):
            markdown.append("\n`synthesize` rows: without adaptation to the scan (`--adapt-steps 0`).\n")
    (args.output_dir / "results.md").write_text("".join(markdown))
    print("".join(markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
