"""``ct-slice-synthesis train`` (also ``Training/train.py``): arguments and the run itself."""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from ..core.config import PRESETS, SUPPORTED_SCALES, TRAINING_PRECISIONS
from ..core.degradation import TRAINING_DEGRADATIONS
from ..core.errors import InputError
from .progress import ProgressReporter

# Command-line flag → TrainConfig field, for the settings given as plain values.
TRAIN_FLAGS = {
    "preset": "preset",
    "scale": "scale",
    "steps": "steps",
    "batch_size": "batch_size",
    "window": "window",
    "patch": "patch",
    "region": "region",
    "lr": "learning_rate",
    "sint_lr": "sint_learning_rate",
    "decay_fraction": "decay_fraction",
    "levels": "levels",
    "gamma": "gamma",
    "cmd_weight": "cmd_weight",
    "distillation": "distillation",
    "loss_mode": "loss_mode",
    "checkpoint_every": "checkpoint_every",
    "seed": "seed",
    "degradation": "degradation",
    "profile_width": "profile_width",
    "precision": "precision",
    "checkpoint_activations": "checkpoint_activations",
    "pint_fraction": "pint_fraction",
    "sint_fraction": "sint_fraction",
    "pint_pairs": "pint_pairs",
    "pair_batch": "pair_batch",
    "pair_rows": "pair_rows",
    "pair_columns": "pair_columns",
    "pair_spacing": "pair_spacing_mm",
    "pair_thickness_ratio": "pair_thickness_ratio",
    "pair_geometry": "pair_geometry",
}


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Training flags; unset ones take :class:`TrainConfig` defaults (or, with --resume, the checkpoint's)."""
    parser.add_argument("--data", nargs="+", type=Path, help="NIfTI volumes or folders of them (any thickness)")
    parser.add_argument("--output-dir", required=True, type=Path, help="checkpoints, loss history and plot go here")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="model size (default lite)")
    parser.add_argument("--scale", type=int, help=f"up-sampling factor, one of {SUPPORTED_SCALES} (default 2)")
    parser.add_argument("--steps", type=int, help="total optimisation steps (default 2000)")
    parser.add_argument("--batch-size", type=int, help="windows per step (default 1)")
    parser.add_argument("--window", type=int, help="slices per window, ≡ 1 mod scale (default 15 / 13 / 13)")
    parser.add_argument("--patch", type=int, help="in-plane patch size (default 128)")
    parser.add_argument("--region", type=int, help="patches come from this central region (default 256)")
    parser.add_argument("--lr", type=float, help="initial learning rate (default 1e-4)")
    parser.add_argument("--sint-lr", type=float, help="SInt-A's learning rate (default: --lr)")
    parser.add_argument("--decay-fraction", type=float, help="lr ×0.1 after this fraction of steps (default 0.2)")
    parser.add_argument("--levels", type=int, help="incremental distillation levels N (default 2)")
    parser.add_argument("--gamma", type=float, help="fraction of voxels kept by the cross-view loss (default 0.25)")
    parser.add_argument("--cmd-weight", type=float, help="weight of the cross-view terms (default 0.15)")
    parser.add_argument(
        "--distillation", choices=("mutual", "from-pint"),
        help="cross-view terms train both nets (mutual, the paper's default) or SInt-A only, from PInt",
    )
    parser.add_argument("--loss-mode", choices=("paper", "code"), help="paper (default) or the authors' code")
    parser.add_argument("--checkpoint-every", type=int, help="steps between checkpoints (default 100)")
    parser.add_argument("--seed", type=int, help="random seed (default 0)")
    parser.add_argument("--degradation", choices=TRAINING_DEGRADATIONS, help="simulate blur + noise (default none)")
    parser.add_argument(
        "--profile-width", type=int, help="slice-profile augmentation: up to this many slices thick (default r; 1 off)"
    )
    parser.add_argument("--precision", choices=TRAINING_PRECISIONS, help="bf16 autocast where supported (default fp32)")
    parser.add_argument(
        "--checkpoint-activations",
        choices=("auto", "on", "off"),
        help="recompute activations in the backward pass to save memory (default auto: on for --preset paper)",
    )
    stages = parser.add_argument_group("stages and scale-matched pairs")
    stages.add_argument("--pint-fraction", type=float, help="fraction of the steps training PInt alone (default 0.6)")
    stages.add_argument(
        "--sint-fraction", type=float, help="fraction training SInt-A alone next (default 0.2); the rest is joint"
    )
    stages.add_argument(
        "--pint-pairs", choices=("inplane", "z"),
        help="PInt's internal pairs: scale-matched from the in-plane axes (default) or the paper's z-thinning",
    )
    stages.add_argument("--pair-batch", type=int, help="in-plane pairs per step (default 32)")
    stages.add_argument("--pair-rows", type=int, help="pixels of a pair along the in-plane axis (default 48)")
    stages.add_argument("--pair-columns", type=int, help="input slices of a pair (default 12)")
    stages.add_argument(
        "--pair-geometry", choices=("range", "volume"),
        help="range (default): slice spacings drawn from --pair-spacing; volume: each volume's own spacing "
        "(and --slice-thickness when given), to fine-tune for a site's scans",
    )
    stages.add_argument("--pair-spacing", type=float, nargs=2, metavar=("LOW", "HIGH"),
                        help="slice spacings of the pairs in mm, log-uniform (default 1 6)")
    stages.add_argument("--pair-thickness-ratio", type=float, nargs=2, metavar=("LOW", "HIGH"),
                        help="slice thickness / spacing of the pairs when the thickness is unknown (default 0.8/r 1.4)")
    parser.add_argument(
        "--slice-thickness", type=float,
        help="slice thickness (mm) of the training volumes, when known (with --pair-geometry volume)",
    )
    parser.add_argument("--pre-downsample", type=int, default=1, help="keep every k-th slice of each volume")
    parser.add_argument(
        "--thin-below", type=float, default=0.0, metavar="MM",
        help="with --pre-downsample k: thin only volumes whose slice spacing is below MM mm (thin-slice scans "
        "become the thick input the product gets); default 0: all volumes",
    )
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or mps")
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--resume", type=Path, help="continue a training checkpoint exactly")
    start.add_argument("--init", type=Path, help="fine-tune: start from this checkpoint's weights")
    parser.add_argument("--validate", type=Path, help="thin-slice NIfTI volume: report PSNR at each checkpoint")
    parser.add_argument("--time-budget", type=float, help="stop after this many seconds (checkpoint kept)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar (or progress lines, when not a terminal)")


def run_train(args: argparse.Namespace) -> int:
    """Set up (or resume) a run, train, and write checkpoints, loss history and final weights."""
    import torch

    from ..inference.model_store import resolve_device
    from ..io.checkpoint import load_checkpoint, networks_from_payload
    from ..training.data import find_volumes, load_volume
    from ..training.scale_transfer import transfer_to_scale
    from ..training.trainer import TrainConfig, Trainer, init_distributed, resume_payload

    device = resolve_device(args.device)
    context = init_distributed(device)
    if context.world_size > 1 and device.type == "cuda":
        device = torch.device("cuda", context.rank % torch.cuda.device_count())
    given = {field: getattr(args, flag) for flag, field in TRAIN_FLAGS.items() if getattr(args, flag) is not None}
    payload: Optional[Dict] = None
    data_options = {"pre_downsample": args.pre_downsample, "thin_below": args.thin_below,
                    "slice_thickness": args.slice_thickness}
    if args.resume is not None:
        payload = resume_payload(args.resume)
        settings = {**payload["train_config"], **{k: v for k, v in given.items() if k == "steps"}}
        sources = args.data or [Path(p) for p in payload.get("data_sources", [])]
        data_options = {**data_options, **payload.get("data_options", {})}
    else:
        settings, sources = given, args.data
    if not sources:
        raise InputError("--data is required (NIfTI volumes or folders)")
    config = TrainConfig.from_dict(settings)
    initial = None
    if args.init is not None:
        initial = networks_from_payload(load_checkpoint(args.init), args.init.name)
        if initial.config.preset != config.preset and "preset" not in given:
            config = TrainConfig.from_dict({**asdict(config), "preset": initial.config.preset})
        if initial.scale != config.scale:
            print(f"starting ×{config.scale} from the ×{initial.scale} weights of {args.init.name} "
                  f"(output heads interpolated along the slice fraction)")
            initial = transfer_to_scale(initial, config.scale)
    paths = find_volumes(sources)
    thickness = data_options["slice_thickness"]
    if thickness is not None and thickness <= 0:
        raise InputError("--slice-thickness must be positive")
    volumes = [load_volume(path, data_options["pre_downsample"], data_options["thin_below"]) for path in paths]
    for volume in volumes:
        volume.thickness = thickness
    trainer = Trainer(config, volumes, args.output_dir, device, initial, context)
    if payload is not None:
        trainer.restore(payload)
    trainer.data_sources = [str(p) for p in sources]
    trainer.data_options = data_options
    say = print if context.is_main else (lambda *a, **k: None)
    say(
        f"training {config.preset} ×{config.scale} on {len(volumes)} volume(s), device {device}, "
        f"{context.world_size} process(es), from step {trainer.step} to {config.steps}",
        file=sys.stderr,
    )
    validation = _validation_hook(args.validate, trainer, config.scale) if args.validate else None
    reporter = ProgressReporter(
        "train", enabled=not args.quiet and context.is_main, total=config.steps, unit="step", initial=trainer.step,
        dynamic_ncols=True,
    )

    def on_step(record: Dict[str, float]) -> None:
        step = int(record["step"])
        losses = f"loss={record['total']:.4g}, lr={trainer.learning_rate_at(step - 1):.0e}"
        reporter.update(step / config.steps, "", losses)
        if validation is not None:
            validation(record)

    try:
        with reporter:
            trainer.run(time_budget_s=args.time_budget, on_step=on_step)
    finally:
        if context.is_main:
            write_history(trainer.history, args.output_dir)
    final = trainer.save_final()
    if context.is_main:
        first, last = trainer.history[0]["total"] if trainer.history else float("nan"), (
            trainer.history[-1]["total"] if trainer.history else float("nan")
        )
        say(f"step {trainer.step}: loss {first:.4g} → {last:.4g}; weights in {final}", file=sys.stderr)
        if validation is not None and trainer.step % config.checkpoint_every:
            validation({"step": float(trainer.step)}, force=True)
    return 0


def _validation_hook(path: Path, trainer, scale: int):
    """A per-step callback printing PSNR on a thin-slice volume at each checkpoint step."""
    from ..core.geometry import thick_axis, voxel_spacing
    from ..evaluation.scoring import psnr_after_downsampling
    from ..io.nifti import read_nifti

    volume = read_nifti(path)
    axis = thick_axis(voxel_spacing(volume.affine))

    def hook(record: Dict[str, float], force: bool = False) -> None:
        step = int(record["step"])
        if not trainer.context.is_main or not (force or step % trainer.config.checkpoint_every == 0):
            return
        scores = psnr_after_downsampling(trainer.networks, volume.data, axis, scale, trainer.device)
        print(
            f"validation step {step}: PSNR all {scores['psnr_all']:.2f} dB, synthesized "
            f"{scores['psnr_synthesized']:.2f} dB ({path.name})",
            file=sys.stderr,
        )

    return hook


def write_history(history: List[Dict[str, float]], output_dir: Path) -> None:
    """Loss history as CSV and, when matplotlib is installed, a PNG plot."""
    if not history:
        return
    output_dir.mkdir(parents=True, exist_ok=True)
    names = list(history[0].keys())
    with open(output_dir / "loss_history.csv", "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=names)
        writer.writeheader()
        writer.writerows(history)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    steps = np.array([h["step"] for h in history])
    figure, axis = plt.subplots(figsize=(7, 4))
    for name in names:
        if name != "step":
            axis.plot(steps, [h[name] for h in history], label=name, linewidth=1)
    axis.set_yscale("log")
    axis.set_xlabel("step")
    axis.set_ylabel("loss")
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(output_dir / "loss_history.png", dpi=120)
    plt.close(figure)
