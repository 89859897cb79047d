"""``SQLiteConnection``: the built-in backend, on the standard ``sqlite3`` module.

Concurrency rests on four SQLite behaviours:

* WAL journal mode: readers never block the writer and the writer never
  blocks readers; only writers queue for the single write lock.
* A busy timeout: a connection that finds the lock taken retries for up to
  ``timeout`` seconds instead of failing at once with "database is locked".
* ``BEGIN IMMEDIATE`` for every write: the write lock is taken when the
  transaction starts, where the busy timeout applies. A deferred transaction
  that reads first and writes later cannot wait: when another connection has
  committed in between, its snapshot is stale and SQLite fails it at once.
* One ``sqlite3`` connection per thread, opened with ``isolation_level=None``
  so the module never issues a BEGIN or COMMIT of its own.

A ``:memory:`` database exists inside one sqlite3 connection, so there all
threads share that connection and take turns through a lock.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime, timezone
from itertools import repeat
from operator import attrgetter, itemgetter
from os import PathLike, fspath
from pathlib import Path
from typing import Any, NoReturn

from ..errors import DatabaseError, DatabaseLocked, MigrationError, SchemaError
from .base import (
    Connection,
    CrudEvent,
    Row,
    TableInfo,
    _iter_rows,
    _values_mapping,
    quote,
)
from .migrations import (
    BOOKKEEPING_DDL,
    BOOKKEEPING_TABLE,
    Applied,
    Migration,
    MigrationStatus,
    collect,
    split_statements,
    status,
)

__all__ = ["SQLiteConnection"]

LOG = logging.getLogger("taskcatalog.db")

MEMORY = ":memory:"
_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
# Primary result codes (the low byte of sqlite3.Error.sqlite_errorcode).
_BUSY, _LOCKED, _READONLY, _IOERR, _CORRUPT, _FULL, _CANTOPEN, _NOTADB = 5, 6, 8, 10, 11, 13, 14, 26
_BINDING = re.compile(r"binding parameter (\d+)")
# PRAGMA table_list (SQLite 3.37) tells WITHOUT ROWID tables (column wr) and
# shadow tables apart; older versions fall back to reading sqlite_master.sql.
_HAS_TABLE_LIST = sqlite3.sqlite_version_info >= (3, 37)
# For that fallback: string literals, quoted names and comments, which may
# hold any text, including "WITHOUT ROWID" and parentheses.
_NOT_CODE = re.compile(r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|`[^`]*`|\[[^\]]*\]|--[^\n]*|/\*.*?(?:\*/|$)""", re.DOTALL)
_WITHOUT_ROWID = re.compile(r"\bWITHOUT\s+ROWID\b", re.IGNORECASE)


class _ThreadState(threading.local):
    """What one thread knows about its use of a connection."""

    def __init__(self) -> None:
        self.conn: sqlite3.Connection | None = None
        self.cur: sqlite3.Cursor | None = None
        self.depth = 0  # session nesting: 0 outside, 1 in a transaction, >1 in savepoints
        # Why the session must end in a rollback: the exception a callback
        # raised, or the SQLite error that ended the transaction (ended_by_sqlite).
        self.doomed: BaseException | None = None
        self.ended_by_sqlite = False


def _target(url: str | PathLike[str]) -> Path | None:
    """The database file a URL or path names; None for a memory database."""
    if isinstance(url, PathLike):
        url = fspath(url)
    if not isinstance(url, str):
        raise TypeError(f"a database URL or path must be a str or path, not {type(url).__name__}")
    if url == MEMORY:
        return None
    if url[:7].lower() == "sqlite:":  # URL schemes are case-insensitive
        # sqlite:///relative/path, sqlite:////absolute/path, sqlite:///:memory:
        # (the convention of SQLAlchemy and most URL parsers).
        rest = url[len("sqlite:"):]
        if rest in ("//", "///" + MEMORY):
            return None
        if not rest.startswith("///") or len(rest) == 3:
            raise ValueError(
                f"cannot read the SQLite URL {url!r}: use sqlite:///relative/path, "
                f"sqlite:////absolute/path or sqlite:///:memory:"
            )
        return Path(rest[3:])
    if "://" in url:
        raise ValueError(f"{url!r} is not a SQLite URL or path")
    if not url:
        raise ValueError("the database path is empty")
    return Path(url)


class SQLiteConnection(Connection):
    """A SQLite database used by any number of threads and processes at once.

    ``timeout`` is how long a write waits for another connection's write
    lock before ``DatabaseLocked``; ``synchronous`` is SQLite's durability
    setting (NORMAL: in WAL mode a crash of the program loses nothing, a power
    cut may lose the last commits); ``foreign_keys`` turns on SQLite's
    enforcement of REFERENCES clauses.
    """

    def __init__(
        self,
        url: str | PathLike[str],
        *,
        timeout: float = 30.0,
        synchronous: str = "NORMAL",
        foreign_keys: bool = True,
    ) -> None:
        path = _target(url)
        super().__init__(fspath(url) if isinstance(url, PathLike) else url)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0:
            raise ValueError(f"timeout must be a number of seconds >= 0, not {timeout!r}")
        if not isinstance(synchronous, str) or synchronous.upper() not in _SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {', '.join(_SYNCHRONOUS)}, not {synchronous!r}")
        # Messages name the file as the caller did; connections open it by its
        # absolute path, so a thread started after os.chdir() finds the same file.
        self._label = MEMORY if path is None else str(path)
        self.path = None if path is None else path.absolute()
        self.timeout = float(timeout)
        self.synchronous = synchronous.upper()
        self.foreign_keys = bool(foreign_keys)
        self._closed = False
        self._closed_reason: str | None = None  # set in a forked child: why it cannot use a memory database
        self._pid = os.getpid()
        self._registry_lock = threading.Lock()
        self._conns: dict[int, sqlite3.Connection] = {}  # thread id -> its connection
        self._state = _ThreadState()
        # (table, column names) -> prepared INSERT text, and for create_many
        # the same text with one item getter per column.
        self._inserts: dict[tuple[str, tuple[str, ...]], str] = {}
        self._inserts_many: dict[tuple[str, tuple[str, ...]], tuple[str, tuple[Callable[[Any], Any], ...]]] = {}
        self._shared: sqlite3.Connection | None = None
        # Threads take turns on a memory database's one connection; for files
        # SQLite does the locking and the gate is a no-op.
        self._gate: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        if path is None:
            self._shared = self._open()
            self._gate = threading.RLock()
        else:
            self._prepare_folder(self.path, self._label)
        # Open this thread's connection now, so a bad path fails at connect time.
        self._open_thread(self._state)
        _LIVE.add(self)
        LOG.debug("opened %s", self._label)

    @property
    def label(self) -> str:
        return self._label

    def __repr__(self) -> str:
        return f"<SQLiteConnection {self._label} {'closed' if self._closed else 'open'}>"

    # ------------------------------------------------------------------ opening

    @staticmethod
    def _prepare_folder(path: Path, label: str) -> None:
        folder = path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseError(
                f"cannot create the folder {folder} for the database {label}: {exc.strerror or exc}",
                path=label,
            ) from exc
        if path.is_dir():
            raise DatabaseError(f"the database path {label} is a folder, not a file", path=label)
        # WAL keeps two files beside the database (-wal, -shm): the folder must be writable.
        if not os.access(folder, os.W_OK | os.X_OK):
            raise DatabaseError(f"the folder {folder} of the database {label} is not writable", path=label)

    def _open(self) -> sqlite3.Connection:
        """A new sqlite3 connection, configured and checked to be a database."""
        try:
            # isolation_level=None: autocommit; this class issues BEGIN/COMMIT itself.
            # check_same_thread=False only so close() may close another thread's
            # connection; each connection is otherwise used by its own thread.
            conn = sqlite3.connect(
                MEMORY if self.path is None else self.path,
                timeout=self.timeout,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise DatabaseError(f"cannot open the database {self._label}: {exc}", path=self._label) from exc
        try:
            # Reading the header here turns "file is not a database" into an
            # error at connect time rather than at the first query.
            conn.execute("PRAGMA schema_version").fetchone()
            self._use_wal(conn)
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            conn.execute(f"PRAGMA foreign_keys = {'ON' if self.foreign_keys else 'OFF'}")
        except BaseException as exc:
            conn.close()
            if isinstance(exc, sqlite3.Error):
                self._raise(exc)
            raise
        return conn

    def _use_wal(self, conn: sqlite3.Connection) -> None:
        if self.path is None:
            return
        # Switching to WAL needs a moment of exclusive access; when several
        # processes open a new file together one of them may see SQLITE_BUSY
        # here, so retry within the timeout like any other lock wait.
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                break
            except sqlite3.OperationalError as exc:
                if _code(exc) not in (_BUSY, _LOCKED) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.005)
        if mode.lower() != "wal":
            LOG.warning("%s: journal mode is %s, not WAL; concurrent access will wait more", self._label, mode)

    def _open_thread(self, state: _ThreadState) -> sqlite3.Cursor:
        """Give the calling thread its connection (the shared one for memory)."""
        if self._closed:
            raise self._closed_error()
        # Opened outside the registry lock: opening may wait for another
        # process's lock, and other threads should not queue behind that.
        conn = self._shared if self._shared is not None else self._open()
        with self._registry_lock:
            if self._closed:
                if conn is not self._shared:
                    conn.close()
                raise self._closed_error()
            if conn is not self._shared:
                threading.current_thread()  # registers a thread not started by threading
                ident = threading.get_ident()
                alive = {thread.ident for thread in threading.enumerate()}
                # Connections of ended threads (including one whose id this
                # thread now reuses) are closed here rather than leaked.
                stale = [i for i in self._conns if i == ident or i not in alive]
                for other in stale:
                    self._conns.pop(other).close()
                self._conns[ident] = conn
        state.conn = conn
        state.cur = conn.cursor()
        return state.cur

    def close(self) -> None:
        """Close every thread's connection; idempotent.

        Call it when no other thread is in the middle of a call; a session
        still open in another thread is rolled back by SQLite.
        """
        with self._registry_lock:
            if self._closed:
                return
            self._closed = True
            conns = list(self._conns.values())
            self._conns.clear()
            if self._shared is not None:
                conns.append(self._shared)
        for conn in conns:
            conn.close()
        _LIVE.discard(self)
        LOG.debug("closed %s", self._label)

    def _after_fork(self) -> None:
        """In a child process: forget the parent's sqlite3 connections and locks.

        SQLite connections must not be used across fork(). Closing them here
        could disturb the parent's WAL files, so they are set aside unused and
        the child opens its own file connections on first use. A memory
        database exists only in the parent's connection, which may have been
        inside another thread's transaction at the fork: the child may not use
        it at all. Locks are replaced, as another thread may have held them.
        Prefer the "spawn" start method.
        """
        _INHERITED.extend(self._conns.values())
        self._conns = {}
        self._registry_lock = threading.Lock()
        self._hooks_lock = threading.Lock()
        self._state = _ThreadState()
        if self._shared is not None:
            _INHERITED.append(self._shared)
            self._shared = None
            self._gate = contextlib.nullcontext()
            if not self._closed:
                self._closed = True
                self._closed_reason = (
                    f"the {MEMORY} database of this connection lives in process {self._pid}, which opened it; "
                    f"this process ({os.getpid()}) was forked from it and cannot use it: "
                    f"open a database of its own here"
                )

    # ------------------------------------------------------------------ errors

    def _closed_error(self) -> DatabaseError:
        return DatabaseError(self._closed_reason or f"the connection to {self._label} is closed", path=self._label)

    def _raise(self, exc: sqlite3.Error, columns: tuple[str, ...] = ()) -> NoReturn:
        """Raise the error a caller should see for a sqlite3 error.

        Errors with nothing to add (constraint violations, for instance)
        propagate unchanged. Every sqlite3 error met inside a session passes
        here, so this is where a transaction SQLite ended by itself is noticed.
        """
        if self._closed:
            raise self._closed_error() from exc
        state = self._state
        if state.depth and state.doomed is None and state.conn is not None and not state.conn.in_transaction:
            # ON CONFLICT ROLLBACK, RAISE(ROLLBACK) in a trigger, and some
            # SQLITE_FULL / SQLITE_IOERR cases roll the whole transaction back
            # (savepoints included). A caller that catches the error and
            # carries on would write in autocommit mode: doom the session.
            state.doomed = exc
            state.ended_by_sqlite = True
        code = _code(exc)
        message = str(exc)
        if code == _BUSY:
            raise DatabaseLocked(
                f"the database {self._label} is locked: another connection held it for more than "
                f"{self.timeout:g} s ({message}); keep transactions short or raise timeout=",
                path=self._label,
            ) from exc
        if code == _LOCKED:
            # Not a wait that timed out: SQLITE_LOCKED is a conflict inside one
            # connection (a statement still reading a table another statement
            # changes) or between connections sharing a cache. Retrying waits for nothing.
            raise DatabaseError(
                f"the database {self._label} refused a statement ({message}): another statement of the same "
                f"connection (or of a shared cache) still uses that table; finish or close that statement first",
                path=self._label,
            ) from exc
        if code == _NOTADB:
            raise DatabaseError(
                f"{self._label} is not a SQLite database, or is damaged ({message})", path=self._label
            ) from exc
        if code == _CORRUPT:
            raise DatabaseError(
                f"the database {self._label} is damaged ({message}); restore it from a backup "
                f"(PRAGMA integrity_check lists what is broken)",
                path=self._label,
            ) from exc
        if code in (_READONLY, _IOERR, _FULL, _CANTOPEN):
            raise DatabaseError(f"cannot write the database {self._label}: {message}", path=self._label) from exc
        if message.startswith(("no such table", "no such column")) or " has no column named " in message:
            # The schema changed under a cached statement (another process migrated).
            self._forget_schema()
            raise SchemaError(f"{message} in {self._label} (the schema has changed)", path=self._label) from exc
        binding = _BINDING.search(message)
        if isinstance(exc, sqlite3.ProgrammingError) and binding:
            number = int(binding.group(1))
            column = f" for column {columns[number - 1]!r}" if 0 < number <= len(columns) else ""
            raise TypeError(f"cannot store the value{column} in {self._label}: {message}") from exc
        raise exc

    def _forget_schema(self) -> None:
        self._schema = {}
        self._inserts = {}
        self._inserts_many = {}

    def _doom(self, error: BaseException) -> None:
        state = self._state
        if state.depth and state.doomed is None:
            state.doomed = error

    def _refuse_if_doomed(self, state: _ThreadState) -> None:
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

    # ------------------------------------------------------------------ sessions

    @contextlib.contextmanager
    def session(self) -> Iterator[SQLiteConnection]:
        state = self._state
        if state.cur is None:
            self._open_thread(state)
        self._refuse_if_doomed(state)
        if state.depth:
            yield from self._savepoint(state)
            return
        with self._gate:
            try:
                # IMMEDIATE takes the write lock now, waiting up to the busy timeout.
                self._run(state, "BEGIN IMMEDIATE")
                state.depth = 1
                try:
                    yield self
                except BaseException:
                    if state is self._state:  # else forked inside the session: see _commit
                        self._rollback(state)
                    raise
                self._commit(state)
            finally:
                state.depth = 0
                state.doomed = None
                state.ended_by_sqlite = False

    def _commit(self, state: _ThreadState) -> None:
        """End the outermost session: COMMIT, unless it is doomed or SQLite ended it."""
        if state is not self._state:
            # This process was forked inside the session: the transaction is
            # the parent's, on the parent's connection. Touch neither.
            raise DatabaseError(
                f"a session on {self._label} ended in a process forked while it was open; "
                f"it belongs to the parent process, which commits or rolls it back",
                path=self._label,
            )
        if state.doomed is None and not state.conn.in_transaction:  # type: ignore[union-attr]
            raise self._ended_error()
        doomed = state.doomed
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
            self._run(state, "COMMIT")
        except BaseException:
            self._rollback(state)
            raise

    def _savepoint(self, state: _ThreadState) -> Iterator[SQLiteConnection]:
        name = f"tc_savepoint_{state.depth}"
        self._run(state, f"SAVEPOINT {name}")
        state.depth += 1
        try:
            yield self
        except BaseException:
            # A doomed session (or one SQLite ended) rolls back whole at its end.
            if state.doomed is None and state.conn is not None and state.conn.in_transaction:
                try:
                    self._run(state, f"ROLLBACK TO {name}")
                    self._run(state, f"RELEASE {name}")
                except Exception:  # keep the caller's exception, which is the one that matters
                    LOG.exception("%s: rolling back to savepoint %s failed", self._label, name)
            raise
        else:
            if state.doomed is None:
                if state.conn.in_transaction:  # type: ignore[union-attr]
                    self._run(state, f"RELEASE {name}")
                else:
                    # Ended without an error passing through _raise: doom the
                    # session all the same; the outermost session raises.
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

    def _rollback(self, state: _ThreadState) -> None:
        conn = state.conn
        # Some errors (SQLITE_FULL, ON CONFLICT ROLLBACK) end the transaction
        # themselves; a second ROLLBACK would then fail.
        if conn is not None and not self._closed and conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except Exception:  # the exception being handled is the one that matters
                LOG.exception("%s: rollback failed", self._label)

    def _run(self, state: _ThreadState, sql: str, params: Iterable[Any] = ()) -> sqlite3.Cursor:
        cur = state.cur if state.cur is not None else self._open_thread(state)
        try:
            return cur.execute(sql, params)
        except sqlite3.Error as exc:
            self._raise(exc)

    # ------------------------------------------------------------------ CRUD

    def create(self, table: str, values: Mapping[str, Any]) -> int:
        # The hot path: one thread-local read, one dict lookup for the prepared
        # INSERT, one for callbacks. Validation happens once per (table, columns).
        state = self._state
        if state.depth == 0 or state.doomed is not None:
            return self._create_outside(table, values)
        if type(values) is not dict or type(table) is not str:
            if type(table) is not str:
                self._columns(table)  # raises SchemaError
            values = _values_mapping(values, f"create() values for {table!r}")
        hooks = self._create_hooks.get(table)
        if hooks is not None:
            return self._create_hooked(state, table, values, hooks)  # type: ignore[return-value]
        names = tuple(values)
        sql = self._inserts.get((table, names)) or self._prepare_insert(table, names)
        try:
            return state.cur.execute(sql, tuple(values.values())).lastrowid  # type: ignore[union-attr,return-value]
        except sqlite3.Error as exc:
            self._raise(exc, names)

    def _prepare_insert(self, table: str, names: tuple[str, ...]) -> str:
        """The INSERT of ``create()`` for these columns: checked once, then cached."""
        # create() returns the new row's id: refuse where there is none
        # (lastrowid would be a stale id of another table).
        self._writable(table, "create")
        info = self._table(table)
        if info.without_rowid:
            raise self._no_rowid(table, info, "create", f"insert with create_many({table!r}, [row]), which returns a count")
        sql = self._inserts[table, names] = self._insert_sql(table, names)
        return sql

    def _create_outside(self, table: str, values: Mapping[str, Any]) -> int:
        self._refuse_if_doomed(self._state)
        with self.session():
            return self.create(table, values)

    def _create_hooked(
        self, state: _ThreadState, table: str, values: dict[str, Any], hooks: tuple, rowid: bool = True
    ) -> int | None:
        """One create that fires callbacks; ``rowid=False`` (create_many into a
        WITHOUT ROWID table) reports no id to the after_create callbacks."""
        before, after = hooks
        row = dict(values)
        if before:
            self._fire(before, CrudEvent("before_create", table, row, None, None, self))
        names = tuple(row)
        if rowid:
            sql = self._inserts.get((table, names)) or self._prepare_insert(table, names)
        else:
            sql = self._insert_sql(table, names, "create_many")
        try:
            cur = state.cur.execute(sql, tuple(row.values()))  # type: ignore[union-attr]
        except sqlite3.Error as exc:
            self._raise(exc, names)
        row_id = cur.lastrowid if rowid else None
        if after:
            self._fire(after, CrudEvent("after_create", table, row, None, row_id, self))
        return row_id

    def create_many(self, table: str, rows: Iterable[Mapping[str, Any]]) -> int:
        """Insert rows that all have the same columns; all of them or none.

        Without callbacks on the table the rows go to ``executemany`` in one
        statement; with callbacks each row is created (and fires them) in turn.
        Returns the number of rows; use ``create`` when you need the ids.
        """
        batch = rows if type(rows) is list else list(_iter_rows(rows))
        info = self._table(table)
        columns = info.columns
        if not batch:
            return 0
        with self.session():  # its own transaction, or a savepoint in the caller's session
            state = self._state
            hooks = self._create_hooks.get(table)
            if hooks is not None:
                for number, row in enumerate(batch):
                    self._refuse_if_doomed(state)  # a callback raised and was caught
                    row = _values_mapping(row, f"create_many() row {number} for {table!r}")
                    self._create_hooked(state, table, row, hooks, not info.without_rowid)
                return len(batch)
            first = batch[0]
            names = tuple(_values_mapping(first, f"create_many() row 0 for {table!r}"))
            prepared = self._inserts_many.get((table, names))
            if prepared is None:
                prepared = self._inserts_many[table, names] = (
                    self._insert_sql(table, names, "create_many"),
                    tuple(map(itemgetter, names)),
                )
            sql, getters = prepared
            # Equal lengths plus every name present (a getter raises KeyError
            # otherwise) mean every row has the same columns. Both run in C; a
            # bad row stops executemany inside this transaction or savepoint,
            # so its rollback leaves no row behind.
            try:
                same = list(map(len, batch)).count(len(names)) == len(batch)
            except TypeError:
                same = False
            if not same:
                self._row_mismatch(table, batch, names, columns)
            # One column iterator per name, zipped: zip reuses its result tuple
            # once sqlite3 has bound it, which beats building a tuple per row.
            params = zip(*[map(get, batch) for get in getters]) if getters else repeat((), len(batch))
            try:
                state.cur.executemany(sql, params)  # type: ignore[union-attr]
            except (KeyError, TypeError, AttributeError):
                self._row_mismatch(table, batch, names, columns)
                raise
            except sqlite3.Error as exc:
                self._raise(exc, names)
        return len(batch)

    def _row_mismatch(self, table: str, batch: list, names: tuple[str, ...], columns: tuple[str, ...]) -> None:
        """Raise the error naming the first row whose columns differ from row 0's."""
        for number, row in enumerate(batch):
            row = _values_mapping(row, f"create_many() row {number} for {table!r}")
            for name in row:
                self._column(table, columns, name)
            if set(row) != set(names):
                raise ValueError(
                    f"create_many() row {number} for {table!r} has the columns {sorted(row)}, "
                    f"row 0 has {sorted(names)}: every row needs the same columns"
                )

    def read(
        self,
        table: str,
        where: Mapping[str, Any] | None = None,
        order_by: str | Iterable[str] | None = None,
        limit: int | None = None,
    ) -> list[Row]:
        """Rows as dicts. ``where`` maps a column to a value, None (IS NULL) or
        ``(op, value)`` with op one of ``= != < <= > >= in like``; ``order_by``
        is ``"col"``, ``"-col"`` (descending) or a list; ``limit`` an int >= 0."""
        sql, params = self._select_sql(table, where, order_by, limit)
        return self._query(sql, params)

    def get(self, table: str, id: int) -> Row | None:
        """The row whose rowid (its INTEGER PRIMARY KEY, if it has one) is ``id``.

        SchemaError for a view or a WITHOUT ROWID table, whose rows have no id.
        """
        rowid = self._rowid(table, "get", "find its rows with read(where=...)")
        if isinstance(id, bool) or not isinstance(id, int):
            raise TypeError(f"get() id must be an int, not {type(id).__name__}")
        rows = self._query(f"SELECT * FROM {quote(table)} WHERE {rowid} = ?", [id])
        return rows[0] if rows else None

    def _query(self, sql: str, params: list[Any]) -> list[Row]:
        state = self._state
        cur = state.cur if state.cur is not None else self._open_thread(state)
        if state.doomed is not None:
            self._refuse_if_doomed(state)
        # A read outside a session is one statement in autocommit mode: SQLite
        # gives it a consistent snapshot without an explicit transaction.
        with self._gate:
            try:
                cur.execute(sql, params)
                rows = cur.fetchall()
            except sqlite3.Error as exc:
                self._raise(exc)
            names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in rows]

    def update(self, table: str, where: Mapping[str, Any], values: Mapping[str, Any]) -> int:
        """Set ``values`` on the rows matching ``where`` (never empty: see wipe)."""
        values = _values_mapping(values, f"update() values for {table!r}")
        if not values:
            raise ValueError(f"update() on {table!r} needs at least one column to set")
        # Build (and so validate) the statement before taking the write lock.
        sql, params = self._update_sql(table, where, values)
        state = self._state
        if state.depth == 0:
            with self.session():
                return self._update(state, table, where, values, sql, params)
        return self._update(state, table, where, values, sql, params)

    def _update(self, state: _ThreadState, table: str, where: Mapping[str, Any], values: dict[str, Any],
                sql: str, params: list[Any]) -> int:
        self._refuse_if_doomed(state)
        hooks = self._update_hooks.get(table)
        if hooks is not None and hooks[0]:
            values, where = dict(values), dict(where)
            self._fire(hooks[0], CrudEvent("before_update", table, values, where, None, self))
            sql, params = self._update_sql(table, where, values)  # the callbacks may have changed them
        changed = self._run(state, sql, params).rowcount
        if hooks is not None and hooks[1]:
            self._fire(hooks[1], CrudEvent("after_update", table, dict(values), dict(where), changed, self))
        return changed

    def delete(self, table: str, where: Mapping[str, Any]) -> int:
        """Delete the rows matching ``where`` (never empty: see wipe)."""
        sql, params = self._delete_sql(table, where)
        state = self._state
        if state.depth == 0:
            with self.session():
                return self._delete(state, table, where, sql, params)
        return self._delete(state, table, where, sql, params)

    def _delete(self, state: _ThreadState, table: str, where: Mapping[str, Any], sql: str, params: list[Any]) -> int:
        self._refuse_if_doomed(state)
        hooks = self._delete_hooks.get(table)
        if hooks is not None and hooks[0]:
            where = dict(where)
            self._fire(hooks[0], CrudEvent("before_delete", table, None, where, None, self))
            sql, params = self._delete_sql(table, where)
        deleted = self._run(state, sql, params).rowcount
        if hooks is not None and hooks[1]:
            self._fire(hooks[1], CrudEvent("after_delete", table, None, dict(where), deleted, self))
        return deleted

    # ------------------------------------------------------------------ schema

    def _load_schema(self) -> dict[str, TableInfo]:
        rows = self._query(
            "SELECT m.name AS table_name, m.type AS type, m.sql AS sql, p.name AS column_name"
            " FROM sqlite_master AS m JOIN pragma_table_info(m.name) AS p"
            " WHERE m.type IN ('table', 'view') AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
            " AND m.name != ? ORDER BY m.name, p.cid",
            [BOOKKEEPING_TABLE],
        )
        columns: dict[str, list[str]] = {}
        views = set()
        without_rowid = set()
        for row in rows:
            table = row["table_name"]
            if table not in columns:
                columns[table] = []
                if row["type"] == "view":
                    views.add(table)
                elif not _HAS_TABLE_LIST and _declares_without_rowid(row["sql"]):
                    without_rowid.add(table)
            columns[table].append(row["column_name"])
        if _HAS_TABLE_LIST:  # SQLite's own answer rather than reading the CREATE text
            listed = self._query("SELECT name FROM pragma_table_list WHERE schema = 'main' AND wr", [])
            without_rowid = {row["name"] for row in listed}
        return {
            table: TableInfo(tuple(names), view=table in views, without_rowid=table in without_rowid)
            for table, names in columns.items()
        }

    def _tables(self) -> set[str]:
        """Tables that hold user rows: not SQLite's own, not bookkeeping, not FTS shadows."""
        if sqlite3.sqlite_version_info >= (3, 37):  # pragma_table_list knows shadow tables
            rows = self._query(
                "SELECT name FROM pragma_table_list WHERE schema = 'main' AND type IN ('table', 'virtual')", []
            )
        else:
            rows = self._query("SELECT name FROM sqlite_master WHERE type = 'table'", [])
        return {
            row["name"]
            for row in rows
            if not row["name"].startswith("sqlite_") and row["name"] != BOOKKEEPING_TABLE
        }

    # ------------------------------------------------------------------ migrations

    def _applied(self) -> dict[tuple[str, str], Applied]:
        exists = self._query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", [BOOKKEEPING_TABLE])
        if not exists:
            return {}
        rows = self._query(f"SELECT namespace, id, checksum, applied_at, tables FROM {BOOKKEEPING_TABLE}", [])
        return {
            (r["namespace"], r["id"]): Applied(
                r["namespace"], r["id"], r["checksum"], r["applied_at"], tuple(json.loads(r["tables"]))
            )
            for r in rows
        }

    def migration_status(
        self,
        migrations: Iterable[Migration] | str | PathLike[str] | None = None,
        namespace: str | None = None,
    ) -> list[MigrationStatus]:
        """Plain records of each migration's state; without migrations, what is recorded."""
        applied = self._applied()
        if migrations is None:
            return [
                MigrationStatus(a.namespace, a.id, "applied", None, a.checksum, a.applied_at)
                for a in sorted(applied.values(), key=attrgetter("namespace", "id"))
                if namespace is None or a.namespace == namespace
            ]
        return status(collect(migrations, namespace), applied)

    def upgrade(
        self,
        migrations: Iterable[Migration] | str | PathLike[str],
        namespace: str | None = None,
    ) -> list[str]:
        """Apply pending migrations in order, each in its own transaction.

        Drift (an applied migration whose SQL changed) anywhere in the set
        stops everything before anything is applied. A migration that fails
        is rolled back whole and raises MigrationError, its cause being the
        SQLite error. Returns the ids this call applied.
        """
        ordered = collect(migrations, namespace)
        state = self._state
        if state.depth:
            raise MigrationError(
                f"upgrade() of {self._label} inside a session: each migration runs in its own "
                f"transaction, so call it outside any session",
                path=self._label,
            )
        states = status(ordered, self._applied())
        drifted = [s for s in states if s.state == "drifted"]
        if drifted:
            raise self._drift_error(drifted, ordered)
        if not any(s.state == "pending" for s in states):
            return []  # the usual case when a process opens a database: no write lock taken
        with self.session():
            self._run(state, BOOKKEEPING_DDL)
        done = []
        try:
            for migration in ordered:
                if self._apply(state, migration):
                    done.append(migration.id)
        finally:
            self._forget_schema()
        return done

    def _drift_error(self, drifted: list[MigrationStatus], ordered: list[Migration]) -> MigrationError:
        by_key = {(m.namespace, m.id): m for m in ordered}
        names = ", ".join(by_key[s.namespace, s.id].name for s in drifted)
        first = by_key[drifted[0].namespace, drifted[0].id]
        return MigrationError(
            f"applied migration{'s' if len(drifted) > 1 else ''} {names} changed since "
            f"{'they were' if len(drifted) > 1 else 'it was'} applied to {self._label} (checksum differs); "
            f"nothing was applied. Restore the applied SQL and put changes in a new migration",
            path=first.path or self._label,
        )

    def _apply(self, state: _ThreadState, migration: Migration) -> bool:
        if not self.foreign_keys:
            return self._apply_in_transaction(state, migration)
        # As SQLite's documented table rebuild (create new, copy, drop old,
        # rename) requires, foreign keys are off while the migration runs and
        # checked with foreign_key_check before it commits. The pragma only
        # works outside a transaction; the gate keeps a memory database's
        # other threads out meanwhile.
        with self._gate:
            self._run(state, "PRAGMA foreign_keys = OFF")
            try:
                return self._apply_in_transaction(state, migration)
            finally:
                self._run(state, "PRAGMA foreign_keys = ON")

    def _apply_in_transaction(self, state: _ThreadState, migration: Migration) -> bool:
        statements = split_statements(migration)
        with self.session():
            # Holding the write lock, look again: another process may have
            # applied this migration while this one waited for the lock.
            record = self._run(
                state,
                f"SELECT checksum FROM {BOOKKEEPING_TABLE} WHERE namespace = ? AND id = ?",
                [migration.namespace, migration.id],
            ).fetchone()
            if record is not None:
                if record[0] != migration.checksum:
                    raise self._drift_error(
                        [MigrationStatus(migration.namespace, migration.id, "drifted", None, record[0], None)],
                        [migration],
                    )
                return False
            before = self._tables()
            for number, statement in enumerate(statements, 1):
                try:
                    state.cur.execute(statement.sql)  # type: ignore[union-attr]
                except sqlite3.Error as exc:
                    raise MigrationError(
                        f"migration {migration.name} failed at statement {number} of {len(statements)} "
                        f"({migration.location(statement.line)}) on {self._label}: {exc}; "
                        f"nothing of it was applied\n  {statement.head}",
                        path=migration.path or self._label,
                        line=statement.line,
                    ) from exc
                if not state.conn.in_transaction:  # type: ignore[union-attr]
                    raise MigrationError(
                        f"migration {migration.name} ended the transaction at statement {number} "
                        f"({migration.location(statement.line)}); nothing of it was applied",
                        path=migration.path or self._label,
                        line=statement.line,
                    )
            if self.foreign_keys:
                broken = self._run(state, "PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise MigrationError(
                        f"migration {migration.name} leaves {len(broken)} row(s) in {self._label} breaking "
                        f"foreign keys (first: table {broken[0][0]}, rowid {broken[0][1]}, references "
                        f"{broken[0][2]}); nothing of it was applied",
                        path=migration.path or self._label,
                    )
            created = sorted(self._tables() - before)
            self._run(
                state,
                f"INSERT INTO {BOOKKEEPING_TABLE} (namespace, id, checksum, applied_at, tables)"
                " VALUES (?, ?, ?, ?, ?)",
                [
                    migration.namespace,
                    migration.id,
                    migration.checksum,
                    datetime.now(timezone.utc).isoformat(timespec="microseconds"),
                    json.dumps(created),
                ],
            )
        LOG.info("%s: applied migration %s", self._label, migration.name)
        return True

    # ------------------------------------------------------------------ wipe, backup

    def wipe(self, namespace: str | None = None) -> dict[str, int]:
        """Delete every row of the tables ``namespace``'s migrations created, or
        of all tables; the schema and the migration records stay. Callbacks do
        not fire. Returns the rows deleted per table."""
        if namespace is None:
            tables = sorted(self._tables())
        else:
            if type(namespace) is not str:
                raise TypeError(f"wipe() namespace must be a str, not {type(namespace).__name__}")
            records = [a for a in self._applied().values() if a.namespace == namespace]
            if not records:
                known = sorted({a.namespace for a in self._applied().values()})
                raise MigrationError(
                    f"no migrations of namespace {namespace!r} are recorded in {self._label}; "
                    f"namespaces: {', '.join(known) or '(none)'}",
                    path=self._label,
                )
            existing = self._tables()
            tables = sorted({t for a in records for t in a.tables} & existing)
        state = self._state
        counts = {}
        with self.session():
            # Rows referencing each other across the wiped tables are all gone
            # by COMMIT; deferring the check makes the deletion order irrelevant.
            self._run(state, "PRAGMA defer_foreign_keys = ON")
            for table in tables:
                counts[table] = self._run(state, f"DELETE FROM {quote(table)}").rowcount
        LOG.info("%s: wiped %s", self._label, ", ".join(tables) or "nothing")
        return counts

    def backup(self, path: str | PathLike[str]) -> Path:
        """Copy the database to ``path`` with SQLite's online backup API.

        The copy is one consistent snapshot of committed data, taken while
        other connections keep writing (WAL readers do not block writers). It
        replaces whatever database ``path`` held and is left in rollback
        journal mode, a single self-contained file. Inside a session, a file
        database's copy leaves out the session's uncommitted work; a memory
        database's backup is refused there (DatabaseError).
        """
        if not isinstance(path, (str, PathLike)):
            raise TypeError(f"backup() path must be a str or path, not {type(path).__name__}")
        target = Path(fspath(path))
        if self._closed:
            raise self._closed_error()
        if self._shared is not None and self._state.depth:
            # The copy reads through the session's own connection, which holds
            # the write transaction; CPython's Connection.backup retries on
            # SQLITE_BUSY/LOCKED without limit, so it would wait forever.
            raise DatabaseError(
                f"backup() of the {MEMORY} database inside a session would wait forever for that session's "
                f"own transaction; call it after the session ends",
                path=self._label,
            )
        if self.path is not None and (
            target.resolve() == self.path.resolve() or (target.exists() and os.path.samefile(target, self.path))
        ):
            raise DatabaseError(f"refusing to back up {self._label} onto itself", path=self._label)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseError(
                f"cannot create the folder {target.parent} for the backup {target}: {exc.strerror or exc}",
                path=str(target),
            ) from exc
        try:
            destination = sqlite3.connect(target, timeout=self.timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise DatabaseError(f"cannot open the backup file {target}: {exc}", path=str(target)) from exc
        try:
            if self._shared is not None:
                with self._gate:  # waits for another thread's session to end
                    self._shared.backup(destination)
            else:
                # A connection of its own reads committed data only, whatever
                # session the calling thread may have open, and a WAL reader
                # waits for no writer. pages=-1 (the default) copies in one
                # step: one read snapshot throughout.
                source = self._open()
                try:
                    source.backup(destination)
                finally:
                    source.close()
            destination.execute("PRAGMA journal_mode = DELETE")
        except sqlite3.Error as exc:
            code = _code(exc)
            if code in (_NOTADB, _CORRUPT, _READONLY, _CANTOPEN, _IOERR):
                raise DatabaseError(f"cannot write the backup {target}: {exc}", path=str(target)) from exc
            self._raise(exc)
        finally:
            destination.close()
        LOG.info("%s: backed up to %s", self._label, target)
        return target


def _code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def _declares_without_rowid(sql: str | None) -> bool:
    """Whether a CREATE TABLE statement ends in WITHOUT ROWID (SQLite < 3.37 only).

    Table options follow the last parenthesis once strings, quoted names and
    comments are blanked out, so no column default or comment can fool it.
    """
    if not sql:
        return False
    code = _NOT_CODE.sub(lambda m: " " if m.group(0)[0] in "-/" else "x", sql)
    return _WITHOUT_ROWID.search(code, code.rfind(")") + 1) is not None


# Connections alive in this process, so a forked child can drop the parent's
# sqlite3 handles (see SQLiteConnection._after_fork); and the handles dropped,
# kept referenced so they are never closed or collected in the child.
_LIVE: weakref.WeakSet[SQLiteConnection] = weakref.WeakSet()
_INHERITED: list[sqlite3.Connection] = []


def _reset_after_fork() -> None:
    for connection in list(_LIVE):
        connection._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
