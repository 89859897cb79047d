"""Migrations as plain data: what to apply, in which order, and what is drift.

This module knows nothing about a live database. It reads folders of
``NNNN_name.sql`` files, orders and checks migrations, splits their SQL into
statements, and compares them with the bookkeeping records a backend reads.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from os import PathLike, fspath
from pathlib import Path

from ..errors import MigrationError

__all__ = [
    "BOOKKEEPING_TABLE",
    "Migration",
    "MigrationStatus",
    "Applied",
    "Statement",
    "collect",
    "load_folder",
    "split_statements",
    "status",
]

#: The table that records applied migrations; CRUD calls cannot reach it.
BOOKKEEPING_TABLE = "taskcatalog_migrations"

BOOKKEEPING_DDL = (
    f"CREATE TABLE IF NOT EXISTS {BOOKKEEPING_TABLE} ("
    " namespace TEXT NOT NULL,"
    " id TEXT NOT NULL,"
    " checksum TEXT NOT NULL,"
    " applied_at TEXT NOT NULL,"
    " tables TEXT NOT NULL DEFAULT '[]',"
    " PRIMARY KEY (namespace, id))"
)

_ID = re.compile(r"(\d+)_[A-Za-z0-9_-]+")
_FILE = re.compile(r"(\d+_[A-Za-z0-9_-]+)\.sql")
_NAMESPACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# Statements that would end or nest the transaction each migration runs in.
# (START TRANSACTION and ABORT are PostgreSQL's spellings of BEGIN and ROLLBACK.)
_TRANSACTION = re.compile(r"(BEGIN|COMMIT|END|ROLLBACK|SAVEPOINT|RELEASE|START\s+TRANSACTION|ABORT)\b", re.IGNORECASE)
_LEADING_COMMENTS = re.compile(r"(\s+|--[^\n]*(\n|$)|/\*.*?\*/)*", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema change: ``Migration("shop", "0001_orders", "CREATE TABLE ...")``.

    ``id`` is ``NNNN_name``; migrations of a namespace apply in the order of
    that number. ``sql`` is kept with ``\n`` line ends, whatever it was given
    with; ``checksum`` (sha256 of it) detects an applied migration that was
    edited afterwards. ``path`` is the file it came from.
    """

    namespace: str
    id: str
    sql: str
    path: str | None = field(default=None, kw_only=True, compare=False)
    checksum: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("namespace", "id", "sql"):
            if type(getattr(self, name)) is not str:
                raise TypeError(f"Migration {name} must be a str, not {type(getattr(self, name)).__name__}")
        if not _NAMESPACE.fullmatch(self.namespace):
            raise MigrationError(
                f"migration namespace {self.namespace!r} is not valid: use letters, digits, '_', '.', '-' "
                f"(starting with a letter or digit, at most 64 characters)",
                path=self.path,
            )
        if not _ID.fullmatch(self.id):
            raise MigrationError(
                f"migration id {self.id!r} in namespace {self.namespace!r} is not NNNN_name "
                f"(digits, '_', then letters, digits, '_' or '-')",
                path=self.path,
            )
        # One SQL text has one checksum whatever its line ends: \r\n (a Windows
        # editor) and \r become \n, as reading a folder's file as text does.
        sql = self.sql.replace("\r\n", "\n").replace("\r", "\n")
        object.__setattr__(self, "sql", sql)
        object.__setattr__(self, "checksum", hashlib.sha256(sql.encode("utf-8")).hexdigest())

    @property
    def number(self) -> int:
        """The ``NNNN`` of the id: what orders migrations within a namespace."""
        return int(self.id.split("_", 1)[0])

    @property
    def name(self) -> str:
        """``namespace/id``, as messages name a migration."""
        where = f" ({self.path})" if self.path else ""
        return f"{self.namespace}/{self.id}{where}"

    def location(self, line: int) -> str:
        """``file:line`` of a line of this migration, or ``line N`` when it has no file."""
        return f"{self.path}:{line}" if self.path else f"line {line}"


@dataclass(frozen=True, slots=True)
class Statement:
    """One SQL statement of a migration, and the line of the migration's SQL
    (1-based) where its text begins, leading comments skipped."""

    line: int
    sql: str

    @property
    def head(self) -> str:
        """The statement's first line of SQL, for messages (cut at 120 characters)."""
        body = self.sql[_comments_end(self.sql):]
        first = body.splitlines()[0] if body else ""
        return first if len(first) <= 120 else first[:117] + "..."


@dataclass(frozen=True, slots=True)
class Applied:
    """A bookkeeping record: one migration applied to a database."""

    namespace: str
    id: str
    checksum: str
    applied_at: str
    tables: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class MigrationStatus:
    """Where one migration stands in a database.

    ``state`` is ``"applied"``, ``"pending"``, ``"drifted"`` (applied, but
    its SQL has changed since) or ``"missing"`` (recorded as applied but not
    among the migrations given). ``applied_at`` is ISO 8601 UTC.
    """

    namespace: str
    id: str
    state: str
    checksum: str | None
    applied_checksum: str | None
    applied_at: str | None


def load_folder(folder: str | PathLike[str], namespace: str) -> list[Migration]:
    """The migrations in ``folder``, ordered.

    Every entry must be a ``NNNN_name.sql`` file; anything else (other than
    hidden files such as ``.gitkeep``) is a MigrationError rather than being
    skipped, so ``003-add-index.sql`` or ``0004_x.SQL`` cannot silently miss.
    """
    path = Path(fspath(folder))
    if not path.is_dir():
        raise MigrationError(f"migrations folder {path} does not exist or is not a folder", path=str(path))
    migrations = []
    strays = []
    for entry in sorted(path.iterdir()):
        if entry.name.startswith("."):
            continue
        match = _FILE.fullmatch(entry.name)
        if match is None or not entry.is_file():
            strays.append(entry.name)
            continue
        try:
            # Text mode reads \r\n as \n (and Migration would make it so anyway).
            sql = entry.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise MigrationError(f"cannot read migration {entry}: {exc}", path=str(entry)) from exc
        migrations.append(Migration(namespace, match.group(1), sql, path=str(entry)))
    if strays:
        raise MigrationError(
            f"migrations folder {path} holds entries that are not NNNN_name.sql files: "
            f"{', '.join(strays)}; rename or remove them",
            path=str(path),
        )
    return collect(migrations, namespace)


def collect(
    source: Iterable[Migration] | str | PathLike[str],
    namespace: str | None = None,
) -> list[Migration]:
    """Migrations from a folder (``namespace`` required) or an iterable, checked and ordered.

    Namespaces keep the order in which they first appear; within one, the
    migrations are sorted by number. Two migrations with the same number in a
    namespace make the order ambiguous: MigrationError. Each migration's SQL
    is split here, so a bad one fails before anything is applied.
    """
    if isinstance(source, (str, PathLike)):
        if namespace is None:
            raise MigrationError(f"upgrading from the folder {fspath(source)} needs namespace=", path=fspath(source))
        return load_folder(source, namespace)
    if isinstance(source, Migration):
        source = [source]
    if isinstance(source, (bytes, Mapping)) or not isinstance(source, Iterable):
        raise TypeError(f"migrations must be a folder or an iterable of Migration, not {type(source).__name__}")
    groups: dict[str, list[Migration]] = {}
    for migration in source:
        if not isinstance(migration, Migration):
            raise TypeError(f"expected Migration objects, got {type(migration).__name__}: {migration!r}")
        if namespace is not None and migration.namespace != namespace:
            raise MigrationError(
                f"migration {migration.name} is not in namespace {namespace!r}", path=migration.path
            )
        groups.setdefault(migration.namespace, []).append(migration)
    ordered = []
    for migrations in groups.values():
        migrations.sort(key=lambda m: (m.number, m.id))
        for previous, current in zip(migrations, migrations[1:]):
            if previous.number == current.number:
                raise MigrationError(
                    f"migrations {previous.name} and {current.name} share the number {current.number}; "
                    f"renumber one so their order is clear",
                    path=current.path,
                )
        for migration in migrations:
            split_statements(migration)
        ordered.extend(migrations)
    return ordered


def split_statements(migration: Migration) -> list[Statement]:
    """The SQL statements of a migration, one by one, each with its line.

    ``sqlite3.executescript`` would COMMIT on its own, so a backend runs the
    statements one at a time inside its own transaction. Text is cut at each
    ``;`` where ``sqlite3.complete_statement`` agrees a statement ends, which
    respects quotes, comments and ``CREATE TRIGGER ... BEGIN ... END;``. It
    is asked about a copy of the text in which PostgreSQL's own syntax reads
    as SQLite's (``_masked``): a dollar-quoted body (``$$ ... ; ... $$``, a
    function's) is one string, and a ``CREATE TRIGGER ... EXECUTE FUNCTION``
    ends at its ``;`` rather than waiting for an ``END``.
    """
    sql = migration.sql
    masked = _masked(sql)
    pieces = []  # (offset in sql, text)
    offset = 0
    buffer = ""
    for piece in masked.split(";"):
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):
            # The text of the original: the masked copy has the same length.
            pieces.append((offset, sql[offset : offset + len(buffer)]))
            offset += len(buffer)
            buffer = ""
    # The split added a ';' after the last piece; whatever is left is a final
    # statement without a semicolon, or only whitespace and comments.
    tail = buffer[:-1]
    if tail.strip():
        pieces.append((offset, sql[offset:]))
    statements = []
    for offset, text in pieces:
        start = _comments_end(text)
        body = text[start:]
        if not body.strip(" \t\r\n;"):
            continue
        line = sql.count("\n", 0, offset + start) + 1
        control = _TRANSACTION.match(body)
        if control:
            raise MigrationError(
                f"migration {migration.name} controls transactions itself ({control.group(1)} at "
                f"{migration.location(line)}); each migration already runs in its own transaction: "
                f"remove the statement",
                path=migration.path,
                line=line,
            )
        statements.append(Statement(line, text.strip()))
    if not statements:
        raise MigrationError(f"migration {migration.name} has no SQL statements", path=migration.path)
    return statements


def status(migrations: list[Migration], applied: Mapping[tuple[str, str], Applied]) -> list[MigrationStatus]:
    """Compare migrations with bookkeeping records.

    Records of the migrations' namespaces that no migration matches come
    last, as ``"missing"`` (the file was deleted or renamed after it was
    applied).
    """
    result = []
    namespaces = set()
    known = set()
    for m in migrations:
        namespaces.add(m.namespace)
        known.add((m.namespace, m.id))
        record = applied.get((m.namespace, m.id))
        if record is None:
            result.append(MigrationStatus(m.namespace, m.id, "pending", m.checksum, None, None))
        else:
            state = "applied" if record.checksum == m.checksum else "drifted"
            result.append(MigrationStatus(m.namespace, m.id, state, m.checksum, record.checksum, record.applied_at))
    for key, record in sorted(applied.items()):
        if record.namespace in namespaces and key not in known:
            result.append(
                MigrationStatus(record.namespace, record.id, "missing", None, record.checksum, record.applied_at)
            )
    return result


# Where a dollar quote may open: $$ or $tag$, not inside a name (a$b$c is one
# identifier), a string, a quoted name or a comment (matched first, to skip).
_QUOTED = re.compile(
    r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|--[^\n]*|/\*.*?\*/|(?<![A-Za-z0-9_$])(\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$)""",
    re.DOTALL,
)
# PostgreSQL's trigger: its body is a function, so it has no BEGIN ... END of its own.
_PG_TRIGGER = re.compile(
    r"\bCREATE\s+(?:OR\s+REPLACE\s+)?(?:CONSTRAINT\s+)?(TRIGGER)\b[^;]*?\bEXECUTE\s+(?:FUNCTION|PROCEDURE)\b",
    re.IGNORECASE,
)


def _masked(sql: str) -> str:
    """``sql`` with PostgreSQL's syntax made readable to ``sqlite3.complete_statement``, same length.

    A dollar-quoted string becomes a single-quoted one of filler; the word
    TRIGGER of a PostgreSQL ``CREATE TRIGGER`` becomes a plain word, so the
    statement ends at its ``;``.
    """
    if "$" not in sql and "EXECUTE" not in sql.upper():
        return sql
    spans = []  # (start, end) of each dollar-quoted string
    position = 0
    while (found := _QUOTED.search(sql, position)) is not None:
        tag = found.group(1)
        if tag is None:  # a string, quoted name or comment: skip it whole
            position = found.end()
            continue
        close = sql.find(tag, found.end())
        end = len(sql) if close < 0 else close + len(tag)
        spans.append((found.start(), end))
        position = end
    masked = sql
    for start, end in spans:
        masked = masked[:start] + "'" + "_" * (end - start - 2) + "'" + masked[end:]
    return _PG_TRIGGER.sub(lambda m: m.group(0).replace(m.group(1), "TRIGGEX", 1), masked)


def _comments_end(text: str) -> int:
    """Where ``text`` starts after leading whitespace and comments (the pattern matches even nothing)."""
    found = _LEADING_COMMENTS.match(text)
    return 0 if found is None else found.end()
