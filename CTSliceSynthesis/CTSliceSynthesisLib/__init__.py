"""CTSliceSynthesis engine: thick-to-thin slice CT synthesis in PyTorch, importable without 3D Slicer.

The method is "Incremental Cross-View Mutual Distillation for Self-Supervised Medical CT Synthesis"
(Fang et al., CVPR 2022). Where to look:

- ``nets/``: the interpolators (SInt-A with its memory bank, PInt) and their building blocks;
- ``losses.py`` and ``objective.py``: the loss terms and the full training objective;
- ``trainer.py`` and ``data.py``: self-supervised training, fine-tuning and DDP;
- ``inference.py``: whole-volume synthesis with eq. 7 fusion;
- ``model_store.py`` and ``checkpoint.py``: bundled weights, checkpoints;
- ``nifti_io.py`` and ``geometry.py``: files and voxel geometry;
- ``cli.py``: the ``ct-slice-synthesis`` command.
"""

__version__ = "0.1.0"
