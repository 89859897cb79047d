"""The built-in SQLite backend: ``SQLiteConnection``, on the standard ``sqlite3`` module.

``connection.py`` holds the class (sessions, CRUD, the hooks of
``Connection``); beside it, one module per concern: ``opening.py`` (how a
sqlite3 connection is opened), ``threads.py`` (one per thread, fork),
``errors.py`` (what SQLite's errors become), ``values.py`` (values SQLite
cannot store), ``schema.py`` (reading the schema) and ``backup.py``
(writing a backup). The entry point ``taskcatalog.db.sqlite:SQLiteConnection``
names this package.
"""

from .connection import SQLiteConnection

__all__ = ["SQLiteConnection"]
