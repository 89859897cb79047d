"""The psycopg connections behind one ``PostgresConnection``: one per thread, none shared across ``fork``.

A PostgreSQL connection has one transaction at a time, so each thread gets
its own, opened on first use and closed when the ``PostgresConnection`` is,
or when a later thread finds that its owner has ended. Sessions are
per-thread state (``ThreadState``), as on SQLite.

A connection is a socket to a server process of its own. After ``fork`` the
child shares that socket with the parent: one byte the child sent on it
would corrupt the parent's conversation, and closing it would send the
server PostgreSQL's "terminate" message, ending the parent's session. So a
forked child never uses, closes or finalises the parent's connections: it
sets them aside, referenced until it exits (psycopg itself skips libpq's
``PQfinish`` for a connection opened in another process, so their
collection would be harmless too), replaces its locks and opens
connections of its own on first use.

A connection the server dropped (restart, ``pg_terminate_backend``, a
network cut) is discarded: the call that met it raises ``DatabaseError``,
and the next call outside a session opens a new one.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ...errors import DatabaseError

if TYPE_CHECKING:
    import psycopg

__all__ = ["ThreadConnections", "ThreadState"]


class ThreadState(threading.local):
    """What one thread knows about its use of a connection."""

    def __init__(self) -> None:
        self.conn: psycopg.Connection[Any] | None = None
        self.cur: psycopg.Cursor[Any] | None = None
        self.depth = 0  # session nesting: 0 outside, 1 in a transaction, >1 in savepoints
        # The exception a callback raised: the whole session must roll back.
        self.doomed: BaseException | None = None
        # The error with which PostgreSQL aborted the transaction at nesting
        # level ``aborted_depth`` (a refused statement, a lost connection, a
        # transaction ended behind the layer's back): that level must roll back.
        self.aborted: BaseException | None = None
        self.aborted_depth = 0


class ThreadConnections:
    """Hands each thread its psycopg connection and cursor, and closes them all."""

    def __init__(self, open: Callable[[], psycopg.Connection[Any]], label: str) -> None:
        self._open = open
        self._label = label
        self._lock = threading.Lock()
        self._conns: dict[int, psycopg.Connection[Any]] = {}  # thread id -> its connection
        self.state = ThreadState()
        self.closed = False
        _LIVE.add(self)

    def cursor(self) -> psycopg.Cursor[Any]:
        """Give the calling thread its connection and cursor (in ``state``); return the cursor."""
        self._refuse_if_closed()
        # Opened outside the lock: connecting may take up to the connect
        # timeout, and other threads should not queue behind that.
        conn = self._open()
        with self._lock:
            if self.closed:
                conn.close()
                raise self.closed_error()
            threading.current_thread()  # registers a thread not started by threading
            ident = threading.get_ident()
            alive = {thread.ident for thread in threading.enumerate()}
            # Connections of ended threads (including one whose id this
            # thread now reuses) are closed here rather than leaked.
            stale = [i for i in self._conns if i == ident or i not in alive]
            old = [self._conns.pop(i) for i in stale]
            self._conns[ident] = conn
        for other in old:
            other.close()
        state = self.state
        state.conn = conn
        state.cur = cur = conn.cursor()
        return cur

    def discard(self, state: ThreadState) -> None:
        """Forget the calling thread's connection, which the server dropped; the next call opens another."""
        conn = state.conn
        state.conn = state.cur = None
        if conn is None:
            return
        with self._lock:
            ident = threading.get_ident()
            if self._conns.get(ident) is conn:
                del self._conns[ident]
        try:
            conn.close()
        except Exception:  # it is broken already
            pass

    def close(self) -> bool:
        """Close every thread's connection; False if they were already closed."""
        with self._lock:
            if self.closed:
                return False
            self.closed = True
            conns = list(self._conns.values())
            self._conns.clear()
        for conn in conns:
            conn.close()
        _LIVE.discard(self)
        return True

    def _refuse_if_closed(self) -> None:
        if self.closed:
            raise self.closed_error()

    def closed_error(self) -> DatabaseError:
        return DatabaseError(f"the connection to {self._label} is closed", path=self._label)

    def _after_fork(self) -> None:
        """In a child process: set the parent's connections aside, unused (see the module)."""
        _INHERITED.extend(self._conns.values())
        self._conns = {}
        self._lock = threading.Lock()
        # A new object, so a session the parent had open at the fork keeps
        # the old one: the session sees that it no longer owns its thread.
        self.state = ThreadState()


# Connection sets alive in this process, so a forked child can set the
# parent's connections aside; and those connections, kept referenced so that
# nothing in the child ever closes them.
_LIVE: weakref.WeakSet[ThreadConnections] = weakref.WeakSet()
_INHERITED: list[Any] = []


def _reset_after_fork() -> None:
    for connections in list(_LIVE):
        connections._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
