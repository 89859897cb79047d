"""The ``sqlite3`` connections behind one ``SQLiteConnection``: one per thread, or one shared.

A sqlite3 connection has one transaction at a time, so each thread gets its
own, opened on first use and closed when the connection is, or when a later
thread finds its owner has ended. A ``:memory:`` database exists inside one
sqlite3 connection, so there every thread uses that one and they take turns
through a gate, waiting at most the busy timeout like a file's writers do.

SQLite connections must not be used across ``fork()``. In a child, every
``ThreadConnections`` sets the parent's handles aside (closing them could
disturb the parent's WAL files), replaces its locks (another thread may have
held them) and opens its own handles on first use; a memory database, which
lives only in the parent's handle, is unusable there.

That is not quite enough for a file the parent had open at the fork. SQLite
keeps one table of the locks a process holds per file, and the child inherits
the parent's, which says the file is open and share-locked, while the locks
themselves (POSIX record locks, which belong to a process) stay with the
parent. The child's new handles trust the table and never take them. Once
the parent closes its last handle, it then finds no other process holding the
file, checkpoints and deletes the write-ahead log, and whatever the child
writes from then on goes into the deleted file: lost without an error. So the
child takes, for real and until it ends, the locks its table claims: the
shared lock on the database and the one on the WAL index (``_hold_locks``),
as its own handles would have.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...errors import DatabaseError, DatabaseLocked
from .opening import MEMORY

__all__ = ["MemoryGate", "ThreadConnections", "ThreadState"]


class ThreadState(threading.local):
    """What one thread knows about its use of a connection."""

    def __init__(self) -> None:
        self.conn: sqlite3.Connection | None = None
        self.cur: sqlite3.Cursor | None = None
        self.depth = 0  # session nesting: 0 outside, 1 in a transaction, >1 in savepoints
        # Why the session must end in a rollback: the exception a callback
        # raised, or the SQLite error that ended the transaction (ended_by_sqlite).
        self.doomed: BaseException | None = None
        self.ended_by_sqlite = False


class MemoryGate:
    """The turn-taking of threads on a memory database's one connection.

    Reentrant, so the thread holding a session may read and nest savepoints;
    another thread waits at most ``timeout`` seconds, then DatabaseLocked.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._lock = threading.RLock()

    def __enter__(self) -> None:
        if not self._lock.acquire(timeout=self.timeout):
            raise DatabaseLocked(
                f"the database {MEMORY} is locked: another thread's session held it for more than "
                f"{self.timeout:g} s (the threads of a {MEMORY} connection take turns on its one "
                f"sqlite3 connection); keep sessions short or raise timeout=",
                path=MEMORY,
            )

    def __exit__(self, *exc_info: object) -> None:
        self._lock.release()


class ThreadConnections:
    """Hands each thread its sqlite3 connection and cursor, and closes them all.

    ``state`` is the calling thread's ``ThreadState``; ``gate`` is what a
    thread holds while it uses a memory database (a no-op for files, where
    SQLite does the locking).
    """

    def __init__(self, open: Callable[[], sqlite3.Connection], label: str, timeout: float, path: Path | None) -> None:
        memory = path is None
        self._open = open
        self._label = label
        self._path = path
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._conns: dict[int, sqlite3.Connection] = {}  # thread id -> its connection
        self.state = ThreadState()
        self.closed = False
        self._closed_reason: str | None = None  # set in a forked child: why it cannot use a memory database
        self.shared: sqlite3.Connection | None = open() if memory else None
        self.gate: contextlib.AbstractContextManager[Any] = (
            MemoryGate(timeout) if memory else contextlib.nullcontext()
        )
        _LIVE.add(self)

    def cursor(self) -> sqlite3.Cursor:
        """Give the calling thread its connection and cursor (in ``state``); return the cursor."""
        self._refuse_if_closed()
        # Opened outside the lock: opening may wait for another process's
        # lock, and other threads should not queue behind that.
        conn = self.shared if self.shared is not None else self._open()
        with self._lock:
            if self.closed:
                if conn is not self.shared:
                    conn.close()
                raise self.closed_error()
            if conn is not self.shared:
                threading.current_thread()  # registers a thread not started by threading
                ident = threading.get_ident()
                alive = {thread.ident for thread in threading.enumerate()}
                # Connections of ended threads (including one whose id this
                # thread now reuses) are closed here rather than leaked.
                stale = [i for i in self._conns if i == ident or i not in alive]
                for other in stale:
                    self._conns.pop(other).close()
                self._conns[ident] = conn
        state = self.state
        state.conn = conn
        state.cur = cur = conn.cursor()
        return cur

    def close(self) -> bool:
        """Close every thread's connection; False if they were already closed."""
        with self._lock:
            if self.closed:
                return False
            self.closed = True
            conns = list(self._conns.values())
            self._conns.clear()
            if self.shared is not None:
                conns.append(self.shared)
        for conn in conns:
            conn.close()
        _LIVE.discard(self)
        return True

    def _refuse_if_closed(self) -> None:
        if self.closed:
            raise self.closed_error()

    def closed_error(self) -> DatabaseError:
        return DatabaseError(self._closed_reason or f"the connection to {self._label} is closed", path=self._label)

    def _after_fork(self) -> None:
        """In a child process: forget the parent's sqlite3 connections and locks (see the module)."""
        if self._conns and self._path is not None:
            _INHERITED_FILES.add(str(self._path))
        _INHERITED.extend(self._conns.values())
        self._conns = {}
        self._lock = threading.Lock()
        # A new object, so a session the parent had open at the fork keeps
        # the old one: the session sees that it no longer owns its thread.
        self.state = ThreadState()
        if self.shared is not None:
            _INHERITED.append(self.shared)
            self.shared = None
            self.gate = contextlib.nullcontext()
            if not self.closed:
                self.closed = True
                self._closed_reason = (
                    f"the {MEMORY} database of this connection lives in process {self._pid}, which opened it; "
                    f"this process ({os.getpid()}) was forked from it and cannot use it: "
                    f"open a database of its own here"
                )


# Connection sets alive in this process, so a forked child can drop the
# parent's sqlite3 handles; and the handles dropped, kept referenced so they
# are never closed or collected in the child, with the files they have open.
_LIVE: weakref.WeakSet[ThreadConnections] = weakref.WeakSet()
_INHERITED: list[sqlite3.Connection] = []
_INHERITED_FILES: set[str] = set()

# Where SQLite's unix VFS (os_unix.c) puts its locks: a SHARED lock is a read
# lock on SHARED_SIZE bytes from SHARED_FIRST of the database file, and every
# process using the WAL index holds a read lock on its byte 128 (the "DMS").
_SHARED_FIRST, _SHARED_SIZE = 0x40000000 + 2, 510
_WAL_INDEX_DMS = 128
# The descriptors holding those locks, open until the process ends: closing
# any descriptor of a file drops every POSIX lock the process has on it.
_HELD: list[int] = []


def _hold_locks(database: str) -> None:
    """Take the locks a forked child's SQLite believes it holds on a WAL ``database`` (see the module).

    Only in WAL mode, where SQLite holds them as long as the file is open: a
    shared lock held for good on a database in rollback mode would keep
    every writer out.
    """
    import fcntl  # POSIX, as fork is

    try:
        index = os.open(database + "-shm", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:  # no WAL index: not in WAL mode
        return
    try:
        file = os.open(database, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        os.close(index)
        return
    _HELD.extend((index, file))
    for descriptor, start, length in ((index, _WAL_INDEX_DMS, 1), (file, _SHARED_FIRST, _SHARED_SIZE)):
        try:
            fcntl.lockf(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB, length, start)
        except OSError:  # an exclusive lock is being taken (a checkpoint at close): as before
            pass


def _reset_after_fork() -> None:
    for descriptor in _HELD:  # the parent's: their locks stayed with it
        os.close(descriptor)
    _HELD.clear()
    for connections in list(_LIVE):
        connections._after_fork()
    for database in _INHERITED_FILES:  # this process's, and any its parent inherited
        _hold_locks(database)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
