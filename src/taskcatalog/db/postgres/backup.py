"""``backup()`` and ``restore()``: a consistent snapshot of the rows in one file, and the way back.

A PostgreSQL database is not a file to copy, and ``pg_dump`` is not
everywhere this library runs; but every table here exists through
migrations, so a backup needs only the rows and the record of which
migrations made the schema. The file, UTF-8 text:

* line 1: a JSON header: format and version, engine, source, time, the
  migration records (namespace, id, checksum, applied_at, tables), and the
  tables with the columns written for each (generated columns are left out:
  the server computes them again);
* per table, in an order where a table comes after those it references:
  its rows in PostgreSQL's own COPY text format (one line per row, every
  type written exactly as the server reads it back), then a line ``\\.``;
* last line: a JSON trailer with the number of rows of each table, so a
  truncated file is refused rather than half restored.

``backup`` reads everything in one REPEATABLE READ READ ONLY transaction on
a connection of its own: one snapshot of committed data, taken while others
keep writing (PostgreSQL's MVCC: readers never block writers), and never the
uncommitted work of the caller's session. The file is written beside its
destination and renamed over it once complete and synced.

``restore`` loads such a file into a database that has exactly the same
migrations applied (apply them with ``upgrade``; the tables exist only
through them), in one transaction: every table of the backup is locked and
emptied, its rows copied in with user triggers off (the rows were
consistent when backed up; a trigger refusing changes to frozen rows must
not refuse them now), sequences are moved past the restored ids, and the
counts are checked against the trailer. Any failure rolls all of it back.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime, timezone
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from ...errors import DatabaseError, MigrationError
from ..base import quote
from ..migrations import BOOKKEEPING_TABLE
from .errors import translate
from .opening import Settings, first_line, open_connection

__all__ = ["FORMAT", "backup", "restore"]

#: The header's mark and version of this file format.
FORMAT, VERSION = "taskcatalog-backup", 1
_END = b"\\.\n"
_CHUNK = 1 << 20  # bytes handed to COPY FROM at a time

_COLUMNS = (
    "SELECT c.relname, a.attname FROM pg_catalog.pg_class AS c"
    " JOIN pg_catalog.pg_attribute AS a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped"
    " WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p') AND NOT c.relispartition"
    " AND a.attgenerated = '' ORDER BY c.relname, a.attnum"
)
_REFERENCES = (
    "SELECT c.relname, p.relname FROM pg_catalog.pg_constraint AS k"
    " JOIN pg_catalog.pg_class AS c ON c.oid = k.conrelid JOIN pg_catalog.pg_class AS p ON p.oid = k.confrelid"
    " WHERE k.contype = 'f' AND c.relnamespace = current_schema()::regnamespace"
)
_SEQUENCES = (
    "SELECT a.attname, pg_catalog.pg_get_serial_sequence("
    "quote_ident(current_schema()) || '.' || quote_ident(c.relname), a.attname)"
    " FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_attribute AS a ON a.attrelid = c.oid"
    " WHERE c.relnamespace = current_schema()::regnamespace AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped"
)


def backup(destination: Path, settings: Settings, psycopg: Any) -> None:
    """Write the backup of the database of ``settings`` to ``destination`` (see the module)."""
    if destination.is_dir():
        raise DatabaseError(f"cannot back up {settings.label} to {destination}: it is a folder", path=str(destination))
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatabaseError(
            f"cannot create the folder {destination.parent} for the backup {destination}: {exc.strerror or exc}",
            path=str(destination),
        ) from exc
    conn = open_connection(settings)  # of its own: committed data only, whatever the caller's session holds
    temporary: Path | None = None
    try:
        try:
            file = tempfile.NamedTemporaryFile("wb", dir=destination.parent, prefix=f".{destination.name}.", delete=False)
        except OSError as exc:
            raise DatabaseError(f"cannot write the backup {destination}: {exc.strerror or exc}", path=str(destination)) from exc
        temporary = Path(file.name)
        with file:
            try:
                with conn.transaction():  # in autocommit mode: BEGIN ... COMMIT
                    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    _write(conn, file, settings.label)
                file.flush()
                os.fsync(file.fileno())
            except psycopg.Error as exc:
                error = translate(exc, settings.label, settings.timeout)  # a lock held past the timeout, ...
                if error is exc:
                    error = DatabaseError(f"cannot back up {settings.label}: {first_line(str(exc))}", path=settings.label)
                raise error from exc
            except OSError as exc:
                raise DatabaseError(f"cannot write the backup {destination}: {exc.strerror or exc}", path=str(destination)) from exc
        os.replace(temporary, destination)
        temporary = None
    finally:
        conn.close()
        if temporary is not None:
            temporary.unlink(missing_ok=True)


def _write(conn: Any, file: IO[bytes], label: str) -> None:
    """The header, each table's rows, the trailer: all read in the caller's snapshot."""
    columns: dict[str, list[str]] = {}
    for table, column in conn.execute(_COLUMNS).fetchall():
        if table != BOOKKEEPING_TABLE:
            columns.setdefault(table, []).append(column)
    migrations: list[list[Any]] = []
    exists = conn.execute(
        "SELECT 1 FROM pg_catalog.pg_class WHERE relnamespace = current_schema()::regnamespace AND relname = %s",
        [BOOKKEEPING_TABLE],
    ).fetchall()
    if exists:
        migrations = [
            [namespace, id, checksum, applied_at, json.loads(tables)]
            for namespace, id, checksum, applied_at, tables in conn.execute(
                f"SELECT namespace, id, checksum, applied_at, tables FROM {BOOKKEEPING_TABLE} ORDER BY namespace, id"
            ).fetchall()
        ]
    order = _parents_first(sorted(columns), conn.execute(_REFERENCES).fetchall())
    header = {
        "format": FORMAT,
        "version": VERSION,
        "engine": "postgresql",
        "database": label,
        "taken_at": datetime.now(timezone.utc).isoformat(timespec="microseconds"),
        "server_version": conn.info.server_version,
        "migrations": migrations,
        "tables": [{"name": table, "columns": columns[table]} for table in order],
    }
    file.write(json.dumps(header).encode("utf-8") + b"\n")
    counts = {}
    for table in order:
        rows = 0
        listed = ", ".join(map(quote, columns[table]))
        with conn.cursor().copy(f"COPY {quote(table)} ({listed}) TO STDOUT") as copy:
            for data in copy:
                chunk = bytes(data)
                rows += chunk.count(b"\n")  # one line per row: newlines inside values are written \n
                file.write(chunk)
        file.write(_END)
        counts[table] = rows
    file.write(json.dumps({"end": FORMAT, "rows": counts}).encode("utf-8") + b"\n")


def _parents_first(tables: list[str], references: list[tuple[str, str]]) -> list[str]:
    """``tables`` ordered so that each comes after the tables it references (cycles keep name order)."""
    needs: dict[str, set[str]] = {table: set() for table in tables}
    for child, parent in references:
        if child in needs and parent in needs and child != parent:
            needs[child].add(parent)
    order: list[str] = []
    placed: set[str] = set()
    while len(order) < len(tables):
        ready = [t for t in tables if t not in placed and needs[t] <= placed]
        if not ready:  # a cycle of references: the rest in name order (deferrable keys still load)
            ready = [t for t in tables if t not in placed]
        for table in ready:
            order.append(table)
            placed.add(table)
    return order


def restore(source: Path, cur: Any, label: str, applied: dict[tuple[str, str], str]) -> dict[str, int]:
    """Load the backup ``source`` through ``cur``, inside the caller's transaction (see the module).

    ``applied`` is the target's migration records, (namespace, id) -> checksum.
    """
    try:
        file = open(source, "rb")
    except OSError as exc:
        raise DatabaseError(f"cannot read the backup {source}: {exc.strerror or exc}", path=str(source)) from exc
    with file:
        header = _header(file.readline(), source)
        _same_migrations(header, applied, source, label)
        tables = [(t["name"], t["columns"]) for t in header["tables"]]
        counts: dict[str, int] = {}
        if tables:
            listed = ", ".join(quote(name) for name, _ in tables)
            cur.execute(f"LOCK TABLE {listed} IN ACCESS EXCLUSIVE MODE")
            cur.execute("SET CONSTRAINTS ALL DEFERRED")
            # User triggers off while the tables are emptied and loaded: one refusing to
            # empty a table of frozen rows (TRUNCATE) must not stop a restore replacing them.
            for name, _ in tables:
                cur.execute(f"ALTER TABLE {quote(name)} DISABLE TRIGGER USER")
            cur.execute(f"TRUNCATE {listed}")
        for name, columns in tables:
            with cur.copy(f"COPY {quote(name)} ({', '.join(map(quote, columns))}) FROM STDIN") as copy:
                buffer: list[bytes] = []
                size = 0
                for line in file:
                    if line == _END:
                        break
                    buffer.append(line)
                    size += len(line)
                    if size >= _CHUNK:
                        copy.write(b"".join(buffer))
                        buffer, size = [], 0
                else:
                    raise _incomplete(source, f"the rows of {name!r} stop before their end")
                if buffer:
                    copy.write(b"".join(buffer))
            counts[name] = cur.rowcount
            move_sequences(lambda sql, params: cur.execute(sql, params or None).fetchall(), name)
        for name, _ in tables:
            cur.execute(f"ALTER TABLE {quote(name)} ENABLE TRIGGER USER")
        trailer = file.readline()
    try:
        expected = json.loads(trailer)["rows"]
    except (ValueError, KeyError, TypeError):
        raise _incomplete(source, "its last line, the row counts, is missing") from None
    if expected != counts:
        raise DatabaseError(
            f"cannot restore {source} into {label}: the rows loaded ({counts}) differ from those the backup "
            f"counted ({expected}); nothing was restored",
            path=label,
        )
    return counts


def _header(line: bytes, source: Path) -> dict[str, Any]:
    if line.startswith(b"SQLite format 3\x00"):
        raise DatabaseError(
            f"{source} is a SQLite database, not a backup of a PostgreSQL one: open it with connect({str(source)!r})",
            path=str(source),
        )
    try:
        header = json.loads(line)
        if header.get("format") != FORMAT:
            raise ValueError("not a taskcatalog backup")
    except (ValueError, AttributeError):
        raise DatabaseError(
            f"{source} is not a taskcatalog backup of a PostgreSQL database (its first line is not the header)",
            path=str(source),
        ) from None
    if header.get("version") != VERSION or header.get("engine") != "postgresql":
        raise DatabaseError(
            f"{source} is a taskcatalog backup of version {header.get('version')!r} for {header.get('engine')!r}; "
            f"this restore reads version {VERSION} for 'postgresql'",
            path=str(source),
        )
    return header  # type: ignore[no-any-return]


def _same_migrations(header: dict[str, Any], applied: dict[tuple[str, str], str], source: Path, label: str) -> None:
    """MigrationError unless the target has exactly the migrations the backup records."""
    recorded = {(namespace, id): checksum for namespace, id, checksum, *_ in header["migrations"]}
    missing = sorted(key for key in recorded if key not in applied)
    changed = sorted(key for key in recorded if key in applied and applied[key] != recorded[key])
    extra = sorted(key for key in applied if key not in recorded)
    if not (missing or changed or extra):
        return
    problems = []
    for what, keys in (("not applied here", missing), ("applied here with other SQL", changed), ("applied here only", extra)):
        if keys:
            problems.append(f"{what}: {', '.join(f'{n}/{i}' for n, i in keys)}")
    raise MigrationError(
        f"cannot restore {source} into {label}: its migrations differ from the backup's ({'; '.join(problems)}); "
        f"restore into a database with the same migrations applied (upgrade a new database with them first). "
        f"Nothing was restored",
        path=label,
    )


def move_sequences(execute: Callable[[str, Sequence[Any]], Any], table: str) -> None:
    """Set the sequences of ``table``'s serial and identity columns past its largest stored value.

    ``execute(sql, params)`` runs a statement and returns its rows.
    """
    for column, sequence in execute(_SEQUENCES, [table]):
        if sequence is None:
            continue
        literal = "'" + sequence.replace("'", "''") + "'"
        execute(
            f"SELECT pg_catalog.setval({literal}, COALESCE((SELECT max({quote(column)}) FROM {quote(table)}), 0) + 1, false)",
            [],
        )


def _incomplete(source: Path, why: str) -> DatabaseError:
    return DatabaseError(
        f"the backup {source} is incomplete ({why}): it was cut short; nothing was restored", path=str(source)
    )
