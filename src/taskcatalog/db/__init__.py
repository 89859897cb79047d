"""taskcatalog.db: persistence behind a small ``Connection`` abstraction.

``connect(url)`` opens a database; ``SQLiteConnection`` is the built-in
backend. See docs/database.md for a guided tour.
"""

from ..errors import DatabaseError, DatabaseLocked, MigrationError, SchemaError, UnknownBackend
from .backends import connect
from .base import Connection
from .callbacks import CrudEvent
from .migrations import Migration, MigrationStatus
from .sqlite import SQLiteConnection

__all__ = [
    "connect",
    "Connection",
    "SQLiteConnection",
    "Migration",
    "MigrationStatus",
    "CrudEvent",
    "SchemaError",
    "MigrationError",
    "DatabaseError",
    "DatabaseLocked",
    "UnknownBackend",
]
