"""Sessions: the transactions of a connection's threads, and the statements run in them.

A session is ``BEGIN ... COMMIT`` on the calling thread's connection (READ
COMMITTED, PostgreSQL's default); one inside it is a savepoint. Two things
end a session in a rollback whatever the caller does next:

* a callback raised (``doomed``): the whole session rolls back, and the
  callback's exception is raised again at its end, as on SQLite;
* PostgreSQL aborted the transaction (``aborted``): a statement it refused,
  a connection it dropped. Unlike SQLite, PostgreSQL refuses everything
  after such an error until the level it happened in (the session, or the
  nested session around the statement) is rolled back. If the error leaves
  that level, the level rolls back as usual; if the caller catches it and
  carries on inside the level, every later call there raises
  ``DatabaseError`` and leaving it raises ``DatabaseError`` too: its work is
  gone. To carry on after an expected failure, put the statement in a nested
  session, which works the same on every engine.

A migration's transaction is a session that first takes a transaction-level
advisory lock (``MIGRATION_LOCK``): two processes upgrading at once apply
each migration once, the second seeing the first's record after the wait.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from ...errors import DatabaseError
from ..callbacks import Callback, CrudEvent
from .errors import ErrorTranslator
from .opening import first_line
from .threads import ThreadConnections, ThreadState
from .values import Parameters

if TYPE_CHECKING:
    import psycopg

__all__ = ["MIGRATION_LOCK", "Sessions"]

LOG = logging.getLogger("taskcatalog.db")

#: The key of the advisory lock each migration's transaction takes (pg_advisory_xact_lock):
#: the first 8 bytes of sha256("taskcatalog_migrations"), as a signed bigint.
MIGRATION_LOCK = -2866834013955880964
_Db = TypeVar("_Db")
_T = TypeVar("_T")


class Sessions:
    """Opens, commits and rolls back the sessions of one connection's threads."""

    def __init__(self, threads: ThreadConnections, errors: ErrorTranslator, label: str, psycopg: Any) -> None:
        self._threads = threads
        self._errors = errors
        self._label = label
        self._psycopg = psycopg
        self._idle = psycopg.pq.TransactionStatus.IDLE

    @contextlib.contextmanager
    def session(self, db: _Db) -> Iterator[_Db]:
        """The calling thread's session (or a savepoint inside it), yielding ``db``."""
        threads = self._threads
        state = threads.state
        if state.cur is None:
            self.refuse_if_failed(state)
            threads.cursor()
        self.refuse_if_failed(state)
        if state.depth:
            yield from self._savepoint(state, db)
            return
        try:
            self.run(state, "BEGIN")
            state.depth = 1
            try:
                yield db
            except BaseException:
                if state is threads.state:  # else forked inside the session: see _commit
                    self._rollback(state)
                raise
            self._commit(state)
        finally:
            state.depth = 0
            state.doomed = None
            state.aborted = None
            state.aborted_depth = 0

    @contextlib.contextmanager
    def migration_transaction(self) -> Iterator[None]:
        """The transaction one migration runs in (see the module)."""
        with self.session(None):
            self.run(self._threads.state, "SELECT pg_advisory_xact_lock(%s)", [MIGRATION_LOCK])
            yield

    def cursor(self, state: ThreadState) -> psycopg.Cursor[Any]:
        """The thread's cursor, its connection opened if needed (refused in a failed session)."""
        if state.aborted is not None or state.doomed is not None:
            self.refuse_if_failed(state)
        cur = state.cur
        return cur if cur is not None else self._threads.cursor()

    def run(
        self, state: ThreadState, sql: str, params: Sequence[Any] | None = None, parameters: Parameters | None = None
    ) -> psycopg.Cursor[Any]:
        """Execute one statement on the thread's connection; the cursor, its rows unread.

        ``params`` None sends ``sql`` as it is; a sequence (even empty) makes
        psycopg read its placeholders, so a literal ``%`` must be ``%%``.
        """
        cur = self.cursor(state)
        try:
            return cur.execute(sql, params)
        except Exception as exc:
            self._errors.raise_for(exc, params or (), parameters)

    def run_many(self, sql: str, rows: Iterable[Sequence[Any]], parameters: Parameters | None = None) -> int:
        """``executemany`` in the calling thread's session if any; rows affected."""
        state = self._threads.state
        cur = self.cursor(state)
        if parameters is not None and not isinstance(rows, list):
            rows = list(rows)  # to name a row psycopg could not send
        try:
            cur.executemany(sql, rows)
        except Exception as exc:
            self._errors.raise_for(exc, (), parameters, rows if parameters is not None else None)
        return cur.rowcount

    def fetch(
        self, sql: str, params: Sequence[Any] | None, parameters: Parameters | None = None
    ) -> tuple[list[tuple[Any, ...]], list[str]]:
        """The rows of a query and its column names, in the calling thread's session if any.

        Outside a session the statement runs alone in autocommit mode, with
        a snapshot of its own.
        """
        state = self._threads.state
        cur = self.cursor(state)
        try:
            cur.execute(sql, params)
            rows = cur.fetchall() if cur.description is not None else []
        except Exception as exc:
            self._errors.raise_for(exc, params or (), parameters)
        return rows, [column.name for column in cur.description or ()]

    def fire(self, state: ThreadState, callbacks: tuple[Callback, ...], event: CrudEvent) -> None:
        """Run callbacks in order; one that raises dooms the session, and its exception propagates."""
        for callback in callbacks:
            try:
                callback(event)
            except BaseException as exc:
                self.doom(state, exc)
                raise

    def doom_on_failure(self, state: ThreadState, build: Callable[[], _T]) -> _T:
        """``build()``, run after before_* callbacks on what they left: its failure is
        theirs, and dooms the session like a callback that raised."""
        try:
            return build()
        except BaseException as exc:
            self.doom(state, exc)
            raise

    def doom(self, state: ThreadState, error: BaseException) -> None:
        """A callback raised ``error``: the session must end in a rollback."""
        if state.depth and state.doomed is None:
            state.doomed = error

    def in_transaction(self) -> bool:
        """Whether the calling thread's connection has a transaction open (aborted or not)."""
        conn = self._threads.state.conn
        return conn is not None and not conn.closed and conn.info.transaction_status != self._idle

    def refuse_if_failed(self, state: ThreadState) -> None:
        """DatabaseError, chained from the cause, for any call in a session bound to roll back."""
        doomed = state.doomed
        if doomed is not None:
            raise DatabaseError(
                f"this session on {self._label} will be rolled back: a callback raised "
                f"{type(doomed).__name__}: {doomed}; leave the session",
                path=self._label,
            ) from doomed
        aborted = state.aborted
        if aborted is not None:
            level = "session" if state.aborted_depth <= 1 else "nested session"
            raise DatabaseError(
                f"this {level} on {self._label} was aborted: {self._why(aborted)} (an error caught inside "
                f"the {level}); nothing of it will be committed: leave the {level}",
                path=self._label,
            ) from aborted

    def _why(self, aborted: BaseException) -> str:
        if isinstance(aborted, DatabaseError):
            return str(aborted)  # a lost connection, a transaction ended behind the layer's back
        return f"PostgreSQL refused a statement with {type(aborted).__name__}: {first_line(str(aborted))}"

    def _commit(self, state: ThreadState) -> None:
        """End the outermost session: COMMIT, unless it is doomed or aborted."""
        if state is not self._threads.state:
            # This process was forked inside the session: the transaction is
            # the parent's, on the parent's connection. Touch neither.
            raise DatabaseError(
                f"a session on {self._label} ended in a process forked while it was open; "
                f"it belongs to the parent process, which commits or rolls it back",
                path=self._label,
            )
        doomed, aborted = state.doomed, state.aborted
        if doomed is None and aborted is None:
            conn = state.conn
            if conn is None or conn.closed or conn.info.transaction_status == self._idle:
                aborted = self._ended_error()
            elif conn.info.transaction_status != self._psycopg.pq.TransactionStatus.INTRANS:
                # Aborted by an error that did not pass through the layer
                # (COMMIT would only roll it back, silently).
                aborted = self._ended_error()
        if doomed is not None:
            self._rollback(state)
            raise doomed  # the caller caught a callback's exception and carried on: raised again
        if aborted is not None:
            self._rollback(state)
            if _ended(aborted):
                raise aborted
            raise DatabaseError(
                f"the session on {self._label} was aborted: {self._why(aborted)}, an error caught inside "
                f"the session; nothing of the session was committed",
                path=self._label,
            ) from aborted
        try:
            self.run(state, "COMMIT")
        except BaseException:
            self._rollback(state)
            raise

    def _savepoint(self, state: ThreadState, db: _Db) -> Iterator[_Db]:
        name = f"tc_savepoint_{state.depth}"
        self.run(state, f"SAVEPOINT {name}")
        state.depth += 1
        level = state.depth
        try:
            yield db
        except BaseException:
            # A doomed session rolls back whole at its end; an aborted level
            # (this one, or one inside it) is rolled back here.
            if state.doomed is None and (state.aborted is None or state.aborted_depth >= level):
                self._undo(state, name)
            raise
        else:
            if state.doomed is None:
                aborted = state.aborted
                if aborted is not None and state.aborted_depth >= level:
                    # Caught inside this nested session, which carried on: its work is gone.
                    self._undo(state, name)
                    raise DatabaseError(
                        f"the nested session on {self._label} was aborted: {self._why(aborted)}, an error caught "
                        f"inside it; its work was rolled back, the enclosing session carries on",
                        path=self._label,
                    ) from aborted
                if aborted is None:
                    if self.in_transaction():
                        self.run(state, f"RELEASE {name}")
                    else:
                        state.aborted, state.aborted_depth = self._ended_error(), 1
        finally:
            state.depth -= 1

    def _undo(self, state: ThreadState, name: str) -> None:
        """Roll back to savepoint ``name`` and clear an abort at or inside its level."""
        if state.aborted is not None and state.aborted_depth <= 1:
            return  # the whole transaction is gone (a lost connection): nothing to roll back to
        conn = state.conn
        if conn is not None and not conn.closed and self.in_transaction():
            try:
                conn.execute(f"ROLLBACK TO {name}")
                conn.execute(f"RELEASE {name}")
            except Exception:  # keep the caller's exception, which is the one that matters
                LOG.exception("%s: rolling back to savepoint %s failed", self._label, name)
                return
        state.aborted = None
        state.aborted_depth = 0

    def _ended_error(self) -> DatabaseError:
        return DatabaseError(
            f"the transaction of this session on {self._label} ended before the session did; "
            f"nothing of the session was committed",
            path=self._label,
        )


    def _rollback(self, state: ThreadState) -> None:
        conn = state.conn
        if conn is not None and not self._threads.closed and not conn.closed:
            if conn.info.transaction_status != self._idle:
                try:
                    conn.execute("ROLLBACK")
                except Exception:  # the exception being handled is the one that matters
                    LOG.exception("%s: rollback failed", self._label)


def _ended(error: BaseException) -> bool:
    """Whether ``error`` is ``Sessions._ended_error()``: a transaction ended behind the layer's back."""
    return type(error) is DatabaseError and str(error).startswith("the transaction of this session")
