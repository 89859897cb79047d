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
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import weakref
from collections.abc import Callable
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

    def __init__(self, open: Callable[[], sqlite3.Connection], label: str, timeout: float, memory: bool) -> None:
        self._open = open
        self._label = label
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
# are never closed or collected in the child.
_LIVE: weakref.WeakSet[ThreadConnections] = weakref.WeakSet()
_INHERITED: list[sqlite3.Connection] = []


def _reset_after_fork() -> None:
    for connections in list(_LIVE):
        connections._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
