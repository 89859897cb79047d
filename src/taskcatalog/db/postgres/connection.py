"""``PostgresConnection``: CRUD on plain dicts over psycopg 3, the same contract as SQLite's.

What PostgreSQL changes, and how this backend answers it:

* Many writers at once (MVCC): no database-wide write lock, so a session
  does not wait at ``BEGIN``; a statement waits for the row or table locks
  it needs, at most ``timeout`` seconds (PostgreSQL's ``lock_timeout``),
  then ``DatabaseLocked``.
* Sessions are READ COMMITTED transactions on one psycopg connection per
  thread (``threads.py``), in autocommit mode between them, so a call
  outside a session is one statement and its own transaction.
* A refused statement aborts PostgreSQL's transaction; ``sessions.py``
  turns that into the same rule as a callback that raised, for the level
  the error happened in (see there).
* No rowid: a row's id is its table's single-column integer primary key,
  returned by ``INSERT ... RETURNING`` (``schema.py``).
* Transactional DDL: a failed migration leaves nothing behind by itself;
  migrations take an advisory lock so two processes apply each once.

This module holds the class and its CRUD calls; each other concern has a
module beside it: opening and the driver (``opening.py``), sessions
(``sessions.py``), errors (``errors.py``), values psycopg cannot send
(``values.py``), the schema (``schema.py``), backup and restore
(``backup.py``).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from functools import partial
from operator import itemgetter
from os import PathLike, fspath
from pathlib import Path
from typing import Any, ClassVar, NoReturn

from ...errors import DatabaseError, MigrationError
from ..base import Connection, Params, Row, TableInfo, _iter_rows, _refuse_emptied, _values_mapping, quote
from ..callbacks import CrudEvent, Pair
from ..migrate import applied
from ..migrations import BOOKKEEPING_TABLE, Migration
from . import backup as backups, schema
from .errors import ErrorTranslator
from .opening import driver, open_connection, settings
from .sessions import Sessions
from .threads import ThreadConnections, ThreadState
from .values import Parameters

__all__ = ["PostgresConnection"]

LOG = logging.getLogger("taskcatalog.db")

#: A statement ready to run: its text, its parameters, and what they are (to name a bad one).
Statement = tuple[str, list[Any], Parameters]
# A double-quoted identifier, as base.quote() writes them.
_IDENTIFIER = re.compile(r'"(?:[^"]|"")*"')


class PostgresConnection(Connection):
    """A PostgreSQL database used by any number of threads, processes and hosts at once.

    ``url`` is ``postgresql://user[:password]@host[:port]/database`` (or
    ``postgres://``; libpq's query options such as ``?sslmode=require``
    work too). ``timeout`` is how long a statement waits for a lock another
    connection holds before ``DatabaseLocked``; ``connect_timeout`` how long
    opening a connection may take before ``DatabaseError``.
    """

    dialect = "postgresql"
    param = "%s"
    # Set to psycopg.Error when the driver is first loaded (it is imported only then).
    engine_error = Exception
    # SQLite's LIKE ignores ASCII case and has no escape character: ILIKE ... ESCAPE '' does the same.
    _operators: ClassVar[Mapping[str, str]] = {**Connection._operators, "like": "ILIKE {p} ESCAPE ''"}

    def __init__(self, url: str, *, timeout: float = 30.0, connect_timeout: float = 10.0) -> None:
        self._settings = settings(url, timeout, connect_timeout)
        super().__init__(url)
        self._label = self._settings.label
        self.timeout = self._settings.timeout
        self.connect_timeout = self._settings.connect_timeout
        psycopg = driver(self._label)
        PostgresConnection.engine_error = psycopg.Error
        self._psycopg = psycopg
        # (table, column names) -> prepared INSERT text, and for create_many
        # the same text with the getter of a row's values.
        self._inserts: dict[tuple[str, tuple[str, ...]], str] = {}
        self._inserts_many: dict[tuple[str, tuple[str, ...]], tuple[str, Any]] = {}
        # Whether a name of the schema holds a '%', which psycopg would read
        # as a placeholder: then SQL text gets its '%' doubled (see _sql).
        self._percent = False
        # The write path's callback lookups: the registry's own dicts, never replaced.
        self._create_hooks = self._callbacks.create
        self._update_hooks = self._callbacks.update
        self._delete_hooks = self._callbacks.delete
        self._threads = ThreadConnections(partial(open_connection, self._settings), self._label)
        self._errors = ErrorTranslator(self._threads, self._label, self.timeout, self._forget_schema, psycopg)
        self._sessions = Sessions(self._threads, self._errors, self._label, psycopg)
        self._threads.cursor()  # this thread's connection now, so a bad URL or server fails at connect time
        LOG.debug("opened %s", self._label)

    @property
    def label(self) -> str:
        return self._label

    def __repr__(self) -> str:
        return f"<PostgresConnection {self._label} {'closed' if self._threads.closed else 'open'}>"

    def close(self) -> None:
        """Close every thread's connection; idempotent.

        Call it when no other thread is in the middle of a call; a session
        still open in another thread is rolled back by the server.
        """
        if self._threads.close():
            LOG.debug("closed %s", self._label)

    def session(self) -> contextlib.AbstractContextManager[PostgresConnection]:
        return self._sessions.session(self)

    def _raise(self, exc: BaseException, values: Sequence[object] = (), parameters: Parameters | None = None) -> NoReturn:
        self._errors.raise_for(exc, values, parameters)

    def _forget_schema(self) -> None:
        super()._forget_schema()
        self._inserts = {}
        self._inserts_many = {}

    def _sql(self, sql: str) -> str:
        """SQL text the base class built, ready for psycopg: a '%' inside a quoted name doubled."""
        if self._percent:
            return _IDENTIFIER.sub(lambda m: m.group(0).replace("%", "%%"), sql)
        return sql

    def _statement(self, built: tuple[str, Params], table: str, stored: int) -> Statement:
        """A statement the base class built; the first ``stored`` parameters are values to store."""
        sql, (params, names) = built
        return self._sql(sql), params, Parameters(table, names, stored)

    # ---------------------------------------------------------------- create

    def create(self, table: str, values: Mapping[str, Any]) -> int:
        # The hot path: one thread-local read, one dict lookup for the prepared
        # INSERT, one for callbacks, one round trip (INSERT ... RETURNING).
        state = self._threads.state
        cur = state.cur
        if cur is None or state.doomed is not None or state.aborted is not None:
            self._sessions.cursor(state)  # refuses in a failed session; connects
            cur = state.cur
            assert cur is not None
        if type(values) is not dict or type(table) is not str:
            if type(table) is not str:
                self._columns(table)  # raises SchemaError
            values = _values_mapping(values, f"create() values for {table!r}")
        hooks = self._create_hooks.get(table)
        if hooks is not None:
            if state.depth == 0:
                with self.session():
                    return self._create_hooked(state, table, values, hooks)  # type: ignore[return-value]
            return self._create_hooked(state, table, values, hooks)  # type: ignore[return-value]
        names = tuple(values)
        sql = self._inserts.get((table, names)) or self._prepare_insert(table, names)
        params = tuple(values.values())
        try:
            cur.execute(sql, params)
            return cur.fetchone()[0]  # type: ignore[index,no-any-return]  # one row after INSERT ... RETURNING
        except Exception as exc:
            self._raise(exc, params, Parameters(table, names, len(names)))

    def _prepare_insert(self, table: str, names: tuple[str, ...]) -> str:
        """The INSERT ... RETURNING of ``create()`` for these columns: checked once, then cached."""
        self._writable(table, "create")
        info = self._table(table)
        if info.rowid is None:
            raise self._no_rowid(table, info, "create", f"insert with create_many({table!r}, [row]), which returns a count")
        sql = self._inserts[table, names] = self._sql(f"{self._insert_sql(table, names)} RETURNING {quote(info.rowid)}")
        return sql

    def _create_hooked(
        self, state: ThreadState, table: str, values: dict[str, Any], hooks: Pair, many: int | None = None,
        rowid: bool = True,
    ) -> int | None:
        """One create that fires callbacks, or row ``many`` of a create_many; ``rowid=False``
        (a table without an id column) reports no id to the after_create callbacks."""
        before, after = hooks
        row = dict(values)
        if before:
            self._sessions.fire(state, before, CrudEvent("before_create", table, row, None, None, self))
        names = tuple(row)
        if rowid:
            sql = self._sessions.doom_on_failure(state, lambda: self._inserts.get((table, names)) or self._prepare_insert(table, names))
        else:
            sql = self._sessions.doom_on_failure(state, lambda: self._sql(self._insert_sql(table, names, "create_many")))
        params = tuple(row.values())
        cur = self._sessions.run(state, sql, params, Parameters(table, names, len(names), many))
        row_id: int | None = cur.fetchone()[0] if rowid else None  # type: ignore[index]
        if after:
            self._sessions.fire(state, after, CrudEvent("after_create", table, row, None, row_id, self))
        return row_id

    def create_many(self, table: str, rows: Iterable[Mapping[str, Any]]) -> int:
        """Insert rows that all have the same columns; all of them or none.

        Without callbacks on the table the rows go to one ``executemany``
        (which psycopg pipelines: one round trip per batch, not per row);
        with callbacks each row is created (and fires them) in turn.
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
                    self._sessions.refuse_if_failed(state)  # a callback raised and was caught
                    values = _values_mapping(row, f"create_many() row {number} for {table!r}")
                    self._create_hooked(state, table, values, hooks, number, info.rowid is not None)
                return len(batch)
            names = tuple(_values_mapping(batch[0], f"create_many() row 0 for {table!r}"))
            prepared = self._inserts_many.get((table, names))
            if prepared is None:
                getter = itemgetter(*names) if len(names) > 1 else (lambda row: (row[names[0]],)) if names else (lambda row: ())
                prepared = self._inserts_many[table, names] = (
                    self._sql(self._insert_sql(table, names, "create_many")), getter,
                )
            sql, getter = prepared
            try:
                same = list(map(len, batch)).count(len(names)) == len(batch)
                params = list(map(getter, batch)) if same else None
            except (KeyError, TypeError, AttributeError):  # a row without a column, or not a mapping
                params = None
            if params is None:
                self._row_mismatch(table, batch, names, info.columns)
                raise AssertionError("unreachable: _row_mismatch raises")
            self._sessions.run_many(sql, params, Parameters(table, names, len(names)))
        return len(batch)

    # ---------------------------------------------------------------- read

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
        sql, params, parameters = self._statement(self._select_sql(table, where, order_by, limit), table, 0)
        rows, columns = self._sessions.fetch(sql, params, parameters)
        return [dict(zip(columns, row)) for row in rows]

    def get(self, table: str, id: int) -> Row | None:
        """The row whose id (its table's integer primary key) is ``id``, or None.

        SchemaError for a view or a table without such a key, whose rows have
        no id; None for an id outside the 64-bit range, which no row can have.
        """
        key = self._rowid(table, "get", "find its rows with read(where=...)")
        if isinstance(id, bool) or not isinstance(id, int):
            raise TypeError(f"get() id must be an int, not {type(id).__name__}")
        if not -(2**63) <= id < 2**63:
            return None
        sql = self._sql(f"SELECT * FROM {quote(table)} WHERE {quote(key)} = %s")
        rows, names = self._sessions.fetch(sql, [id])
        return dict(zip(names, rows[0])) if rows else None

    # ---------------------------------------------------------------- update, delete

    def update(self, table: str, where: Mapping[str, Any], values: Mapping[str, Any]) -> int:
        """Set ``values`` on the rows matching ``where`` (never empty: see wipe)."""
        values = _values_mapping(values, f"update() values for {table!r}")
        if not values:
            raise ValueError(f"update() on {table!r} needs at least one column to set")
        statement = self._statement(self._update_sql(table, where, values), table, len(values))
        state = self._threads.state
        if state.depth == 0 and table in self._update_hooks:
            with self.session():
                return self._update(state, table, where, values, statement)
        return self._update(state, table, where, values, statement)

    def _update(
        self, state: ThreadState, table: str, where: Mapping[str, Any], values: dict[str, Any], statement: Statement
    ) -> int:
        hooks = self._update_hooks.get(table)
        if hooks is not None and hooks[0]:
            self._sessions.refuse_if_failed(state)
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
        statement = self._statement(self._delete_sql(table, where), table, 0)
        state = self._threads.state
        if state.depth == 0 and table in self._delete_hooks:
            with self.session():
                return self._delete(state, table, where, statement)
        return self._delete(state, table, where, statement)

    def _delete(self, state: ThreadState, table: str, where: Mapping[str, Any], statement: Statement) -> int:
        hooks = self._delete_hooks.get(table)
        if hooks is not None and hooks[0]:
            self._sessions.refuse_if_failed(state)
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
            return self._statement(self._delete_sql(table, where), table, 0)
        return self._statement(self._update_sql(table, where, values), table, len(values))

    # ---------------------------------------------------------------- wipe, backup, restore

    def wipe(self, namespace: str | None = None) -> dict[str, int]:
        """Empty the tables ``namespace``'s migrations created, or all tables; the
        schema and the migration records stay. Callbacks do not fire. Returns the
        rows deleted per table.

        One ``TRUNCATE`` of all of them (references between them notwithstanding),
        after counting their rows under an exclusive lock: nobody writes in
        between, and no delete trigger fires.
        """
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
        if not tables:
            return {}
        state = self._threads.state
        listed = ", ".join(map(quote, tables))
        with self.session():
            self._sessions.run(state, f"LOCK TABLE {listed} IN ACCESS EXCLUSIVE MODE")
            counts = self._sessions.run(
                state, "SELECT " + ", ".join(f"(SELECT count(*) FROM {quote(t)})" for t in tables)
            ).fetchone()
            self._sessions.run(state, f"TRUNCATE {listed}")
        LOG.info("%s: wiped %s", self._label, ", ".join(tables))
        assert counts is not None
        return dict(zip(tables, map(int, counts)))

    def backup(self, path: str | PathLike[str]) -> Path:
        """Write a consistent snapshot of every table's rows to the file ``path``.

        The snapshot is one REPEATABLE READ transaction on a connection of
        its own, taken while others keep writing; inside a session it holds
        committed data only. The file (replaced whole, its folder created)
        holds the migration records and each table's rows in PostgreSQL's
        COPY format; ``restore(path)`` loads it into a database with the
        same migrations applied.
        """
        if not isinstance(path, (str, PathLike)):
            raise TypeError(f"backup() path must be a str or path, not {type(path).__name__}")
        if self._threads.closed:
            raise self._threads.closed_error()
        destination = Path(fspath(path))
        backups.backup(destination, self._settings, self._psycopg)
        LOG.info("%s: backed up to %s", self._label, destination)
        return destination

    def restore(self, path: str | PathLike[str]) -> dict[str, int]:
        """Replace the rows of this database's tables with those of the backup at ``path``.

        The database must have exactly the migrations the backup records
        (apply them first with ``upgrade``): MigrationError naming the
        difference otherwise. One transaction: every table of the backup is
        emptied and loaded (user triggers off while loading, sequences moved
        past the restored ids), the row counts checked against the file; on
        any failure nothing changes. Returns the rows restored per table.
        """
        if not isinstance(path, (str, PathLike)):
            raise TypeError(f"restore() path must be a str or path, not {type(path).__name__}")
        if self._threads.state.depth:
            raise DatabaseError(
                f"restore() of {self._label} inside a session: it replaces whole tables in a transaction "
                f"of its own, so call it outside any session",
                path=self._label,
            )
        source = Path(fspath(path))
        state = self._threads.state
        with self.session():
            cur = self._sessions.cursor(state)
            try:
                counts = backups.restore(source, cur, self._label, {(a.namespace, a.id): a.checksum for a in applied(self).values()})
            except self._psycopg.Error as exc:
                self._raise(exc)
        self._forget_schema()
        LOG.info("%s: restored from %s", self._label, source)
        return counts

    # ---------------------------------------------------------------- hooks

    def _load_schema(self) -> dict[str, TableInfo]:
        loaded = schema.load_schema(self._execute)
        self._percent = any("%" in table or any("%" in column for column in info.columns) for table, info in loaded.items())
        return loaded

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        # Without parameters the text is sent as it is (a '%' needs no doubling).
        return self._sessions.fetch(sql, params if params else None)[0]

    def _json_value(self, value: Any) -> Any:
        # psycopg sends a str as text and an int as a number; a JSONB column takes neither as JSON.
        return None if value is None else self._psycopg.types.json.Jsonb(value)

    def _ids_loaded(self, table: str) -> None:
        backups.move_sequences(self._execute, table)

    def _execute_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> int:
        return self._sessions.run_many(sql, rows)

    def _execute_migration(self, sql: str) -> None:
        state = self._threads.state
        self._sessions.cursor(state).execute(sql)

    def _tables(self) -> set[str]:
        return schema.tables(self._execute)

    def _in_session(self) -> bool:
        return self._threads.state.depth > 0

    def _in_transaction(self) -> bool:
        return self._sessions.in_transaction()

    def _migration_transaction(self, migration: Migration) -> contextlib.AbstractContextManager[None]:
        return self._sessions.migration_transaction()

