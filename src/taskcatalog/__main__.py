"""``python -m taskcatalog``: the same as the ``taskcatalog`` command."""

import sys

from .cli import main

# Guarded: worker processes started with "spawn" (batch execute --workers) import this module again.
if __name__ == "__main__":
    sys.exit(main())
