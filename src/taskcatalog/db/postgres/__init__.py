"""The PostgreSQL backend: ``PostgresConnection``, on psycopg 3 (the optional extra ``taskcatalog[postgres]``).

Importing this package needs nothing beyond the standard library: psycopg
is imported when a database is opened, and a missing driver is a one-line
``DatabaseError`` naming the extra to install. ``connection.py`` holds the
class (sessions, CRUD, the hooks of ``Connection``); beside it, one module
per concern: ``opening.py`` (the driver, URLs, opening a connection),
``threads.py`` (one connection per thread, fork), ``sessions.py``
(transactions, savepoints, aborted transactions), ``errors.py`` (what
PostgreSQL's errors become), ``values.py`` (values psycopg cannot send),
``schema.py`` (reading the schema) and ``backup.py`` (backup and restore).
The entry points ``postgresql`` and ``postgres`` name this package.
"""

from .connection import PostgresConnection

__all__ = ["PostgresConnection"]
