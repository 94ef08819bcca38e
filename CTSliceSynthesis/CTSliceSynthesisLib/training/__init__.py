"""Self-supervised training: window sampling (``data``), the loss terms (``losses``), the full objective
(``objective``), the trainer with checkpoints, resume and DDP (``trainer``) and adaptation to the scan being
synthesized (``adaptation``). Imports ``core``, ``nets`` and ``io``."""
