"""Whole-volume synthesis (``synthesis``), the fusion of the views (``fusion``) and its per-volume calibration
(``calibration``), models ready for inference with their devices and bundled weights (``model_store``) and
arithmetic precision (``precision``). Imports ``core``, ``nets``, ``io`` and ``training``."""
