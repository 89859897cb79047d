"""``backup()``: a copy with SQLite's online backup API, never written over a database in use.

The backup API writes into the destination through SQLite's own locking,
so it would happily replace a database another connection is using, its
data gone between two of that connection's statements (and a WAL
destination in use cannot be switched back to a rollback journal after).
So the destination is claimed first (``claim``): opened with
``locking_mode = EXCLUSIVE`` and an exclusive transaction that must succeed
at once. Another connection with the file open in WAL mode (every
connection of this package), or inside a transaction in rollback mode,
makes that fail with SQLITE_BUSY, and the backup is refused before a byte
is written. Once claimed, the exclusive lock stays until the copy is done
(``copy``): nobody can open the file in between. (An idle connection in
rollback mode holds no lock and cannot be seen; it is harmless, as it
re-reads a changed file at its next transaction.)
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

from ...errors import DatabaseError
from .errors import BUSY, CANTOPEN, FULL, IOERR, READONLY, ErrorTranslator, code
from .opening import MEMORY, Settings, open_connection
from .threads import ThreadConnections

__all__ = ["backup", "claim", "copy"]


def claim(target: Path, source_label: str) -> sqlite3.Connection:
    """A connection to ``target`` holding it exclusively until closed, its folder created.

    DatabaseError naming ``target`` if it cannot be created, is not a
    database, or another connection has it open.
    """
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatabaseError(
            f"cannot create the folder {target.parent} for the backup {target}: {exc.strerror or exc}",
            path=str(target),
        ) from exc
    try:
        destination = sqlite3.connect(target, timeout=0, isolation_level=None)
    except sqlite3.Error as exc:
        raise DatabaseError(f"cannot open the backup file {target}: {exc}", path=str(target)) from exc
    try:
        destination.execute("PRAGMA locking_mode = EXCLUSIVE")
        # The transaction takes the lock (reading page 1, so a file that is
        # not a database fails here); exclusive locking mode keeps it after COMMIT.
        destination.execute("BEGIN EXCLUSIVE")
        destination.execute("COMMIT")
    except sqlite3.Error as exc:
        destination.close()
        if code(exc) == BUSY:
            raise DatabaseError(
                f"cannot back up {source_label} to {target}: that file is open in another connection "
                f"(in use by this or another process); close it there first, or back up to another path. "
                f"Nothing was written",
                path=str(target),
            ) from exc
        raise DatabaseError(f"cannot write the backup {target}: {exc}", path=str(target)) from exc
    return destination


def copy(source: sqlite3.Connection, destination: sqlite3.Connection, target: Path) -> None:
    """Copy ``source`` into a claimed ``destination`` and leave it one self-contained file.

    DatabaseError naming ``target`` when writing it fails; any other sqlite3
    error is about the source (the destination was read and locked when
    claimed) and propagates for the caller to translate.
    """
    try:
        # pages=-1 (the default) copies in one step: one read snapshot throughout.
        source.backup(destination)
        # The copy has the source's header, WAL mode included: back to a
        # rollback journal, so the file needs no -wal or -shm beside it.
        destination.execute("PRAGMA journal_mode = DELETE")
    except sqlite3.Error as exc:
        if code(exc) in (READONLY, IOERR, FULL, CANTOPEN):
            raise DatabaseError(f"cannot write the backup {target}: {exc}", path=str(target)) from exc
        raise


def backup(destination_path: Path, settings: Settings, threads: ThreadConnections, errors: ErrorTranslator) -> None:
    """Back up the database of ``settings`` (reached through ``threads``) to ``destination_path``."""
    if threads.closed:
        raise threads.closed_error()
    if threads.shared is not None and threads.state.depth:
        # The copy reads through the session's own connection, which holds
        # the write transaction; CPython's Connection.backup retries on
        # SQLITE_BUSY/LOCKED without limit, so it would wait forever.
        raise DatabaseError(
            f"backup() of the {MEMORY} database inside a session would wait forever for that session's "
            f"own transaction; call it after the session ends",
            path=settings.label,
        )
    if settings.path is not None and (
        destination_path.resolve() == settings.path.resolve()
        or (destination_path.exists() and os.path.samefile(destination_path, settings.path))
    ):
        raise DatabaseError(f"refusing to back up {settings.label} onto itself", path=settings.label)
    with contextlib.ExitStack() as stack:
        if threads.shared is not None:
            stack.enter_context(threads.gate)  # waits (up to the timeout) for another thread's session
            source = threads.shared
        else:
            # A connection of its own reads committed data only, whatever
            # session the calling thread may have open, and a WAL reader
            # waits for no writer.
            source = stack.enter_context(contextlib.closing(open_connection(settings)))
        destination = stack.enter_context(contextlib.closing(claim(destination_path, settings.label)))
        try:
            copy(source, destination, destination_path)
        except sqlite3.Error as exc:  # reading the source
            errors.raise_for(exc)
