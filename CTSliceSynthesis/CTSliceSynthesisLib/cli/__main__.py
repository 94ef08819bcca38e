"""``python -m CTSliceSynthesisLib.cli``: the ``ct-slice-synthesis`` command."""

import sys

from .main import main

if __name__ == "__main__":
    sys.exit(main())
