#!/usr/bin/env python3
"""Self-supervised training and fine-tuning of CTSliceSynthesis networks.

Same as ``ct-slice-synthesis train``; run ``python Training/train.py --help``. Multi-process:
``torchrun --nproc_per_node=2 Training/train.py --data DIR --output-dir OUT``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "CTSliceSynthesis"))

from CTSliceSynthesisLib.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
