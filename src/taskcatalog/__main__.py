"""``python -m taskcatalog``: the same as the ``taskcatalog`` command."""

import sys

from .cli import main

sys.exit(main())
