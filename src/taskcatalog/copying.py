"""Moving a catalog database to another engine: ``taskcatalog db copy URL``.

A team that starts on SQLite and outgrows one host moves its catalog
database (telemetry, aggregates, batches) to PostgreSQL without losing
history. The target gets its schema from the catalog's migrations for its
own engine (``schema/<dialect>/``), then every row of the catalog's tables,
in one transaction: all of them or none. The tables hold the same columns on
every engine, so rows move as they are; ids are kept (and PostgreSQL's
sequences moved past them). Counts are verified at the end, against what
was read and against the source, which must not change meanwhile: stop the
processes writing to it (executors, callers recording telemetry) first.

Executed batches are frozen by triggers on both engines, which would refuse
their rows: headers are copied as ``pending`` and given their status once
their rows, outcomes, claims and dependencies are in.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from .db import Connection
from .errors import CatalogError
from .stores import catalog_migrations

__all__ = ["CATALOG_TABLES", "copy_catalog_database"]

LOG = logging.getLogger("taskcatalog.db")

#: The catalog's tables, parents first, each with its primary key (the order rows are read in).
CATALOG_TABLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("taskcatalog_processes", ("id",)),
    ("taskcatalog_call_keys", ("process", "key")),
    ("taskcatalog_plugin_keys", ("process", "key")),
    ("taskcatalog_call_batches", ("id",)),
    ("taskcatalog_call_stats", ("interface", "version", "customer", "hour", "bucket")),
    ("taskcatalog_call_totals", ("interface", "version", "customer")),
    ("taskcatalog_batches", ("id",)),
    ("taskcatalog_batch_rows", ("batch", "number")),
    ("taskcatalog_batch_dependencies", ("batch", "depends_on")),
    ("taskcatalog_batch_outcomes", ("key",)),
    ("taskcatalog_batch_claims", ("batch", "first")),
)
#: Columns SQLite leaves untyped that PostgreSQL keeps as JSON (a slot id: text or integer).
_JSON_COLUMNS = {("taskcatalog_plugin_keys", "slot")}
#: Columns copied as bytes: telemetry records are a pickle, or JSON text where written before
#: 0006_packed_records; PostgreSQL keeps both as BYTEA (JSON as UTF-8), SQLite either way.
_BYTES_COLUMNS = {("taskcatalog_call_batches", "records")}
#: Rows read from the source per query.
PAGE = 2000


def _count(db: Connection, table: str) -> int:
    return int(db._execute(f"SELECT count(*) FROM {table}")[0][0])


def _pages(db: Connection, table: str, key: tuple[str, ...], columns: tuple[str, ...]) -> Iterator[list[tuple[Any, ...]]]:
    """The rows of ``table``, a page at a time, in primary key order (keyset paging: no OFFSET)."""
    order = ", ".join(key)
    select = f"SELECT {', '.join(columns)} FROM {table}"
    first = db._qmark(f"{select} ORDER BY {order} LIMIT {PAGE}")
    after = db._qmark(f"{select} WHERE ({order}) > ({', '.join('?' * len(key))}) ORDER BY {order} LIMIT {PAGE}")
    positions = [columns.index(name) for name in key]
    page = db._execute(first)
    while page:
        yield page
        if len(page) < PAGE:
            return
        page = db._execute(after, [page[-1][at] for at in positions])


def _check_source(source: Connection) -> None:
    """The source must hold the catalog's tables, its migrations all applied and unchanged."""
    migrations = catalog_migrations(source.dialect)
    states = source.migration_status(migrations) if migrations else []
    waiting = [f"{s.id} ({s.state})" for s in states if s.state != "applied"]
    if not migrations or waiting:
        why = f"migrations not applied: {', '.join(waiting)}" if waiting else f"no catalog tables for {source.dialect}"
        raise CatalogError(
            f"cannot copy {source.label}: it is not an up-to-date catalog database ({why}); "
            f"run 'taskcatalog db upgrade' on it first"
        )


def _check_target(source: Connection, target: Connection) -> None:
    """The target must be another database whose catalog tables are empty (nothing there is overwritten)."""
    if target.dialect == source.dialect and target.label == source.label:
        raise CatalogError(f"cannot copy {source.label} onto itself")
    full = [f"{table} ({rows})" for table, _ in CATALOG_TABLES if (rows := _count(target, table))]
    if full:
        raise CatalogError(
            f"cannot copy into {target.label}: its catalog tables already hold rows: {', '.join(full)}; "
            f"copy into an empty database (or empty it first: taskcatalog db wipe --yes); no row was copied"
        )


def copy_catalog_database(source: Connection, target: Connection) -> dict[str, int]:
    """Copy every row of the catalog's tables from ``source`` to ``target``; the rows copied per table.

    ``target`` is brought up to date with the catalog's migrations for its
    engine first; its catalog tables must be empty. Raises CatalogError when
    the source is not an up-to-date catalog database, the target holds rows,
    or the counts do not match at the end (nothing copied then).
    """
    _check_source(source)
    migrations = catalog_migrations(target.dialect)
    if not migrations:
        raise CatalogError(f"cannot copy into {target.label}: the catalog has no tables for {target.dialect}")
    applied = target.upgrade(migrations)
    if applied:
        LOG.info("%s: applied catalog migrations %s", target.label, ", ".join(applied))
    _check_target(source, target)
    copied: dict[str, int] = {}
    statuses: list[tuple[str, int]] = []
    with target.session():
        for table, key in CATALOG_TABLES:
            columns = source._table(table).columns
            missing = sorted(set(columns) ^ set(target._table(table).columns))
            if missing:
                raise CatalogError(
                    f"cannot copy {table}: the columns differ between {source.label} and {target.label} "
                    f"({', '.join(missing)}); upgrade both to the same catalog version"
                )
            json_columns = [i for i, name in enumerate(columns) if (table, name) in _JSON_COLUMNS]
            bytes_columns = [i for i, name in enumerate(columns) if (table, name) in _BYTES_COLUMNS]
            status_at = columns.index("status") if table == "taskcatalog_batches" else None
            copied[table] = 0
            for page in _pages(source, table, key, columns):
                rows = [dict(zip(columns, row)) for row in page]
                for row, values in zip(rows, page):
                    for at in json_columns:
                        row[columns[at]] = target._json_value(values[at])
                    for at in bytes_columns:
                        if isinstance(values[at], str):
                            row[columns[at]] = values[at].encode("utf-8")
                    if status_at is not None and values[status_at] != "pending":
                        statuses.append((values[status_at], row["id"]))
                        row["status"] = "pending"  # frozen once its rows are in (see the module)
                copied[table] += target.create_many(table, rows)
            target._ids_loaded(table)
        for status, batch in statuses:
            target._execute(target._qmark("UPDATE taskcatalog_batches SET status = ? WHERE id = ?"), (status, batch))
        for table, _ in CATALOG_TABLES:
            found, now = _count(target, table), _count(source, table)
            if not found == now == copied[table]:
                raise CatalogError(
                    f"the copy of {table} does not match: {copied[table]} row(s) read, {found} in {target.label}, "
                    f"{now} in {source.label} now; stop the processes writing to {source.label} and copy again; "
                    f"nothing was copied"
                )
    LOG.info("copied the catalog database %s to %s (%s)", source.label, target.label,
             ", ".join(f"{table} {rows}" for table, rows in copied.items()))
    return copied
