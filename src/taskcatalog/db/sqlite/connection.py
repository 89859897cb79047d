"""``SQLiteConnection``: CRUD on plain dicts over the standard ``sqlite3`` module.

Concurrency rests on four SQLite behaviours:

* WAL journal mode: readers never block the writer and the writer never
  blocks readers; only writers queue for the single write lock.
* A busy timeout: a connection that finds the lock taken retries for up to
  ``timeout`` seconds instead of failing at once with "database is locked".
* ``BEGIN IMMEDIATE`` for every write: the write lock is taken when the
  transaction starts, where the busy timeout applies. A deferred transaction
  that reads first and writes later cannot wait: when another connection has
  committed in between, its snapshot is stale and SQLite fails it at once.
* One ``sqlite3`` connection per thread (``threads.py``), opened with
  ``isolation_level=None`` so the module never issues a BEGIN or COMMIT of
  its own (``opening.py``).

This module holds the class and its CRUD calls; each other concern has a
module beside it: sessions (``sessions.py``), what errors become
(``errors.py``), values SQLite cannot store (``values.py``), the schema
(``schema.py``), backups (``backup.py``). Migrations run through the
engine-independent runner (``../migrate.py``) and the hooks at the end.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from functools import partial
from itertools import repeat
from operator import itemgetter
from os import PathLike, fspath
from pathlib import Path
from typing import Any, NoReturn

from ...errors import MigrationError
from ..base import Connection, Params, Row, TableInfo, _iter_rows, _refuse_emptied, _values_mapping, quote
from ..callbacks import CrudEvent, Pair
from ..migrate import applied
from ..migrations import BOOKKEEPING_TABLE, Migration
from . import backup as backups, schema
from .errors import ErrorTranslator
from .opening import MEMORY, SYNCHRONOUS, Settings, open_connection, prepare_folder, target
from .sessions import STATEMENT_ERRORS, Sessions
from .threads import ThreadConnections, ThreadState
from .values import Parameters, bind_error_in_rows, nan_at, nan_error, refuse_nan

__all__ = ["SQLiteConnection"]

LOG = logging.getLogger("taskcatalog.db")

# Rows per executemany in create_many.
_CHUNK = 4096
#: A statement ready to run: its text, its parameters, and what they are (to name a bad one).
Statement = tuple[str, list[Any], Parameters]


class SQLiteConnection(Connection):
    """A SQLite database used by any number of threads and processes at once.

    ``timeout`` is how long a write waits for another connection's write
    lock before ``DatabaseLocked``; ``synchronous`` is SQLite's durability
    setting (NORMAL: in WAL mode a crash of the program loses nothing, a power
    cut may lose the last commits); ``foreign_keys`` turns on SQLite's
    enforcement of REFERENCES clauses.
    """

    dialect = "sqlite"
    engine_error = sqlite3.Error

    def __init__(
        self,
        url: str | PathLike[str],
        *,
        timeout: float = 30.0,
        synchronous: str = "NORMAL",
        foreign_keys: bool = True,
    ) -> None:
        path = target(url)
        super().__init__(fspath(url) if isinstance(url, PathLike) else url)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0:
            raise ValueError(f"timeout must be a number of seconds >= 0, not {timeout!r}")
        if not isinstance(synchronous, str) or synchronous.upper() not in SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {', '.join(SYNCHRONOUS)}, not {synchronous!r}")
        # Messages name the file as the caller did; connections open it by its
        # absolute path, so a thread started after os.chdir() finds the same file.
        self._label = MEMORY if path is None else str(path)
        self.path = None if path is None else path.absolute()
        self.timeout = float(timeout)
        self.synchronous = synchronous.upper()
        self.foreign_keys = bool(foreign_keys)
        # (table, column names) -> prepared INSERT text, and for create_many
        # the same text with one item getter per column.
        self._inserts: dict[tuple[str, tuple[str, ...]], str] = {}
        self._inserts_many: dict[tuple[str, tuple[str, ...]], tuple[str, tuple[itemgetter[Any], ...]]] = {}
        # The write path's callback lookups: the registry's own dicts, never replaced.
        self._create_hooks = self._callbacks.create
        self._update_hooks = self._callbacks.update
        self._delete_hooks = self._callbacks.delete
        if self.path is not None:
            prepare_folder(self.path, self._label)
        self._settings = Settings(self.path, self._label, self.timeout, self.synchronous, self.foreign_keys)
        self._threads = ThreadConnections(
            partial(open_connection, self._settings), self._label, self.timeout, self.path
        )
        self._errors = ErrorTranslator(self._threads, self._label, self.timeout, self._forget_schema)
        self._sessions = Sessions(self._threads, self._errors, self._label)
        self._threads.cursor()  # this thread's connection now, so a bad path fails at connect time
        LOG.debug("opened %s", self._label)

    @property
    def label(self) -> str:
        return self._label

    def __repr__(self) -> str:
        return f"<SQLiteConnection {self._label} {'closed' if self._threads.closed else 'open'}>"

    def close(self) -> None:
        """Close every thread's connection; idempotent.

        Call it when no other thread is in the middle of a call; a session
        still open in another thread is rolled back by SQLite.
        """
        if self._threads.close():
            LOG.debug("closed %s", self._label)

    def session(self) -> contextlib.AbstractContextManager[SQLiteConnection]:
        return self._sessions.session(self)

    def _raise(
        self, exc: BaseException, values: Sequence[object] = (), parameters: Parameters | None = None
    ) -> NoReturn:
        """Raise the error a caller should see for what executing a statement raised (errors.py)."""
        self._errors.raise_for(exc, values, parameters)

    def _forget_schema(self) -> None:
        super()._forget_schema()
        self._inserts = {}
        self._inserts_many = {}

    def _checked(self, built: tuple[str, Params], table: str, stored: int) -> Statement:
        """A statement the base class built, a NaN among its parameters refused; the
        first ``stored`` parameters are values to store, the rest compare."""
        sql, (params, names) = built
        parameters = Parameters(table, names, stored)
        refuse_nan(params, parameters, self._label)
        return sql, params, parameters

    def create(self, table: str, values: Mapping[str, Any]) -> int:
        # The hot path: one thread-local read, one dict lookup for the prepared
        # INSERT, one for callbacks. Validation happens once per (table, columns).
        state = self._threads.state
        cur = state.cur
        if cur is None or state.depth == 0 or state.doomed is not None:
            return self._create_outside(table, values)
        if type(values) is not dict or type(table) is not str:
            if type(table) is not str:
                self._columns(table)  # raises SchemaError
            values = _values_mapping(values, f"create() values for {table!r}")
        hooks = self._create_hooks.get(table)
        if hooks is not None:
            row_id = self._create_hooked(state, table, values, hooks)
            assert row_id is not None  # a table with row ids
            return row_id
        names = tuple(values)
        sql = self._inserts.get((table, names)) or self._prepare_insert(table, names)
        params = tuple(values.values())
        try:  # a quick look for a NaN, the only common value unequal to itself (values.py)
            for value in params:
                if value != value:
                    raise ValueError(value)
        except Exception:  # a NaN, or a value whose != raised: the careful look decides
            refuse_nan(params, Parameters(table, names, len(names)), self._label)
        try:
            return cur.execute(sql, params).lastrowid  # type: ignore[return-value]  # an int after an INSERT
        except STATEMENT_ERRORS as exc:
            self._raise(exc, params, Parameters(table, names, len(names)))

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
        self._sessions.refuse_if_doomed(self._threads.state)
        with self.session():
            return self.create(table, values)

    def _create_hooked(
        self, state: ThreadState, table: str, values: dict[str, Any], hooks: Pair, many: int | None = None,
        rowid: bool = True,
    ) -> int | None:
        """One create that fires callbacks, or row ``many`` of a create_many; ``rowid=False``
        (a WITHOUT ROWID table) reports no id to the after_create callbacks."""
        before, after = hooks
        row = dict(values)
        if before:
            self._sessions.fire(state, before, CrudEvent("before_create", table, row, None, None, self))
        names = tuple(row)
        if rowid:
            sql = self._sessions.doom_on_failure(state, lambda: self._inserts.get((table, names)) or self._prepare_insert(table, names))
        else:
            sql = self._sessions.doom_on_failure(state, lambda: self._insert_sql(table, names, "create_many"))
        params = tuple(row.values())
        parameters = Parameters(table, names, len(names), many)
        refuse_nan(params, parameters, self._label)
        cur = self._sessions.run(state, sql, params, parameters)
        row_id = cur.lastrowid if rowid else None
        if after:
            self._sessions.fire(state, after, CrudEvent("after_create", table, row, None, row_id, self))
        return row_id

    def create_many(self, table: str, rows: Iterable[Mapping[str, Any]]) -> int:
        """Insert rows that all have the same columns; all of them or none.

        Without callbacks on the table the rows go to ``executemany`` in one
        statement; with callbacks each row is created (and fires them) in turn.
        Returns the number of rows; use ``create`` when you need the ids.
        """
        batch = rows if type(rows) is list else list(_iter_rows(rows))
        info = self._table(table)
        if not batch:
            return 0
        with self.session():  # its own transaction, or a savepoint in the caller's session
            state = self._threads.state
            hooks = self._create_hooks.get(table)
            if hooks is not None:
                for number, row in enumerate(batch):
                    self._sessions.refuse_if_doomed(state)  # a callback raised and was caught
                    values = _values_mapping(row, f"create_many() row {number} for {table!r}")
                    self._create_hooked(state, table, values, hooks, number, not info.without_rowid)
                return len(batch)
            names = tuple(_values_mapping(batch[0], f"create_many() row 0 for {table!r}"))
            prepared = self._inserts_many.get((table, names))
            if prepared is None:
                prepared = self._inserts_many[table, names] = (
                    self._insert_sql(table, names, "create_many"),
                    tuple(map(itemgetter, names)),
                )
            sql, getters = prepared
            # Equal lengths plus every name present (a getter raises KeyError
            # otherwise) mean every row has the same columns. Both run in C.
            try:
                same = list(map(len, batch)).count(len(names)) == len(batch)
            except TypeError:  # a row that is not a mapping
                same = False
            if not same:
                self._row_mismatch(table, batch, names, info.columns)
            cur = state.cur if state.cur is not None else self._threads.cursor()
            # In chunks: the checks of a chunk's values find them still in the CPU's caches.
            for first in range(0, len(batch), _CHUNK):
                chunk = batch[first : first + _CHUNK]
                try:
                    columns = [list(map(get, chunk)) for get in getters]
                except (KeyError, TypeError, AttributeError):
                    self._row_mismatch(table, batch, names, info.columns)
                    raise
                self._insert_columns(cur, sql, columns, len(chunk), first, Parameters(table, names, len(names)))
        return len(batch)

    def _insert_columns(
        self, cur: sqlite3.Cursor, sql: str, columns: list[list[Any]], count: int, first: int, parameters: Parameters
    ) -> None:
        """Insert ``count`` rows given as columns, row ``first`` of a create_many onward."""
        # A NaN would be stored as NULL: one look per column, in C (values.py).
        for index, column in enumerate(columns):
            number = nan_at(column)
            if number is not None:
                raise nan_error(index, replace(parameters, row=first + number), self._label)
        # zip reuses its result tuple once sqlite3 has bound it, which beats
        # building a tuple per row. A value that fails to bind stops
        # executemany inside create_many's transaction or savepoint, whose
        # rollback leaves no row behind.
        try:
            cur.executemany(sql, zip(*columns) if columns else repeat((), count))
        except STATEMENT_ERRORS as exc:
            unbound = bind_error_in_rows(exc, zip(*columns), parameters, self._label, first)
            if unbound is not None:
                raise unbound from exc
            self._raise(exc)

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
        sql, params, parameters = self._checked(self._select_sql(table, where, order_by, limit), table, 0)
        rows, columns = self._sessions.fetch(sql, params, parameters)
        return [dict(zip(columns, row)) for row in rows]

    def get(self, table: str, id: int) -> Row | None:
        """The row whose rowid (its INTEGER PRIMARY KEY, if it has one) is ``id``.

        SchemaError for a view or a WITHOUT ROWID table, whose rows have no id;
        None for an id outside SQLite's 64-bit range, which no row can have.
        """
        rowid = self._rowid(table, "get", "find its rows with read(where=...)")
        if isinstance(id, bool) or not isinstance(id, int):
            raise TypeError(f"get() id must be an int, not {type(id).__name__}")
        if not -(2**63) <= id < 2**63:
            return None
        rows, names = self._sessions.fetch(f"SELECT * FROM {quote(table)} WHERE {rowid} = ?", [id])
        return dict(zip(names, rows[0])) if rows else None

    def update(self, table: str, where: Mapping[str, Any], values: Mapping[str, Any]) -> int:
        """Set ``values`` on the rows matching ``where`` (never empty: see wipe)."""
        values = _values_mapping(values, f"update() values for {table!r}")
        if not values:
            raise ValueError(f"update() on {table!r} needs at least one column to set")
        # Build (and so validate) the statement before taking the write lock.
        statement = self._checked(self._update_sql(table, where, values), table, len(values))
        state = self._threads.state
        if state.depth == 0:
            with self.session():
                return self._update(state, table, where, values, statement)
        return self._update(state, table, where, values, statement)

    def _update(
        self, state: ThreadState, table: str, where: Mapping[str, Any], values: dict[str, Any], statement: Statement
    ) -> int:
        self._sessions.refuse_if_doomed(state)
        hooks = self._update_hooks.get(table)
        if hooks is not None and hooks[0]:
            values, where = dict(values), dict(where)
            self._sessions.fire(state, hooks[0], CrudEvent("before_update", table, values, where, None, self))
            statement = self._sessions.doom_on_failure(state, lambda: self._rebuilt("update", table, where, values))
        sql, params, parameters = statement
        changed: int = self._sessions.run(state, sql, params, parameters).rowcount
        if hooks is not None and hooks[1]:
            self._sessions.fire(state, hooks[1], CrudEvent("after_update", table, dict(values), dict(where), changed, self))
        return changed

    def delete(self, table: str, where: Mapping[str, Any]) -> int:
        """Delete the rows matching ``where`` (never empty: see wipe)."""
        statement = self._checked(self._delete_sql(table, where), table, 0)
        state = self._threads.state
        if state.depth == 0:
            with self.session():
                return self._delete(state, table, where, statement)
        return self._delete(state, table, where, statement)

    def _delete(self, state: ThreadState, table: str, where: Mapping[str, Any], statement: Statement) -> int:
        self._sessions.refuse_if_doomed(state)
        hooks = self._delete_hooks.get(table)
        if hooks is not None and hooks[0]:
            where = dict(where)
            self._sessions.fire(state, hooks[0], CrudEvent("before_delete", table, None, where, None, self))
            statement = self._sessions.doom_on_failure(state, lambda: self._rebuilt("delete", table, where, None))
        sql, params, parameters = statement
        deleted: int = self._sessions.run(state, sql, params, parameters).rowcount
        if hooks is not None and hooks[1]:
            self._sessions.fire(state, hooks[1], CrudEvent("after_delete", table, None, dict(where), deleted, self))
        return deleted

    def _rebuilt(self, verb: str, table: str, where: dict[str, Any], values: dict[str, Any] | None) -> Statement:
        """The update or delete again, from the values and where its before_* callbacks left."""
        _refuse_emptied(verb, table, where, values)
        if values is None:
            return self._checked(self._delete_sql(table, where), table, 0)
        return self._checked(self._update_sql(table, where, values), table, len(values))

    def wipe(self, namespace: str | None = None) -> dict[str, int]:
        """Delete every row of the tables ``namespace``'s migrations created, or
        of all tables; the schema and the migration records stay. Callbacks do
        not fire. Returns the rows deleted per table."""
        if namespace is None:
            tables = sorted(self._tables() - {BOOKKEEPING_TABLE})
        else:
            if type(namespace) is not str:
                raise TypeError(f"wipe() namespace must be a str, not {type(namespace).__name__}")
            records = applied(self).values()
            mine = [a for a in records if a.namespace == namespace]
            if not mine:
                raise MigrationError(
                    f"no migrations of namespace {namespace!r} are recorded in {self._label}; "
                    f"namespaces: {', '.join(sorted({a.namespace for a in records})) or '(none)'}",
                    path=self._label,
                )
            tables = sorted({t for a in mine for t in a.tables} & self._tables())
        state = self._threads.state
        counts = {}
        with self.session():
            # Rows referencing each other across the wiped tables are all gone
            # by COMMIT; deferring the check makes the deletion order irrelevant.
            self._sessions.run(state, "PRAGMA defer_foreign_keys = ON")
            for table in tables:
                counts[table] = self._sessions.run(state, f"DELETE FROM {quote(table)}").rowcount
        LOG.info("%s: wiped %s", self._label, ", ".join(tables) or "nothing")
        return counts

    def backup(self, path: str | PathLike[str]) -> Path:
        """Copy the database to ``path`` with SQLite's online backup API.

        The copy is one consistent snapshot of committed data, taken while
        other connections keep writing (WAL readers do not block writers). It
        replaces whatever database ``path`` held, unless another connection
        has that file open (DatabaseError, nothing written), and is left in
        rollback journal mode, a single self-contained file. Inside a session,
        a file database's copy leaves out the session's uncommitted work; a
        memory database's backup is refused there (DatabaseError).
        """
        if not isinstance(path, (str, PathLike)):
            raise TypeError(f"backup() path must be a str or path, not {type(path).__name__}")
        destination = Path(fspath(path))
        backups.backup(destination, self._settings, self._threads, self._errors)
        LOG.info("%s: backed up to %s", self._label, destination)
        return destination

    # The hooks through which Connection and the migration runner reach SQLite.

    def _load_schema(self) -> dict[str, TableInfo]:
        return schema.load_schema(self._execute)

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._sessions.fetch(sql, params)[0]

    def _execute_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> int:
        return self._sessions.run_many(sql, rows)

    def _execute_migration(self, sql: str) -> None:
        state = self._threads.state
        (state.cur if state.cur is not None else self._threads.cursor()).execute(sql)

    def _tables(self) -> set[str]:
        return schema.tables(self._execute)

    def _in_session(self) -> bool:
        return self._threads.state.depth > 0

    def _in_transaction(self) -> bool:
        return self._sessions.in_transaction()

    def _migration_transaction(self, migration: Migration) -> contextlib.AbstractContextManager[None]:
        return self._sessions.migration_transaction(migration, self.foreign_keys)
