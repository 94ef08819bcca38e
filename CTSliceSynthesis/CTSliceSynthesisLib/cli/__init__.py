"""The ``ct-slice-synthesis`` command: the parser and exit codes (``main``) and one module per subcommand
(``train``, ``evaluate``, ``demo``). The top of the import order: it may import every other package.

``main`` and its exit codes are re-exported for the console entry point ``CTSliceSynthesisLib.cli:main`` and
``Training/train.py``; ``python -m CTSliceSynthesisLib.cli`` runs it too.
"""

from .main import EXIT_CANCELLED, EXIT_ERROR, EXIT_INTERNAL, main

__all__ = ["EXIT_CANCELLED", "EXIT_ERROR", "EXIT_INTERNAL", "main"]
