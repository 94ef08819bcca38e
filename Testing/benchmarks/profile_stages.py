"""Where the time of a default ``synthesize`` goes, stage by stage (not part of the test suite).

    python Testing/benchmarks/profile_stages.py [--output-dir benchmark_results] [--scales 2 4]

Runs the default command's stages in one process on the first 100 slices of a real chest CT
(``../shared/data/ct/chest_4dct_2p0mm.nii.gz``, written to a temporary ``.nii.gz``) at each scale, with the
bundled weights and the default precision, and times each: read, thickness estimate, model load, adaptation
(``--adapt-steps`` steps, default the product's step budget), body region (box or per-image runs), classical
cubic base, PInt coronal, PInt sagittal, fusion and assembly (the rest of the synthesis), write ``.nii.gz``.
For the PInt stages it gives the FLOPs the network did (FLOPs per pixel counted by
``torch.utils.flop_counter`` on one full image, times the pixels PInt was actually given) and the achieved
GFLOP/s next to a plain stack of 16-channel 3×3 convolutions of the same image shape, layout and precision
measured in the same run. Z-only cubic of the same volume (read, interpolate, write) is timed in the same
process as the reference, and the machine's load average is recorded, since other work on the machine
inflates every number alike. Writes ``profile.json`` and ``profile.md``. ``CTSS_ENGINE=DIR`` profiles the engine in
``DIR`` (another version's ``CTSliceSynthesis`` folder) instead of this one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
# CTSS_ENGINE: the CTSliceSynthesis folder of another version to profile (e.g. a ``git archive`` of an earlier commit)
sys.path.insert(0, os.environ.get("CTSS_ENGINE", str(REPO_ROOT / "CTSliceSynthesis")))
sys.path.insert(0, str(HERE))

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from CTSliceSynthesisLib.core import config as engine_config  # noqa: E402
from CTSliceSynthesisLib.core.geometry import choose_axis, upsampled_affine  # noqa: E402
from CTSliceSynthesisLib.core.interpolation import upsample_cubic  # noqa: E402
from CTSliceSynthesisLib.inference import synthesis as synthesis_module  # noqa: E402
from CTSliceSynthesisLib.inference.model_store import load_model  # noqa: E402
from CTSliceSynthesisLib.inference.pipeline import provenance, slice_geometry, synthesize_scan  # noqa: E402
from CTSliceSynthesisLib.io.nifti import load_nifti, open_nifti, read_nifti, write_nifti  # noqa: E402
from CTSliceSynthesisLib.nets.pint import PixelInterpolator  # noqa: E402
from run_benchmarks import markdown_table, report_header  # noqa: E402
from throughput import conv_stack_throughput, count_flops  # noqa: E402

DATA_DIR = REPO_ROOT.parent / "shared" / "data" / "ct"
REAL_CT = "chest_4dct_2p0mm.nii.gz"
REAL_CT_SLICES = 100
ADAPT_STEPS = getattr(engine_config, "DEFAULT_ADAPT_STEPS", 100)


class StageClock:
    """Seconds per named stage, accumulated by wrapping the synthesis' internal functions."""

    def __init__(self) -> None:
        self.seconds: Dict[str, float] = defaultdict(float)
        self.pixels: Dict[str, int] = defaultdict(int)  # PInt input pixels per view
        self._view: Optional[str] = None
        self._counting = 0  # nesting depth of PInt calls (forward calls new_columns, not new_values)
        self._originals: List[tuple] = []

    def wrap(self, owner, name: str, stage) -> None:
        """Time every call of ``owner.name`` as ``stage`` (a name, or a function of the call's arguments)."""
        if not hasattr(owner, name):
            return
        original = getattr(owner, name)
        clock = self

        def timed(*args, **kwargs):
            label = stage(*args, **kwargs) if callable(stage) else stage
            previous, clock._view = clock._view, label
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                clock.seconds[label] += time.perf_counter() - started
                clock._view = previous

        setattr(owner, name, timed)
        self._originals.append((owner, name, original))

    def count_pint(self) -> None:
        """Count the pixels of every PInt call (``forward`` or ``new_values``, on any model: adaptation makes a
        new one) under the view being timed."""
        clock = self
        for name in ("forward", "new_values"):
            if not hasattr(PixelInterpolator, name):
                continue
            original = getattr(PixelInterpolator, name)

            def counted(module, images, *args, _original=original, **kwargs):
                if not clock._counting:
                    clock.pixels[clock._view or "other"] += int(images.numel())
                clock._counting += 1
                try:
                    return _original(module, images, *args, **kwargs)
                finally:
                    clock._counting -= 1

            setattr(PixelInterpolator, name, counted)
            self._originals.append((PixelInterpolator, name, original))

    def restore(self) -> None:
        for owner, name, original in reversed(self._originals):
            setattr(owner, name, original)
        self._originals.clear()


def _view_of(self, accumulator, view, *args, **kwargs) -> str:
    return f"PInt {view}"


def profile_scale(source: Path, scale: int, adapt_steps: int, work: Path) -> Dict[str, object]:
    """One default run at ``scale``, stage by stage, and z-only cubic of the same file."""
    seconds: Dict[str, float] = {}

    def clocked(name, function, *args, **kwargs):
        started = time.perf_counter()
        value = function(*args, **kwargs)
        seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - started
        return value

    # z-only cubic, same reading and writing: the reference the targets are ratios to
    started = time.perf_counter()
    volume = read_nifti(source)
    upsampled = upsample_cubic(volume.data.astype(np.float32), scale, axis=2)
    info = np.iinfo(volume.data.dtype)
    upsampled = np.clip(np.rint(upsampled), info.min, info.max).astype(volume.data.dtype)
    write_nifti(work / "cubic.nii.gz", upsampled, upsampled_affine(volume.affine, 2, scale), volume.header)
    cubic_s = time.perf_counter() - started
    del volume, upsampled

    image = clocked("read", open_nifti, source)
    spacing, axis = choose_axis(image.affine, source.name, None)
    loaded = clocked("read", load_nifti, image, source)
    geometry = clocked("thickness estimate", slice_geometry, loaded.data, axis, spacing, None)
    model = clocked("model load", load_model, None, scale, "cpu")

    clock = StageClock()
    clock.wrap(synthesis_module._Synthesis, "pixel_view", _view_of)
    clock.wrap(synthesis_module._Synthesis, "classical", "classical cubic")
    for name in ("body_box", "body_runs", "body_mask"):
        clock.wrap(synthesis_module, name, "body region")
    clock.count_pint()
    try:
        started = time.perf_counter()
        scan = synthesize_scan(loaded.data, axis, model, geometry, adapt_steps=adapt_steps)
        total_synthesis = time.perf_counter() - started
    finally:
        clock.restore()
    adapt_s = scan.adapt_seconds
    seconds["adaptation"] = adapt_s
    inner = dict(clock.seconds)
    synthesis_s = total_synthesis - adapt_s
    for name in ("body region", "classical cubic", "PInt coronal", "PInt sagittal"):
        seconds[name] = inner.get(name, 0.0)
    seconds["fusion and assembly"] = synthesis_s - sum(inner.values())
    description = provenance(scan.model, scale, geometry, scan.adaptation)
    affine = upsampled_affine(loaded.affine, axis, scale)
    clocked("write .nii.gz", write_nifti, work / "output.nii.gz", scan.result.volume, affine, loaded.header,
            description)
    total = sum(seconds.values())

    # FLOPs: per pixel of one full coronal image, times the pixels PInt was given in each view
    pint = scan.model.networks.pint
    slices, height, width = np.moveaxis(loaded.data, axis, 0).shape
    flops_per_pixel = count_flops(lambda: pint(torch.rand(1, 1, width, slices))) / (width * slices)
    stack = conv_stack_throughput(pint.head.out_channels, width, slices, 5, scan.model.precision, model.device)
    stages = []
    for name, value in seconds.items():
        row: Dict[str, object] = {"stage": name, "seconds": round(value, 2), "share": round(value / total, 3)}
        view = name if name.startswith("PInt") else None
        if view is not None and clock.pixels.get(view):
            pixels = clock.pixels[view]
            flops = flops_per_pixel * pixels
            row.update(pixels_m=round(pixels / 1e6, 2), pixel_fraction=round(pixels / (slices * height * width), 3),
                       gflop=round(flops / 1e9, 1), gflops_achieved=round(flops / value / 1e9, 1),
                       gflops_plain_stack=round(stack / 1e9, 1))
        stages.append(row)
    return {
        "volume": f"{REAL_CT} (first {REAL_CT_SLICES} slices, 512×512)",
        "scale": scale,
        "precision": scan.model.precision_name,
        "adapt_steps": scan.adapted_steps,
        "thickness": f"{geometry.thickness_mm:.2f} mm ({geometry.thickness_source})" if geometry else None,
        "total_s": round(total, 2),
        "total_without_adaptation_s": round(total - adapt_s, 2),
        "z_only_cubic_s": round(cubic_s, 2),
        "times_cubic": round(total / cubic_s, 2),
        "times_cubic_without_adaptation": round((total - adapt_s) / cubic_s, 2),
        "pint_gflop_per_megapixel": round(flops_per_pixel * 1e6 / 1e9, 2),
        "load_average_before": os.getloadavg()[0],
        "stages": stages,
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=Path("benchmark_results"))
    parser.add_argument("--scales", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--adapt-steps", type=int, default=ADAPT_STEPS, help="0: without adaptation")
    parser.add_argument("--label", default="", help="a note for the table (e.g. the commit)")
    args = parser.parse_args(argv)
    path = DATA_DIR / REAL_CT
    if not path.is_file():
        print(f"{path} not found: nothing to profile")
        return 1
    args.output_dir.mkdir(parents=True, exist_ok=True)
    report = report_header(label=args.label)
    with tempfile.TemporaryDirectory(prefix="ctss-profile-") as scratch:
        work = Path(scratch)
        image = nib.load(str(path))
        data = np.asarray(image.dataobj[:, :, :REAL_CT_SLICES]).astype(np.int16)
        source = work / "real_ct_100.nii.gz"
        nib.save(nib.Nifti1Image(data, image.affine, image.header), str(source))
        report["runs"] = []
        for scale in args.scales:
            run = profile_scale(source, scale, args.adapt_steps, work)
            print(json.dumps(run, ensure_ascii=False), flush=True)
            report["runs"].append(run)
    report["load_average_end"] = os.getloadavg()
    (args.output_dir / "profile.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    lines = [f"Machine: {json.dumps(report['machine'], ensure_ascii=False)}, {report['date']} {args.label}\n",
             f"Load average (1, 5, 15 min) at start {report['load_average_start']}, end {report['load_average_end']}\n"]
    for run in report["runs"]:  # type: ignore[union-attr]
        lines.append(f"\n### ×{run['scale']}, {run['volume']}, {run['precision']}, {run['adapt_steps']} adaptation "
                     f"steps, thickness {run['thickness']}\n\n")
        lines.append(markdown_table(run["stages"]))
        lines.append(f"\nTotal {run['total_s']} s ({run['times_cubic']}× z-only cubic); without adaptation "
                     f"{run['total_without_adaptation_s']} s ({run['times_cubic_without_adaptation']}×); z-only cubic "
                     f"{run['z_only_cubic_s']} s in the same process. PInt: {run['pint_gflop_per_megapixel']} "
                     "GFLOP per megapixel of input.\n")
    (args.output_dir / "profile.md").write_text("".join(lines))
    print("".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
