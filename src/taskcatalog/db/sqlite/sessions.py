"""Sessions: the transactions of a connection's threads, and the statements run in them.

A session is ``BEGIN IMMEDIATE ... COMMIT`` on the calling thread's sqlite3
connection; one inside it is a savepoint. A session is *doomed* when a
callback raised inside it or SQLite ended its transaction by itself: every
later call in it is refused and its end rolls back, so nothing of it is
ever committed and nothing runs in autocommit mode by mistake. So CRUD
callbacks run here too: one that raises dooms the session it runs in.

A migration's transaction is a session with SQLite's rule around it:
foreign keys off while it runs (the pragma only works outside a
transaction), checked with ``foreign_key_check`` before it commits.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from ...errors import DatabaseError, MigrationError
from ..callbacks import Callback, CrudEvent
from ..migrations import Migration
from .errors import ErrorTranslator
from .threads import ThreadConnections, ThreadState
from .values import BIND_ERRORS, Parameters

__all__ = ["Sessions"]

LOG = logging.getLogger("taskcatalog.db")

# What executing a statement may raise: SQLite's errors, and sqlite3's for a value it cannot bind.
STATEMENT_ERRORS = (sqlite3.Error, *BIND_ERRORS)
_Db = TypeVar("_Db")
_T = TypeVar("_T")


class Sessions:
    """Opens, commits and rolls back the sessions of one connection's threads."""

    def __init__(self, threads: ThreadConnections, errors: ErrorTranslator, label: str) -> None:
        self._threads = threads
        self._errors = errors
        self._label = label

    @contextlib.contextmanager
    def session(self, db: _Db) -> Iterator[_Db]:
        """The calling thread's session (or a savepoint inside it), yielding ``db``."""
        threads = self._threads
        state = threads.state
        if state.cur is None:
            threads.cursor()
        self.refuse_if_doomed(state)
        if state.depth:
            yield from self._savepoint(state, db)
            return
        with threads.gate:
            try:
                # IMMEDIATE takes the write lock now, waiting up to the busy timeout.
                self.run(state, "BEGIN IMMEDIATE")
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
                state.ended_by_sqlite = False

    @contextlib.contextmanager
    def migration_transaction(self, migration: Migration, foreign_keys: bool) -> Iterator[None]:
        """The transaction ``migration`` runs in (see the module)."""
        if not foreign_keys:
            with self.session(None):
                yield
            return
        # SQLite's documented table rebuild (create new, copy, drop old,
        # rename) needs foreign keys off; the gate keeps a memory database's
        # other threads out while they are.
        with self._threads.gate:
            self.fetch("PRAGMA foreign_keys = OFF", ())
            try:
                with self.session(None):
                    yield
                    broken, _ = self.fetch("PRAGMA foreign_key_check", ())
                    if broken:
                        raise MigrationError(
                            f"migration {migration.name} leaves {len(broken)} row(s) in {self._label} breaking "
                            f"foreign keys (first: table {broken[0][0]}, rowid {broken[0][1]}, references "
                            f"{broken[0][2]}); nothing of it was applied",
                            path=migration.path or self._label,
                        )
            finally:
                self.fetch("PRAGMA foreign_keys = ON", ())

    def run(
        self, state: ThreadState, sql: str, params: Sequence[Any] = (), parameters: Parameters | None = None
    ) -> sqlite3.Cursor:
        """Execute one statement on the thread's connection (the caller holds the gate)."""
        cur = state.cur if state.cur is not None else self._threads.cursor()
        try:
            return cur.execute(sql, params)
        except STATEMENT_ERRORS as exc:
            self._errors.raise_for(exc, params, parameters)

    def run_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> int:
        """``executemany`` on the calling thread's connection, in its session if any; rows affected."""
        threads = self._threads
        state = threads.state
        cur = state.cur if state.cur is not None else threads.cursor()
        if state.doomed is not None:
            self.refuse_if_doomed(state)
        with threads.gate:
            try:
                return cur.executemany(sql, rows).rowcount
            except STATEMENT_ERRORS as exc:
                self._errors.raise_for(exc, (), None)

    def fetch(
        self, sql: str, params: Sequence[Any], parameters: Parameters | None = None
    ) -> tuple[list[tuple[Any, ...]], list[str]]:
        """The rows of a query and its column names, in the calling thread's session if any."""
        threads = self._threads
        state = threads.state
        cur = state.cur if state.cur is not None else threads.cursor()
        if state.doomed is not None:
            self.refuse_if_doomed(state)
        # A read outside a session is one statement in autocommit mode: SQLite
        # gives it a consistent snapshot without an explicit transaction.
        with threads.gate:
            try:
                rows = cur.execute(sql, params).fetchall()
            except STATEMENT_ERRORS as exc:
                self._errors.raise_for(exc, params, parameters)
            names = [d[0] for d in cur.description or ()]
        return rows, names

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

    def in_transaction(self) -> bool:
        """Whether the calling thread's connection has a transaction open."""
        conn = self._threads.state.conn
        return conn is not None and conn.in_transaction

    def doom(self, state: ThreadState, error: BaseException) -> None:
        """A callback raised ``error``: the session must end in a rollback."""
        if state.depth and state.doomed is None:
            state.doomed = error

    def refuse_if_doomed(self, state: ThreadState) -> None:
        """DatabaseError, chained from what doomed it, for any call in a session bound to roll back."""
        doomed = state.doomed
        if doomed is None:
            return
        if state.ended_by_sqlite:
            message = (
                f"this session on {self._label} was rolled back by SQLite at {type(doomed).__name__}: {doomed} "
                f"(an error caught inside the session); nothing of it will be committed: leave the session"
            )
        else:
            message = (
                f"this session on {self._label} will be rolled back: a callback raised "
                f"{type(doomed).__name__}: {doomed}; leave the session"
            )
        raise DatabaseError(message, path=self._label) from doomed

    def _commit(self, state: ThreadState) -> None:
        """End the outermost session: COMMIT, unless it is doomed or SQLite ended it."""
        if state is not self._threads.state:
            # This process was forked inside the session: the transaction is
            # the parent's, on the parent's connection. Touch neither.
            raise DatabaseError(
                f"a session on {self._label} ended in a process forked while it was open; "
                f"it belongs to the parent process, which commits or rolls it back",
                path=self._label,
            )
        doomed = state.doomed
        if doomed is None and not self.in_transaction():
            raise self._ended_error()
        if doomed is not None:
            self._rollback(state)
            if not state.ended_by_sqlite:
                # The caller caught a callback's exception and carried on; the
                # session is still rolled back, and the exception raised again.
                raise doomed
            if not isinstance(doomed, sqlite3.Error):
                raise doomed  # _ended_error(), from a savepoint that found the transaction gone
            raise DatabaseError(
                f"the session on {self._label} was rolled back by SQLite at {type(doomed).__name__}: {doomed}, "
                f"an error caught inside the session; nothing of the session was committed",
                path=self._label,
            ) from doomed
        try:
            self.run(state, "COMMIT")
        except BaseException:
            self._rollback(state)
            raise

    def _savepoint(self, state: ThreadState, db: _Db) -> Iterator[_Db]:
        name = f"tc_savepoint_{state.depth}"
        self.run(state, f"SAVEPOINT {name}")
        state.depth += 1
        try:
            yield db
        except BaseException:
            # A doomed session (or one SQLite ended) rolls back whole at its end.
            if state.doomed is None and self.in_transaction():
                try:
                    self.run(state, f"ROLLBACK TO {name}")
                    self.run(state, f"RELEASE {name}")
                except Exception:  # keep the caller's exception, which is the one that matters
                    LOG.exception("%s: rolling back to savepoint %s failed", self._label, name)
            raise
        else:
            if state.doomed is None:
                if self.in_transaction():
                    self.run(state, f"RELEASE {name}")
                else:
                    # Ended without an error passing through raise_for: doom
                    # the session all the same; the outermost session raises.
                    state.doomed = self._ended_error()
                    state.ended_by_sqlite = True
        finally:
            state.depth -= 1

    def _ended_error(self) -> DatabaseError:
        return DatabaseError(
            f"the transaction of this session on {self._label} ended before the session did "
            f"(SQLite rolled it back); nothing of the session was committed",
            path=self._label,
        )

    def _rollback(self, state: ThreadState) -> None:
        conn = state.conn
        # Some errors (SQLITE_FULL, ON CONFLICT ROLLBACK) end the transaction
        # themselves; a second ROLLBACK would then fail.
        if conn is not None and not self._threads.closed and conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except Exception:  # the exception being handled is the one that matters
                LOG.exception("%s: rollback failed", self._label)
