"""CTSliceSynthesis engine: thick-to-thin slice CT synthesis in PyTorch, importable without 3D Slicer.

The method is "Incremental Cross-View Mutual Distillation for Self-Supervised Medical CT Synthesis"
(Fang et al., CVPR 2022). The packages, in import order (each imports only from itself and those above it):

- ``core``: settings and presets, errors, voxel geometry, HU scaling, the classical z-only interpolations, the
  thick-slice simulation and the progress/cancel callback types; numpy and the standard library only (no torch);
- ``nets``: the interpolators (SInt-A with its memory bank, PInt), their building blocks, the cubic base and the
  views (volumes ↔ the 2-D images each network sees);
- ``io``: NIfTI files, atomic writes, checkpoints, input checks (volume, label maps, memory), the sample CT;
- ``training``: data sampling, loss terms, the objective, the trainer (checkpoints, resume, DDP) and adaptation
  to one scan;
- ``inference``: whole-volume synthesis, the fusion of the views and its per-volume calibration, models ready for
  inference (bundled weights, devices, precision) and the file-to-file pipeline;
- ``evaluation``: metrics, scoring against thin-slice truth, reports and figures;
- ``cli``: the ``ct-slice-synthesis`` command (``synthesize``, ``train``, ``evaluate``, ``demo``) and its
  progress display (a bar on a terminal, time-stamped lines in logs).

``slicer_support`` holds the 3D Slicer module's decisions as plain functions; it imports only ``core``, so it
works without torch. Every module may import ``__version__`` from here; this file imports nothing.
"""

__version__ = "0.1.0"
