"""The migration runner: apply pending migrations to a live database, any backend.

``migrations.py`` says what to apply and what is drift; this module applies
it, through a handful of hooks every ``Connection`` implements (see its
docstring): ``_execute`` for bookkeeping, ``_execute_migration`` for a
migration's own statements, ``_tables``, ``_in_session``, ``_in_transaction``
and ``_migration_transaction``, the transaction one migration runs in (where
SQLite turns foreign keys off and checks them before the commit, and
PostgreSQL takes an advisory lock).

Each migration runs in its own transaction and is recorded, with its
checksum and the tables it created, in the same one: it is applied whole or
not at all, and two processes upgrading at once apply it once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from datetime import datetime, timezone
from operator import attrgetter
from os import PathLike
from typing import TYPE_CHECKING

from ..errors import MigrationError
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

if TYPE_CHECKING:
    from .base import Connection

__all__ = ["applied", "migration_status", "upgrade"]

LOG = logging.getLogger("taskcatalog.db")


def applied(db: Connection) -> dict[tuple[str, str], Applied]:
    """The bookkeeping records of ``db``, by (namespace, id); empty before the first upgrade."""
    if BOOKKEEPING_TABLE not in db._tables():
        return {}
    rows = db._execute(f"SELECT namespace, id, checksum, applied_at, tables FROM {BOOKKEEPING_TABLE}")
    return {
        (namespace, id): Applied(namespace, id, checksum, applied_at, tuple(json.loads(tables)))
        for namespace, id, checksum, applied_at, tables in rows
    }


def migration_status(
    db: Connection,
    migrations: Iterable[Migration] | str | PathLike[str] | None = None,
    namespace: str | None = None,
) -> list[MigrationStatus]:
    """Plain records of each migration's state; without migrations, what is recorded."""
    records = applied(db)
    if migrations is None:
        return [
            MigrationStatus(a.namespace, a.id, "applied", None, a.checksum, a.applied_at)
            for a in sorted(records.values(), key=attrgetter("namespace", "id"))
            if namespace is None or a.namespace == namespace
        ]
    return status(collect(migrations, namespace), records)


def upgrade(
    db: Connection,
    migrations: Iterable[Migration] | str | PathLike[str],
    namespace: str | None = None,
) -> list[str]:
    """Apply the pending migrations in order; return the ids applied (see ``Connection.upgrade``)."""
    ordered = collect(migrations, namespace)
    if db._in_session():
        raise MigrationError(
            f"upgrade() of {db.label} inside a session: each migration runs in its own "
            f"transaction, so call it outside any session",
            path=db.label,
        )
    states = status(ordered, applied(db))
    drifted = [s for s in states if s.state == "drifted"]
    if drifted:
        raise _drift_error(db.label, drifted, ordered)
    if not any(s.state == "pending" for s in states):
        return []  # the usual case when a process opens a database: no write lock taken
    done = []
    try:
        for migration in ordered:
            if _apply(db, migration):
                done.append(migration.id)
    finally:
        db._forget_schema()
    return done


def _apply(db: Connection, migration: Migration) -> bool:
    """Apply one migration unless another process already has; whether this call applied it."""
    statements = split_statements(migration)
    p = db.param
    with db._migration_transaction(migration):
        # The bookkeeping table is made here, under the lock the engine takes
        # for migrations: two PostgreSQL processes running CREATE TABLE IF NOT
        # EXISTS at once would otherwise collide in the catalog.
        db._execute(BOOKKEEPING_DDL)
        # Holding the lock, look again: another process may have
        # applied this migration while this one waited for the lock.
        record = db._execute(
            f"SELECT checksum FROM {BOOKKEEPING_TABLE} WHERE namespace = {p} AND id = {p}",
            [migration.namespace, migration.id],
        )
        if record:
            if record[0][0] != migration.checksum:
                raise _drift_error(
                    db.label,
                    [MigrationStatus(migration.namespace, migration.id, "drifted", None, record[0][0], None)],
                    [migration],
                )
            return False
        before = db._tables()
        for number, statement in enumerate(statements, 1):
            try:
                db._execute_migration(statement.sql)
            except db.engine_error as exc:
                raise MigrationError(
                    f"migration {migration.name} failed at statement {number} of {len(statements)} "
                    f"({migration.location(statement.line)}) on {db.label}: {_first_line(exc)}; "
                    f"nothing of it was applied\n  {statement.head}",
                    path=migration.path or db.label,
                    line=statement.line,
                ) from exc
            if not db._in_transaction():
                raise MigrationError(
                    f"migration {migration.name} ended the transaction at statement {number} "
                    f"({migration.location(statement.line)}); nothing of it was applied",
                    path=migration.path or db.label,
                    line=statement.line,
                )
        created = sorted(db._tables() - before)
        db._execute(
            f"INSERT INTO {BOOKKEEPING_TABLE} (namespace, id, checksum, applied_at, tables)"
            f" VALUES ({p}, {p}, {p}, {p}, {p})",
            [
                migration.namespace,
                migration.id,
                migration.checksum,
                datetime.now(timezone.utc).isoformat(timespec="microseconds"),
                json.dumps(created),
            ],
        )
    LOG.info("%s: applied migration %s", db.label, migration.name)
    return True


def _drift_error(label: str, drifted: list[MigrationStatus], ordered: list[Migration]) -> MigrationError:
    by_key = {(m.namespace, m.id): m for m in ordered}
    names = ", ".join(by_key[s.namespace, s.id].name for s in drifted)
    first = by_key[drifted[0].namespace, drifted[0].id]
    return MigrationError(
        f"applied migration{'s' if len(drifted) > 1 else ''} {names} changed since "
        f"{'they were' if len(drifted) > 1 else 'it was'} applied to {label} (checksum differs); "
        f"nothing was applied. Restore the applied SQL and put changes in a new migration",
        path=first.path or label,
    )


def _first_line(exc: BaseException) -> str:
    """The engine's message for a failed statement, its first line (PostgreSQL adds LINE/DETAIL/HINT lines)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
