"""The ``taskcatalog`` command line (``python -m taskcatalog`` is the same); see docs/cli.md."""

from .app import main

__all__ = ["main"]
