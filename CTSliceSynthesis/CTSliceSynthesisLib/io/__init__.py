"""Files and what is checked before work starts: NIfTI volumes with their geometry (``nifti``), atomic writes
(``atomic``), checkpoints and the networks they hold (``checkpoint``), checks on inputs and outputs (``checks``)
and the demo's sample CT (``sample_data``). Imports ``core`` and ``nets``."""
