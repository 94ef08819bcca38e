#!/usr/bin/env python3
"""Copy trained weights into Resources/Models and record them in its manifest (the default for their scale).

    python Training/bundle_model.py RUN/model_final.pt --id lite-x4-v1 --command "..." \
        --wall-time-s 720 --metrics-json '{"cranium_x4_psnr_all": 35.1}' --note "..."
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "CTSliceSynthesis"))

from CTSliceSynthesisLib.io.checkpoint import load_checkpoint, save_checkpoint, sha256_of_file  # noqa: E402

MODELS = Path(__file__).resolve().parent.parent / "Resources" / "Models"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", type=Path, help="model_final.pt (or a training checkpoint) of a run")
    parser.add_argument("--id", required=True, help="model id, also the file name")
    parser.add_argument("--command", required=True, help="the training command that produced the weights")
    parser.add_argument("--wall-time-s", type=float, required=True, help="training wall time in seconds")
    parser.add_argument("--metrics-json", default="{}", help="measured metrics as a JSON object")
    parser.add_argument("--note", default="", help="anything a user should know")
    args = parser.parse_args()

    payload = load_checkpoint(args.weights)
    inference_only = {k: payload[k] for k in ("model_config", "networks")}
    inference_only["metadata"] = {"id": args.id, "steps": int(payload.get("step", 0))}
    MODELS.mkdir(parents=True, exist_ok=True)
    target = MODELS / f"{args.id}.pt"
    save_checkpoint(target, inference_only)
    config = payload["model_config"]
    entry = {
        "id": args.id,
        "file": target.name,
        "scale": int(config["scale"]),
        "preset": config["preset"],
        "default": True,
        "sha256": sha256_of_file(target),
        "size_bytes": target.stat().st_size,
        "steps": int(payload.get("step", 0)),
        "wall_time_s": args.wall_time_s,
        "training_data": payload.get("data_sources", []),
        "train_config": payload.get("train_config", {}),
        "command": args.command,
        "metrics": json.loads(args.metrics_json),
        "licence": "MIT (weights trained by the CTSliceSynthesis developers on the volumes listed; see their licences)",
        "note": args.note,
    }
    manifest_path = MODELS / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {"models": []}
    for other in manifest["models"]:
        if other["scale"] == entry["scale"]:
            other["default"] = False
    manifest["models"] = [m for m in manifest["models"] if m["id"] != entry["id"]] + [entry]
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"bundled {target} ({entry['size_bytes'] / 1e6:.1f} MB), default for ×{entry['scale']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
