"""Opening one ``sqlite3`` connection the way every connection of the backend is opened.

``Settings`` is what a ``SQLiteConnection`` was asked for; ``open_connection``
turns it into a configured ``sqlite3.Connection``: autocommit (the backend
issues BEGIN and COMMIT itself), WAL journal mode, the busy timeout, the
durability setting and foreign-key enforcement. Reading the header at once
turns "file is not a database" into an error at connect time.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from dataclasses import dataclass
from os import PathLike, fspath
from pathlib import Path

from ...errors import DatabaseError
from .errors import BUSY, LOCKED, code, translate

__all__ = ["MEMORY", "SYNCHRONOUS", "Settings", "open_connection", "prepare_folder", "target"]

LOG = logging.getLogger("taskcatalog.db")

MEMORY = ":memory:"
SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")


@dataclass(frozen=True, slots=True)
class Settings:
    """How to open the database: its file (None for memory), how messages name it, and the options."""

    path: Path | None
    label: str
    timeout: float
    synchronous: str
    foreign_keys: bool


def target(url: str | PathLike[str]) -> Path | None:
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


def prepare_folder(path: Path, label: str) -> None:
    """Create the database's folder; DatabaseError if it cannot hold a WAL database."""
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


def open_connection(settings: Settings) -> sqlite3.Connection:
    """A new sqlite3 connection, configured and checked to be a database."""
    try:
        # isolation_level=None: autocommit; the backend issues BEGIN/COMMIT itself.
        # check_same_thread=False only so close() may close another thread's
        # connection; each connection is otherwise used by its own thread.
        conn = sqlite3.connect(
            MEMORY if settings.path is None else settings.path,
            timeout=settings.timeout,
            isolation_level=None,
            check_same_thread=False,
        )
    except sqlite3.Error as exc:
        raise DatabaseError(f"cannot open the database {settings.label}: {exc}", path=settings.label) from exc
    try:
        # Reading the header here turns "file is not a database" into an
        # error at connect time rather than at the first query.
        conn.execute("PRAGMA schema_version").fetchone()
        if settings.path is not None:
            _use_wal(conn, settings)
        conn.execute(f"PRAGMA synchronous = {settings.synchronous}")
        conn.execute(f"PRAGMA foreign_keys = {'ON' if settings.foreign_keys else 'OFF'}")
    except BaseException as exc:
        conn.close()
        if isinstance(exc, sqlite3.Error):
            error = translate(exc, settings.label, settings.timeout)
            if error is not exc:
                raise error from exc
        raise
    return conn


def _use_wal(conn: sqlite3.Connection, settings: Settings) -> None:
    # Switching to WAL needs a moment of exclusive access; when several
    # processes open a new file together one of them may see SQLITE_BUSY
    # here, so retry within the timeout like any other lock wait.
    deadline = time.monotonic() + settings.timeout
    while True:
        try:
            mode: str = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            break
        except sqlite3.OperationalError as exc:
            if code(exc) not in (BUSY, LOCKED) or time.monotonic() >= deadline:
                raise
            time.sleep(0.005)
    if mode.lower() != "wal":
        LOG.warning("%s: journal mode is %s, not WAL; concurrent access will wait more", settings.label, mode)
