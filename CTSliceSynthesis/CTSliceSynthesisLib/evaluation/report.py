"""Evaluation reports: the Markdown tables, the JSON file and the summary of margins over classical methods.

A report is a plain dict: ``volumes`` is a list of ``{"name", "shape", "spacing_mm", "axis", "planes",
"evaluations"}`` where ``evaluations`` holds one :func:`scoring.evaluate_volume` result per scale.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from ..io.atomic import write_atomically
from .scoring import OURS

COLUMNS = (
    ("psnr_all", "PSNR all (dB)", "{:.2f}"),
    ("psnr_synthesized", "PSNR synth. (dB)", "{:.2f}"),
    ("ssim_a", "SSIM_a", "{:.4f}"),
    ("ssim_c", "SSIM_c", "{:.4f}"),
    ("ssim_s", "SSIM_s", "{:.4f}"),
    ("ssim_mean", "SSIM mean", "{:.4f}"),
    ("saint_psnr", "SAINT PSNR (dB)", "{:.2f}"),
    ("seconds", "time (s)", "{:.2f}"),
)
# "The better classical method": the best of these on each metric (Lanczos-3 is what the supervised literature
# compares against).
CLASSICAL = ("linear", "cubic", "lanczos3")
MARGINS = ("psnr_all", "psnr_synthesized", "ssim_mean")
PLANE_OF_WORLD_AXIS = ("sagittal", "coronal", "axial")  # the plane that fixes x (L–R), y (A–P), z (S–I)
PROTOCOL_NOTES = (
    "PSNR and SSIM map HU to [0, 1] on [−1024, 3072] HU (prediction and truth clipped) and score every output "
    "slice, acquired ones included (spec §9.5 code protocol); 'PSNR synth.' scores the synthesized slices only. "
    "SSIM is pytorch-ssim's (11×11 Gaussian, σ 1.5, zero padding, float64): SSIM_a over axial images, SSIM_c over "
    "the images fixing the first other voxel axis, SSIM_s the second. SAINT PSNR uses clip(HU + 1024, 0, 4000)/4000, "
    "synthesized slices only and the in-plane region 128:384 of axes of at least 384 voxels. Time is the wall "
    "time of the reconstruction ('ours' includes the disagreement map when figures are made). Best value per "
    "column in bold."
)


def anatomical_plane(affine: np.ndarray, fixed_axis: int) -> str:
    """The anatomical plane of the images that fix voxel axis ``fixed_axis``, from the affine's dominant world
    direction of that axis (RAS+)."""
    return PLANE_OF_WORLD_AXIS[int(np.argmax(np.abs(np.asarray(affine)[:3, fixed_axis])))]


def summarise(volumes: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """Per volume × scale, ``ours`` minus the best of :data:`CLASSICAL` on each metric of :data:`MARGINS`, and
    the mean of these margins per scale (evaluations lacking one of the three rows are skipped)."""
    rows: List[Dict[str, Any]] = []
    for volume in volumes:
        for evaluation in volume["evaluations"]:
            methods = evaluation["methods"]
            if OURS not in methods or not all(name in methods for name in CLASSICAL):
                continue
            row: Dict[str, Any] = {
                "volume": volume["name"],
                "scale": evaluation["scale"],
                "degradation": evaluation.get("degradation", "direct"),
                "seconds": methods[OURS]["seconds"],
                "adapt_seconds": methods[OURS].get("adapt_seconds", 0.0),
            }
            for metric in MARGINS:
                row[f"margin_{metric}"] = methods[OURS][metric] - max(methods[name][metric] for name in CLASSICAL)
            rows.append(row)
    means: Dict[str, Dict[str, Any]] = {}
    for key in sorted({(row["degradation"], row["scale"]) for row in rows}):
        chosen = [row for row in rows if (row["degradation"], row["scale"]) == key]
        mean: Dict[str, Any] = {"degradation": key[0], "scale": key[1], "volumes": len(chosen)}
        for metric in MARGINS:
            mean[f"margin_{metric}"] = float(np.mean([row[f"margin_{metric}"] for row in chosen]))
        means[f"{key[0]} x{key[1]}"] = mean
    return {"per_volume": rows, "mean_per_scale": means}


def markdown_report(report: Dict[str, Any]) -> str:
    """The whole report as Markdown: protocol, summary of margins, then one table per volume and scale."""
    lines = ["# CTSliceSynthesis evaluation", "", PROTOCOL_NOTES, ""]
    lines += _summary_table(report["summary"])
    for volume in report["volumes"]:
        lines += ["", f"## {volume['name']}", "", _volume_line(volume)]
        for evaluation in volume["evaluations"]:
            title = f"×{evaluation['scale']}, {evaluation.get('degradation', 'direct')} thick input"
            lines += ["", f"### {title}", "", _evaluation_line(evaluation), ""]
            lines += method_table(evaluation["methods"])
    return "\n".join(lines) + "\n"


def _summary_table(summary: Dict[str, Any]) -> List[str]:
    """The margins of ours over max(linear, cubic, Lanczos-3), per volume × scale and their means per scale."""
    if not summary["per_volume"]:
        return ["No summary: it needs the ours, linear and cubic rows."]
    lines = [
        "## Summary: ours − max(linear, cubic, Lanczos-3)",
        "",
        "| volume | thick input | r | Δ PSNR all (dB) | Δ PSNR synth. (dB) | Δ SSIM mean | ours: time (s), of which adaptation |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for row in summary["per_volume"]:
        lines.append(
            f"| {row['volume']} | {row['degradation']} | ×{row['scale']} | {_signed(row['margin_psnr_all'])} | "
            f"{_signed(row['margin_psnr_synthesized'])} | {_signed(row['margin_ssim_mean'], 4)} | "
            f"{row['seconds']:.1f}, {row['adapt_seconds']:.1f} |"
        )
    for mean in summary["mean_per_scale"].values():
        lines.append(
            f"| **mean of {mean['volumes']}** | {mean['degradation']} | ×{mean['scale']} | "
            f"**{_signed(mean['margin_psnr_all'])}** | **{_signed(mean['margin_psnr_synthesized'])}** | "
            f"**{_signed(mean['margin_ssim_mean'], 4)}** | |"
        )
    return lines


def _signed(value: float, digits: int = 2) -> str:
    return f"{value:+.{digits}f}"


def _volume_line(volume: Dict[str, Any]) -> str:
    shape = "×".join(map(str, volume["shape"]))
    spacing = " × ".join(f"{s:.3g}" for s in volume["spacing_mm"])
    planes = volume["planes"]
    return (
        f"{shape} voxels, spacing {spacing} mm, thick axis {volume['axis']}; SSIM_c images are {planes['c']}, "
        f"SSIM_s images {planes['s']}."
    )


def _evaluation_line(evaluation: Dict[str, Any]) -> str:
    truth, thick = ("×".join(map(str, evaluation[key])) for key in ("truth_shape", "thick_shape"))
    models = "; ".join(
        f"{role}: {m['id']} ({m['preset']}, {m['device']})" for role, m in evaluation["models"].items()
    )
    geometry = evaluation.get("slice_geometry")
    slices = "" if not geometry else (
        f" Its slices as the synthesis saw them: {geometry['thickness_mm']:.3g} mm thick "
        f"({geometry['thickness_source']}) every {geometry['spacing_mm']:.3g} mm."
    )
    ours = evaluation["methods"].get(OURS, {})
    adapted = ours.get("adapted_steps")
    adaptation = f" 'ours' adapted to the thick input in {adapted} steps." if adapted else ""
    if adapted and ours.get("adapt_capped"):
        adaptation += " (cut short by the --adapt-seconds cap: not reproducible)"
    return (
        f"Truth {truth} from a {evaluation['degradation']} thick input {thick} (seed {evaluation['seed']}), "
        f"{evaluation['synthesized_slices']} synthesized slices.{slices} Models: {models or 'none'}.{adaptation}"
    )


def method_table(methods: Dict[str, Dict[str, float]]) -> List[str]:
    """Markdown rows: one per method, the columns of :data:`COLUMNS`, the best quality value in bold."""
    best = {key: max(scores[key] for scores in methods.values()) for key, _, _ in COLUMNS if key != "seconds"}
    lines = ["| method | " + " | ".join(title for _, title, _ in COLUMNS) + " |"]
    lines.append("|---|" + "---:|" * len(COLUMNS))
    for name, scores in methods.items():
        cells = []
        for key, _, form in COLUMNS:
            text = form.format(scores[key])
            cells.append(f"**{text}**" if key in best and scores[key] == best[key] else text)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def write_report(directory: Path, report: Dict[str, Any]) -> Tuple[Path, Path]:
    """Write ``evaluation.md`` and ``evaluation.json`` into ``directory`` atomically; returns their paths.
    Non-finite numbers (PSNR of an exact reconstruction) are written as ``null`` in the JSON."""
    markdown, data = directory / "evaluation.md", directory / "evaluation.json"
    text = json.dumps(_finite(report), indent=2, allow_nan=False) + "\n"
    write_atomically(data, lambda temporary: temporary.write_text(text, encoding="utf-8"))
    table = markdown_report(report)
    write_atomically(markdown, lambda temporary: temporary.write_text(table, encoding="utf-8"))
    return markdown, data


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (recursively through dicts and lists)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value
