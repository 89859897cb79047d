"""The ``Connection`` contract every database backend fulfils, and what they share.

A backend (``sqlite/`` and ``postgres/`` are the built-in ones) implements the abstract methods:
the public calls that need an engine (sessions, CRUD, wipe, backup, close)
and a few named hooks (listed in the ``Connection`` docstring) through which
this module and the migration runner (``migrate.py``) reach the engine.
Everything that does not depend on the engine lives here once: checking
table and column names against the live schema, building ``WHERE``,
``ORDER BY``, ``INSERT``, ``UPDATE`` and ``DELETE`` text from plain data,
registering callbacks, and running migrations.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, ClassVar

from ..errors import SchemaError
from . import migrate
from .callbacks import EVENTS, Callback, Callbacks, CrudEvent
from .migrations import Migration, MigrationStatus

__all__ = [
    "Connection",
    "CrudEvent",
    "EVENTS",
    "OPERATORS",
    "TableInfo",
    "quote",
]

OPERATORS = ("=", "!=", "<", "<=", ">", ">=", "in", "like")
_COMPARE = {"=": "=", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">=", "like": "LIKE"}

Row = dict[str, Any]
#: The parameters of a statement, and per parameter the column it is for (None for a LIMIT).
Params = tuple[list[Any], list[str | None]]


@dataclass(frozen=True, slots=True)
class TableInfo:
    """What the live schema says about one table or view (a backend's ``_load_schema`` builds these).

    Rows of a view or of a ``WITHOUT ROWID`` table have no id, so ``get()``
    and ``create()`` (which returns one) refuse them. ``rowid`` is how SQL
    reaches the id: ``rowid``, or ``_rowid_`` / ``oid`` when a column takes
    that name; None when there is no id or every alias is a column.
    """

    columns: tuple[str, ...]
    view: bool = False
    without_rowid: bool = False
    rowid: str | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        name = None
        if not (self.view or self.without_rowid):
            taken = {column.lower() for column in self.columns}
            name = next((alias for alias in ("rowid", "_rowid_", "oid") if alias not in taken), None)
        object.__setattr__(self, "rowid", name)

    def why_no_rowid(self) -> str:
        """Why SQL cannot reach a row id, as the end of a sentence naming the table."""
        if self.view:
            return "is a view, whose rows have no row id"
        if self.without_rowid:
            return "is a WITHOUT ROWID table, whose rows have no row id"
        return "has columns named rowid, _rowid_ and oid, which hide the row id"


def quote(name: str) -> str:
    """Quote an identifier for SQL (double quotes, embedded quotes doubled).

    Names are checked against the schema before they get here; quoting them
    anyway keeps a legitimate but odd name (``a"b``, ``order``) working.
    """
    return '"' + name.replace('"', '""') + '"'


def _listing(names: Iterable[str], empty: str) -> str:
    text = ", ".join(repr(n) for n in names)
    return text or empty


class Connection(abc.ABC):
    """A connection to one database: CRUD on plain dicts, sessions, migrations.

    Use it as a context manager (``with connect(url) as db:``) or call
    ``close()``. One object may be shared by the threads of a process.

    A backend implements: the public calls ``session``, ``create``,
    ``create_many``, ``read``, ``get``, ``update``, ``delete``, ``wipe``,
    ``backup``, ``close`` and the ``label`` property; the hooks
    ``_load_schema`` (tables, views and columns, for the name checks),
    ``_execute``, ``_execute_many`` and ``_execute_migration`` (statements in
    the calling thread's session; the catalog's telemetry and batches write
    through the first two), ``_tables``, ``_in_session``, ``_in_transaction`` and
    ``_migration_transaction`` (for the migration runner); and the class
    attributes ``param`` (the driver's placeholder) and ``engine_error`` (the
    driver's base exception), and ``_operators`` where the engine spells a
    ``where`` operator its own way. Its write paths run the callbacks of
    ``self._callbacks`` and roll the whole session back when one raises.
    """

    #: The SQL dialect: which of the catalog's own migrations (``schema/<dialect>/``) apply.
    dialect: ClassVar[str] = ""
    #: Placeholder for a bound parameter in this backend's SQL dialect.
    param: ClassVar[str] = "?"
    #: The base class of the driver's errors: what a migration's failing statement raises.
    engine_error: ClassVar[type[Exception]] = Exception
    #: How each ``where`` operator but ``in`` reads in SQL after the column, ``{p}`` standing
    #: for the placeholder (a backend may spell one differently: PostgreSQL's ``like``).
    _operators: ClassVar[Mapping[str, str]] = {op: f"{sql} {{p}}" for op, sql in _COMPARE.items()}

    def __init__(self, url: str) -> None:
        self.url = url
        # table -> what the live schema says about it (see _table).
        self._schema: dict[str, TableInfo] = {}
        self._callbacks = Callbacks()

    @property
    @abc.abstractmethod
    def label(self) -> str:
        """How errors name this database (a file path, usually)."""

    @abc.abstractmethod
    def session(self) -> AbstractContextManager[Connection]:
        """One transaction: committed when the block ends, rolled back if it raises.

        A session inside a session (same thread) is a savepoint: its failure,
        if caught, undoes only its own work.
        """

    @abc.abstractmethod
    def create(self, table: str, values: Mapping[str, Any]) -> int:
        """Insert one row and return its id."""

    @abc.abstractmethod
    def create_many(self, table: str, rows: Iterable[Mapping[str, Any]]) -> int:
        """Insert rows (all with the same columns), all or none; return how many."""

    @abc.abstractmethod
    def read(
        self,
        table: str,
        where: Mapping[str, Any] | None = None,
        order_by: str | Iterable[str] | None = None,
        limit: int | None = None,
    ) -> list[Row]:
        """Rows matching ``where``, as dicts."""

    @abc.abstractmethod
    def get(self, table: str, id: int) -> Row | None:
        """The row with that id, or None."""

    @abc.abstractmethod
    def update(self, table: str, where: Mapping[str, Any], values: Mapping[str, Any]) -> int:
        """Set ``values`` on the rows matching ``where``; return how many changed."""

    @abc.abstractmethod
    def delete(self, table: str, where: Mapping[str, Any]) -> int:
        """Delete the rows matching ``where``; return how many."""

    @abc.abstractmethod
    def wipe(self, namespace: str | None = None) -> dict[str, int]:
        """Delete every row of a namespace's tables (or of all tables); keep the schema."""

    @abc.abstractmethod
    def backup(self, path: str | PathLike[str]) -> Path:
        """Write a consistent copy of the database to ``path``."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close the connection; later calls raise ``DatabaseError``."""

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # The hooks: how this module and migrate.py reach the engine.

    @abc.abstractmethod
    def _load_schema(self) -> dict[str, TableInfo]:
        """Read the tables and views, their columns and whether rows have ids, from the database."""

    @abc.abstractmethod
    def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement in the calling thread's session (alone outside one); its rows."""

    @abc.abstractmethod
    def _execute_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> int:
        """Run one statement once per row of parameters in the calling thread's session; rows affected."""

    @abc.abstractmethod
    def _execute_migration(self, sql: str) -> None:
        """Run one statement of a migration in the current transaction, raising the driver's own error."""

    @abc.abstractmethod
    def _tables(self) -> set[str]:
        """The tables that hold rows (the bookkeeping table included), not the engine's own."""

    @abc.abstractmethod
    def _in_session(self) -> bool:
        """Whether the calling thread is inside a session."""

    @abc.abstractmethod
    def _in_transaction(self) -> bool:
        """Whether the calling thread's transaction is still open (a statement may have ended it)."""

    @abc.abstractmethod
    def _migration_transaction(self, migration: Migration) -> AbstractContextManager[None]:
        """The transaction ``migration`` runs in: a session, and whatever the engine needs around it."""

    def _qmark(self, sql: str) -> str:
        """``sql`` written with ``?`` placeholders (and no other ``?`` or ``%``) in this backend's ``param``.

        The catalog's own statements (telemetry, batches) are written once
        that way and serve every engine whose dialect accepts the rest.
        """
        return sql if self.param == "?" else sql.replace("?", self.param)

    def _json_value(self, value: Any) -> Any:
        """``value`` ready to store in a JSON column (SQLite stores any value as it is)."""
        return value

    def _ids_loaded(self, table: str) -> None:
        """Rows were stored in ``table`` with the ids they had elsewhere: let new ids follow them.

        SQLite gives the largest id + 1 anyway; an engine with sequences moves them.
        """

    def upgrade(
        self,
        migrations: Iterable[Migration] | str | PathLike[str],
        namespace: str | None = None,
    ) -> list[str]:
        """Apply pending migrations in order, each in its own transaction.

        Drift (an applied migration whose SQL changed) anywhere in the set
        stops everything before anything is applied. A migration that fails
        is rolled back whole and raises MigrationError, its cause being the
        engine's error. Returns the ids this call applied.
        """
        return migrate.upgrade(self, migrations, namespace)

    def migration_status(
        self,
        migrations: Iterable[Migration] | str | PathLike[str] | None = None,
        namespace: str | None = None,
    ) -> list[MigrationStatus]:
        """Each migration's state: applied, pending, drifted or missing; without
        migrations, what the database has recorded."""
        return migrate.migration_status(self, migrations, namespace)

    def on(self, event: str, table: str, callback: Callback) -> None:
        """Call ``callback(event)`` with a ``CrudEvent`` at each ``event`` on ``table``.

        Callbacks run in the caller's thread and transaction, in registration
        order. One that raises rolls back the whole session, and its exception
        reaches the caller unchanged.
        """
        if event not in EVENTS:
            raise ValueError(f"unknown event {event!r}; events are: {', '.join(EVENTS)}")
        self._columns(table)
        self._callbacks.on(event, table, callback)

    def _forget_schema(self) -> None:
        """Drop what is cached about the schema (after a migration, or when it changed under us)."""
        self._schema = {}

    def _refresh_schema(self) -> dict[str, TableInfo]:
        schema = self._load_schema()
        self._schema = schema
        return schema

    def _table(self, table: str) -> TableInfo:
        """What the schema says about ``table``; SchemaError if it is not a table of this database.

        A miss re-reads the schema once before failing: another process may
        have migrated since the cache was filled.
        """
        info = self._schema.get(table) if type(table) is str else None
        if info is None:
            _check_name("a table name", table)
            info = self._refresh_schema().get(table)
            if info is None:
                raise SchemaError(
                    f"no table {table!r} in {self.label}; tables: "
                    f"{_listing(sorted(self._schema), '(none yet: run upgrade() first)')}",
                    path=self.label,
                )
        return info

    def _columns(self, table: str) -> tuple[str, ...]:
        """The columns of ``table`` (see ``_table``)."""
        return self._table(table).columns

    def _column(self, table: str, columns: tuple[str, ...], name: object) -> str:
        """``name`` if it is a column of ``table`` (re-reading the schema once)."""
        if name in columns and type(name) is str:
            return name
        _check_name(f"a column name for table {table!r}", name)
        info = self._refresh_schema().get(table)
        columns = () if info is None else info.columns
        if name in columns:
            return str(name)
        raise SchemaError(
            f"no column {name!r} in table {table!r} of {self.label}; columns: {_listing(columns, '(none)')}",
            path=self.label,
        )

    def _row_mismatch(self, table: str, batch: list[Any], names: tuple[str, ...], columns: tuple[str, ...]) -> None:
        """Raise the error naming the first row whose columns differ from row 0's."""
        for number, row in enumerate(batch):
            values = _values_mapping(row, f"create_many() row {number} for {table!r}")
            for name in values:
                self._column(table, columns, name)
            if set(values) != set(names):
                raise ValueError(
                    f"create_many() row {number} for {table!r} has the columns {sorted(values)}, "
                    f"row 0 has {sorted(names)}: every row needs the same columns"
                )

    def _rowid(self, table: str, verb: str, advice: str) -> str:
        """How SQL names the row id of ``table``; SchemaError saying why when it cannot."""
        info = self._table(table)
        if info.rowid is None:
            raise self._no_rowid(table, info, verb, advice)
        return info.rowid

    def _no_rowid(self, table: str, info: TableInfo, verb: str, advice: str) -> SchemaError:
        return SchemaError(
            f"{verb}() needs row ids, and {table!r} in {self.label} {info.why_no_rowid()}: {advice}",
            path=self.label,
        )

    def _writable(self, table: str, verb: str) -> tuple[str, ...]:
        """The columns of ``table``; SchemaError if it is a view (views are read-only here)."""
        info = self._table(table)
        if info.view:
            raise SchemaError(
                f"{verb}() on {table!r} in {self.label}: it is a view, and views are read-only "
                f"through this layer; write to the tables it reads from",
                path=self.label,
            )
        return info.columns

    def _where_sql(self, table: str, columns: tuple[str, ...], where: Mapping[str, Any]) -> tuple[str, Params]:
        """``WHERE`` text and its parameters from ``{column: value or (op, value)}``."""
        if not isinstance(where, Mapping):
            raise TypeError(f"where must be a mapping of column to value, not {type(where).__name__}")
        p = self.param
        parts: list[str] = []
        params: list[Any] = []
        names: list[str | None] = []
        for name, condition in where.items():
            checked = self._column(table, columns, name)
            column = quote(checked)
            if condition is None:
                parts.append(f"{column} IS NULL")
                continue
            if isinstance(condition, (list, set, frozenset, dict)):
                raise TypeError(
                    f"where[{name!r}] is a {type(condition).__name__}; "
                    f"use ('in', [...]) to match any of several values"
                )
            if not isinstance(condition, tuple):
                parts.append(f"{column} = {p}")
                params.append(condition)
                names.append(checked)
                continue
            if len(condition) != 2 or not isinstance(condition[0], str):
                raise ValueError(f"where[{name!r}] must be a value or an (operator, value) pair, not {condition!r}")
            op, value = condition[0].lower(), condition[1]
            if op == "in":
                if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
                    raise TypeError(f"where[{name!r}]: 'in' needs a list of values, not {type(value).__name__}")
                items = list(value)
                if any(item is None for item in items):
                    # x IN (NULL) is NULL, never true: the None would silently match no row.
                    raise ValueError(
                        f"where[{name!r}]: 'in' with None in the list never matches NULL (SQL's IN compares "
                        f"with =); use None or ('!=', None) to match on NULL"
                    )
                if not items:
                    parts.append("1 = 0")  # IN () matches nothing; SQL has no empty list (and PostgreSQL no integer truth)
                else:
                    parts.append(f"{column} IN ({', '.join([p] * len(items))})")
                    params.extend(items)
                    names.extend([checked] * len(items))
            elif op not in _COMPARE:
                raise ValueError(f"where[{name!r}]: unknown operator {condition[0]!r}; operators are: {' '.join(OPERATORS)}")
            elif value is None:
                if op == "=":
                    parts.append(f"{column} IS NULL")
                elif op == "!=":
                    parts.append(f"{column} IS NOT NULL")
                else:
                    # SQL compares NULL to nothing: the filter would silently match no row.
                    raise ValueError(f"where[{name!r}]: {op!r} with None matches nothing; use None or ('!=', None)")
            else:
                parts.append(f"{column} {self._operators[op].replace('{p}', p)}")
                params.append(value)
                names.append(checked)
        return " AND ".join(parts), (params, names)

    def _order_sql(self, table: str, columns: tuple[str, ...], order_by: str | Iterable[str]) -> str:
        """``ORDER BY`` text from ``"col"``, ``"-col"`` (descending) or a list of them."""
        keys = [order_by] if isinstance(order_by, str) else order_by
        if not isinstance(keys, Iterable):
            raise TypeError(f"order_by must be a column name or a list of them, not {type(order_by).__name__}")
        terms = []
        for key in keys:
            if type(key) is str and key.startswith("-"):
                terms.append(quote(self._column(table, columns, key[1:])) + " DESC")
            else:
                terms.append(quote(self._column(table, columns, key)))
        return ", ".join(terms)

    def _select_sql(
        self,
        table: str,
        where: Mapping[str, Any] | None,
        order_by: str | Iterable[str] | None,
        limit: int | None,
    ) -> tuple[str, Params]:
        columns = self._columns(table)
        sql = "SELECT * FROM " + quote(table)
        params: list[Any] = []
        names: list[str | None] = []
        if where:
            clause, (params, names) = self._where_sql(table, columns, where)
            sql += " WHERE " + clause
        elif where is not None and not isinstance(where, Mapping):
            raise TypeError(f"where must be a mapping of column to value, not {type(where).__name__}")
        if order_by is not None:
            order = self._order_sql(table, columns, order_by)
            if order:
                sql += " ORDER BY " + order
        if limit is not None:
            if type(limit) is not int or limit < 0:
                raise ValueError(f"limit must be a non-negative int, not {limit!r}")
            if limit >= 2**63:
                raise ValueError(f"limit must be below 2**63 (SQL integers have 64 bits), not {limit}")
            sql += " LIMIT " + self.param
            params.append(limit)
            names.append(None)
        return sql, (params, names)

    def _filter_sql(self, verb: str, table: str, where: Mapping[str, Any]) -> tuple[str, Params]:
        """The ``WHERE`` of an update or delete, which must not be empty."""
        if not isinstance(where, Mapping):
            raise TypeError(f"{verb}() where must be a mapping of column to value, not {type(where).__name__}")
        if not where:
            raise ValueError(
                f"{verb}() on {table!r} with an empty where would touch every row; "
                f"pass a filter, or use wipe() to clear tables"
            )
        return self._where_sql(table, self._writable(table, verb), where)

    def _update_sql(self, table: str, where: Mapping[str, Any], values: Mapping[str, Any]) -> tuple[str, Params]:
        """The UPDATE; its parameters are the values set, then those of the where."""
        clause, (where_params, where_names) = self._filter_sql("update", table, where)
        columns = self._columns(table)
        sets = ", ".join(f"{quote(self._column(table, columns, name))} = {self.param}" for name in values)
        names: list[str | None] = [*values, *where_names]
        return f"UPDATE {quote(table)} SET {sets} WHERE {clause}", ([*values.values(), *where_params], names)

    def _delete_sql(self, table: str, where: Mapping[str, Any]) -> tuple[str, Params]:
        clause, params = self._filter_sql("delete", table, where)
        return f"DELETE FROM {quote(table)} WHERE {clause}", params

    def _insert_sql(self, table: str, names: tuple[str, ...], verb: str = "create") -> str:
        columns = self._writable(table, verb)
        for name in names:
            self._column(table, columns, name)
        if not names:
            return f"INSERT INTO {quote(table)} DEFAULT VALUES"
        return (
            f"INSERT INTO {quote(table)} ({', '.join(map(quote, names))}) "
            f"VALUES ({', '.join([self.param] * len(names))})"
        )


def _check_name(what: str, name: object) -> None:
    """SchemaError for a name that cannot be a SQL name at all (type, empty, NUL)."""
    if type(name) is not str:
        raise SchemaError(f"{what} must be a str, not {type(name).__name__}: {name!r}")
    if not name:
        raise SchemaError(f"{what} must not be empty")
    if "\x00" in name:
        raise SchemaError(f"{what} must not contain NUL characters: {name!r}")


def _values_mapping(values: object, what: str) -> dict[str, Any]:
    """``values`` as a dict, or TypeError naming what was passed instead."""
    if type(values) is dict:
        return values
    if not isinstance(values, Mapping):
        raise TypeError(f"{what} must be a mapping of column to value, not {type(values).__name__}")
    return dict(values)


def _iter_rows(rows: object) -> Iterator[Any]:
    """Check that ``rows`` is a collection of rows rather than one row or a string."""
    if isinstance(rows, (str, bytes, Mapping)) or not isinstance(rows, Iterable):
        raise TypeError(f"rows must be an iterable of mappings, not {type(rows).__name__}")
    return iter(rows)


def _refuse_emptied(verb: str, table: str, where: Mapping[str, Any], values: Mapping[str, Any] | None) -> None:
    """An update or delete whose before_* callbacks left nothing to set, or no where (every row), is refused."""
    if values is not None and not values:
        raise ValueError(
            f"{verb}() on {table!r}: the before_{verb} callbacks left no column to set; "
            f"a callback may change the values, not remove them all"
        )
    if not where:
        raise ValueError(
            f"{verb}() on {table!r}: the before_{verb} callbacks left an empty where, "
            f"which would {verb} every row"
        )
