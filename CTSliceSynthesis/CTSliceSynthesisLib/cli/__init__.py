"""The ``ct-slice-synthesis`` command: the parser and exit codes (``main``), one module per subcommand
(``synthesize``, ``train``, ``evaluate``, ``demo``), what they share (``arguments``) and how long runs show their
progress (``progress``). The top of the import order: it may import every other package.

``main`` and its exit codes are re-exported for the console entry point ``CTSliceSynthesisLib.cli:main`` and
``Training/train.py``; ``python -m CTSliceSynthesisLib.cli`` runs it too.
"""

from .main import EXIT_CANCELLED, EXIT_ERROR, EXIT_INTERNAL, main

__all__ = ["EXIT_CANCELLED", "EXIT_ERROR", "EXIT_INTERNAL", "main"]
