"""What the caller sees for a ``sqlite3`` error, and sessions SQLite ended by itself.

``translate`` maps SQLite's result codes to this package's errors, worded for
the person reading the log: a lock held past the timeout, a damaged file, a
disk that refuses writes, a schema changed under a cached statement. Errors
with nothing to add (constraint violations, for instance) stay as they are.

``doom_if_ended`` is the other half of meeting an error inside a session:
some errors make SQLite roll the whole transaction back itself, and a caller
who catches one and carries on must not go on writing in autocommit mode.
``ErrorTranslator`` puts both together for one connection, with the naming
of values sqlite3 could not bind (``values.py``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NoReturn

from ...errors import DatabaseError, DatabaseLocked, SchemaError
from .values import Parameters, bind_error

if TYPE_CHECKING:
    from .threads import ThreadConnections, ThreadState

__all__ = [
    "BUSY",
    "CANTOPEN",
    "CORRUPT",
    "ErrorTranslator",
    "IOERR",
    "LOCKED",
    "NOTADB",
    "READONLY",
    "code",
    "doom_if_ended",
    "translate",
]

# Primary result codes (the low byte of sqlite3.Error.sqlite_errorcode).
BUSY, LOCKED, READONLY, IOERR, CORRUPT, FULL, CANTOPEN, NOTADB = 5, 6, 8, 10, 11, 13, 14, 26


def code(exc: sqlite3.Error) -> int | None:
    """SQLite's primary result code for ``exc``, or None when it carries none."""
    extended: int | None = getattr(exc, "sqlite_errorcode", None)
    return None if extended is None else extended & 0xFF


def translate(exc: sqlite3.Error, label: str, timeout: float) -> BaseException:
    """The error to raise for ``exc`` on the database ``label``: one of ours, or ``exc`` itself.

    A SchemaError means a cached statement met a changed schema: the caller
    should forget what it cached about the schema.
    """
    number = code(exc)
    message = str(exc)
    if number == BUSY:
        return DatabaseLocked(
            f"the database {label} is locked: another connection held it for more than "
            f"{timeout:g} s ({message}); keep transactions short or raise timeout=",
            path=label,
        )
    if number == LOCKED:
        # Not a wait that timed out: SQLITE_LOCKED is a conflict inside one
        # connection (a statement still reading a table another statement
        # changes) or between connections sharing a cache. Retrying waits for nothing.
        return DatabaseError(
            f"the database {label} refused a statement ({message}): another statement of the same "
            f"connection (or of a shared cache) still uses that table; finish or close that statement first",
            path=label,
        )
    if number == NOTADB:
        return DatabaseError(f"{label} is not a SQLite database, or is damaged ({message})", path=label)
    if number == CORRUPT:
        return DatabaseError(
            f"the database {label} is damaged ({message}); restore it from a backup "
            f"(PRAGMA integrity_check lists what is broken)",
            path=label,
        )
    if number in (READONLY, IOERR, FULL, CANTOPEN):
        return DatabaseError(f"cannot write the database {label}: {message}", path=label)
    if message.startswith(("no such table", "no such column")) or " has no column named " in message:
        # The schema changed under a cached statement (another process migrated).
        return SchemaError(f"{message} in {label} (the schema has changed)", path=label)
    return exc


def doom_if_ended(state: ThreadState, exc: BaseException) -> None:
    """Doom the calling thread's session if the error ended its transaction.

    ON CONFLICT ROLLBACK, RAISE(ROLLBACK) in a trigger, and some SQLITE_FULL /
    SQLITE_IOERR cases roll the whole transaction back, savepoints included.
    Every sqlite3 error met inside a session passes here, so this is where
    such a session is noticed: every later call in it is refused, and its end
    rolls back.
    """
    if state.depth and state.doomed is None and state.conn is not None and not state.conn.in_transaction:
        state.doomed = exc
        state.ended_by_sqlite = True


class ErrorTranslator:
    """Raises, for what executing a statement raised, the error the caller should see.

    One per connection: it knows the database's name and timeout, whether
    the connection is closed, the calling thread's session (to doom), and
    what to forget when the schema changed under a cached statement.
    """

    def __init__(
        self, threads: ThreadConnections, label: str, timeout: float, forget_schema: Callable[[], None]
    ) -> None:
        self._threads = threads
        self._label = label
        self._timeout = timeout
        self._forget_schema = forget_schema

    def raise_for(
        self, exc: BaseException, values: Sequence[object] = (), parameters: Parameters | None = None
    ) -> NoReturn:
        """Raise the error for ``exc``; ``parameters`` says what ``values`` were bound to,
        so a value sqlite3 could not bind is named."""
        if self._threads.closed:
            raise self._threads.closed_error() from exc
        if isinstance(exc, sqlite3.Error):
            doom_if_ended(self._threads.state, exc)
        if parameters is not None:
            unbound = bind_error(exc, values, parameters, self._label)
            if unbound is not None:
                raise unbound from exc
        if not isinstance(exc, sqlite3.Error):
            raise exc
        error = translate(exc, self._label, self._timeout)
        if error is exc:
            raise exc
        if isinstance(error, SchemaError):
            self._forget_schema()
        raise error from exc
